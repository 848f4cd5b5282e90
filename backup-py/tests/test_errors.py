"""Every exception class of backup_toolkit.exceptions, each raised for real
by the library, with its facts and the library's message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import backup_toolkit as bt
from backup_toolkit import exceptions


def test_the_tree_has_one_root_and_the_builtin_bases() -> None:
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), bt.BackupError)
    assert issubclass(bt.NotFoundError, FileNotFoundError)
    assert issubclass(bt.AlreadyExistsError, FileExistsError)
    assert issubclass(bt.InvalidArgumentError, ValueError)


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(bt.NotFoundError, match="no repository found") as caught:
        bt.Repository.open(str(tmp_path / "nothing"), password="x")
    assert isinstance(caught.value, FileNotFoundError)
    assert "nothing" in str(caught.value.name)

    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    with pytest.raises(bt.NotFoundError, match="no backup matches"):
        repo.find("latest")
    data = tmp_path / "d"
    data.mkdir()
    (data / "f").write_text("x")
    repo.backup([data])
    with pytest.raises(bt.NotFoundError) as missing:
        repo.read_file("latest", "d/none")
    assert "d/none" in str(missing.value)
    with pytest.raises(FileNotFoundError, match="password file"):
        bt.Repository.open(str(tmp_path / "repo"), password_file=tmp_path / "no-such-file")


def test_already_exists(tmp_path: Path) -> None:
    bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    with pytest.raises(bt.AlreadyExistsError, match="already exists"):
        bt.Repository.init(str(tmp_path / "repo"), encryption=False)


def test_wrong_password(tmp_path: Path) -> None:
    bt.Repository.init(str(tmp_path / "repo"), password="right")
    with pytest.raises(bt.WrongPasswordError, match="wrong password"):
        bt.Repository.open(str(tmp_path / "repo"), password="wrong")
    with pytest.raises(bt.WrongPasswordError, match="password is required"):
        bt.Repository.open(str(tmp_path / "repo"))
    (tmp_path / "pw").write_text("right\n")
    assert bt.Repository.open(str(tmp_path / "repo"), password_file=tmp_path / "pw").encrypted


def test_corruption_names_the_object(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), password="pw")
    data = tmp_path / "d"
    data.mkdir()
    (data / "f").write_bytes(os.urandom(100_000))
    repo.backup([data])
    packs = [p for p in (tmp_path / "repo").rglob("*") if p.is_file() and "data" in p.relative_to(tmp_path / "repo").parts]
    assert packs
    for pack in packs:
        raw = bytearray(pack.read_bytes())
        raw[len(raw) // 2] ^= 0x40
        pack.write_bytes(bytes(raw))
    with pytest.raises(bt.CorruptionError) as caught:
        bt.Repository.open(str(tmp_path / "repo"), password="pw").read_file("latest", "d/f")
    assert caught.value.object is not None and caught.value.object.startswith("data/")
    assert caught.value.object in str(caught.value)
    report = repo.verify(read_data=True)
    assert not report.ok and any(p.object.startswith("data/") for p in report.errors)


def test_collision_names_both_writers(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    data = tmp_path / "d"
    data.mkdir()
    (data / "f").write_text("x")
    repo.backup([data], set="etcd", writer="operator-a", check_collision=True)
    with pytest.raises(bt.CollisionError) as caught:
        repo.backup([data], set="etcd", writer="operator-b", check_collision=True)
    error = caught.value
    assert (error.writer, error.other_writer, error.set) == ("operator-b", "operator-a", "etcd")
    assert "operator-a" in str(error) and "operator-b" in str(error)
    assert len(repo.list()) == 1


def test_storage_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(bt.StorageError) as caught:
        bt.Repository.open("s3://bucket/repo", password="x", endpoint="http://127.0.0.1:9", allow_http=True,
                           region="us-east-1")
    assert caught.value.temporary is True
    assert caught.value.operation == "get" and caught.value.key == "config"
    assert "127.0.0.1:9" in str(caught.value)


def test_snapshot_error_carries_the_stores_words(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    failing = bt.CommandSource(["sh", "-c", "echo 'pg_dump: connection refused' >&2; exit 3"])
    with pytest.raises(bt.SnapshotError, match="connection refused") as caught:
        repo.backup(source=failing)
    assert caught.value.detail is not None and "connection refused" in caught.value.detail
    assert repo.list() == []
    with pytest.raises(bt.SnapshotError, match="Connection refused|connect"):
        repo.backup(source=bt.EtcdSource(["http://127.0.0.1:9"]))


def test_restore_refused_before_writing(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    data = tmp_path / "d"
    data.mkdir()
    (data / "f").write_text("x")
    repo.backup([data])
    target = tmp_path / "etcd-data"
    with pytest.raises(bt.RestoreRefusedError) as caught:
        repo.restore_into("latest", bt.EtcdRestorer(target))
    assert "directory" in str(caught.value) and caught.value.target is not None
    assert not target.exists()
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep").write_text("mine")
    with pytest.raises(bt.RestoreRefusedError, match="not empty"):
        repo.restore_into("latest", bt.DirectoryRestorer(occupied))
    assert (occupied / "keep").read_text() == "mine"


def test_invalid_arguments(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    with pytest.raises(bt.InvalidArgumentError, match="not both"):
        repo.backup([tmp_path], source=bt.CommandSource(["true"]))
    with pytest.raises(ValueError, match="nothing to back up"):
        repo.backup()
    with pytest.raises(bt.InvalidArgumentError, match="timezone-aware"):
        from datetime import datetime
        repo.backup([tmp_path], time=datetime(2026, 1, 1))
    with pytest.raises(bt.InvalidArgumentError, match="unknown storage option"):
        bt.Repository.open(str(tmp_path / "repo"), endpint="http://x")  # type: ignore[call-arg]
    with pytest.raises(bt.InvalidArgumentError, match="password"):
        bt.Repository.init(str(tmp_path / "other"))
    with pytest.raises(bt.InvalidArgumentError, match="unknown repository scheme"):
        bt.Repository.open("ftp://host/repo")


def test_a_newer_format_gets_a_version_error(tmp_path: Path) -> None:
    import hashlib

    bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    config = tmp_path / "repo" / "config"
    raw = config.read_bytes()
    # An unencrypted config: its JSON after the header, then the SHA-256 of
    # everything before (FORMAT.md, "The envelope").
    assert hashlib.sha256(raw[:-32]).digest() == raw[-32:]
    body = raw[:-32].replace(b'"version": 1', b'"version": 9')
    config.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(bt.UnsupportedVersionError, match="version 9") as caught:
        bt.Repository.open(str(tmp_path / "repo"))
    assert caught.value.found == 9
