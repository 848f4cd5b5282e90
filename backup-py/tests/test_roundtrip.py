"""Round trips through local and S3 repositories, encrypted and not: every
operation of a Repository, each result checked against the source."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import backup_toolkit as bt
from conftest import SLOW_SOURCE, S3Server


def open_kwargs(kind: str, s3: S3Server | None) -> dict[str, Any]:
    if kind == "s3":
        assert s3 is not None
        return {"endpoint": s3.endpoint, "allow_http": True}
    return {}


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        return s3.url(f"repo-{request.node.name}"), open_kwargs("s3", s3)
    return str(tmp_path / "repo"), {}


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_every_operation_round_trips(
    place: tuple[str, dict[str, Any]], encrypted: bool, tree: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    url, storage = place
    root, files = tree
    password = "correct horse" if encrypted else None
    repo = bt.Repository.init(url, password=password, encryption=encrypted, **storage)
    assert repo.encrypted is encrypted
    assert "Repository(" in repr(repo)

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    summary = repo.backup([root], set="data", tags={"host": "web-1"}, time=when)
    assert summary.status == "completed"
    assert summary.stats.files == len(files)
    backup = summary.backup
    assert backup.set == "data" and backup.tags == {"host": "web-1"}
    assert backup.time == when and backup.time.tzinfo is not None
    assert backup.kind == "directory"
    assert repr(summary).startswith("BackupSummary(id=")

    # A second backup of unchanged files stores (almost) nothing new.
    second = repo.backup([root], set="data")
    assert second.stats.files_unchanged == len(files)
    assert second.backup.parent == backup.id

    reopened = bt.Repository.open(url, password=password, **storage)
    assert reopened.id == repo.id
    assert [b.id for b in reopened.list(set="data")] == [backup.id, second.id]
    assert reopened.list(set="nothing") == []
    assert reopened.find("latest", set="data") == second.backup
    assert reopened.find(backup.id[:10]).id == backup.id

    entries = {entry.path: entry for entry in reopened.ls(backup)}
    for name, content in files.items():
        entry = entries[f"data/{name}"]
        assert entry.kind == "file" and entry.size == len(content)
        assert entry.mtime.tzinfo is not None
        assert reopened.read_file(backup, f"data/{name}") == content
    assert entries["data/deep"].kind == "dir"

    big = files["deep/er/still.bin"]
    with reopened.open_file("latest", "data/deep/er/still.bin") as reader:
        assert reader.size == len(big)
        head = reader.read(1000)
        rest = reader.read()
        assert head + rest == big
        assert reader.read() == b""
    chunks = list(reopened.open_file(backup, "data/deep/er/still.bin"))
    assert b"".join(chunks) == big

    target = tmp_path / "restored"
    restored = reopened.restore(backup, target)
    assert restored.status == "completed" and restored.files == len(files)
    for name, content in files.items():
        assert (target / "data" / name).read_bytes() == content

    some = tmp_path / "some"
    partial = reopened.restore("latest", some, include=["data/deep/**"])
    assert partial.files == 2
    assert not (some / "data" / "notes.txt").exists()

    report = reopened.verify(read_data=True)
    assert report.ok and report.errors == [] and report.backups == 2
    assert report.packs_read == report.packs > 0

    decisions = reopened.forget(bt.KeepPolicy(last=1), set="data")
    by_id = {d.backup.id: d for d in decisions}
    assert by_id[second.id].keep and by_id[second.id].reasons
    assert not by_id[backup.id].keep
    assert [b.id for b in reopened.list()] == [second.id]

    pruned = reopened.prune(grace=timedelta(0))
    assert pruned.packs_before > 0
    assert reopened.verify(read_data=True).ok
    assert reopened.read_file("latest", "data/notes.txt") == files["notes.txt"]


def test_progress_reaches_the_calling_thread(tree: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    root, files = tree
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    events: list[bt.Progress] = []
    threads: set[int] = set()

    def on_progress(event: bt.Progress) -> None:
        threads.add(threading.get_ident())
        events.append(event)

    repo.backup([root], on_progress=on_progress)
    assert threads == {threading.get_ident()}
    assert events[-1].phase == "completed" and events[-1].percent == 100.0
    assert events[-1].files_done == len(files)
    assert events[-1].bytes_done == sum(len(c) for c in files.values())
    assert all(e.operation == "backup" for e in events)

    restored: list[bt.Progress] = []
    repo.restore("latest", tmp_path / "out", on_progress=restored.append)
    assert restored[-1].operation == "restore" and restored[-1].phase == "completed"
    verified: list[bt.Progress] = []
    repo.verify(read_data=True, on_progress=verified.append)
    assert verified and verified[-1].phase == "completed"


def test_a_progress_callback_that_raises_stops_the_backup(
    tree: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)

    def refuse(event: bt.Progress) -> None:
        raise RuntimeError("enough")

    with pytest.raises(RuntimeError, match="enough"):
        repo.backup(source=bt.CommandSource(SLOW_SOURCE), on_progress=refuse)
    # Whatever was uploaded before the stop, no backup is listed and the
    # repository verifies.
    assert repo.list() == []
    assert repo.verify(read_data=True).ok


def test_command_source_and_directory_restorer(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), password=b"bytes work too")
    summary = repo.backup(
        source=bt.CommandSource(["sh", "-c", "printf 'dump of the day'"], file_name="dump.sql"),
        set="dumps",
    )
    assert summary.backup.kind == "command"
    assert repo.read_file("latest", "dump.sql") == b"dump of the day"
    out = tmp_path / "piped"
    done = repo.restore_into("latest", bt.CommandRestorer(["sh", "-c", f"cat > {out}"]))
    assert done.kind == "command" and out.read_bytes() == b"dump of the day"

    data = tmp_path / "d"
    data.mkdir()
    (data / "f").write_text("x")
    repo.backup(source=bt.DirectorySource([data]), set="dirs")
    restored = repo.restore_into(repo.find(set="dirs"), bt.DirectoryRestorer(tmp_path / "into"))
    assert restored.kind == "directory"
    assert (tmp_path / "into" / "d" / "f").read_text() == "x"


def test_hooks_run_around_the_snapshot(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    log = tmp_path / "log"
    data = tmp_path / "d"
    data.mkdir()
    (data / "f").write_text("x")
    hooks = bt.Hooks(
        before=[["sh", "-c", f"echo before >> {log}"]],
        after=[["sh", "-c", f"echo after $BACKUP_SNAPSHOT_SUCCEEDED >> {log}"]],
        timeout=timedelta(seconds=10),
    )
    repo.backup([data], hooks=hooks)
    assert log.read_text().split("\n")[:2] == ["before", "after 1"]


def test_keep_policy_is_checked_when_made() -> None:
    policy = bt.KeepPolicy(daily=7, within="30d", tags=["prod,eu"])
    assert "daily=7" in repr(policy) and not policy.empty
    assert bt.KeepPolicy().empty
    with pytest.raises(bt.InvalidArgumentError, match="within"):
        bt.KeepPolicy(within="fortnight")


def test_directory_source_takes_restics_exclude_options(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for directory in ["src", "cache", "build", "Logs"]:
        (data / directory).mkdir(parents=True)
    (data / "src" / "main.c").write_text("int main;")
    (data / "src" / "main.o").write_text("object")
    (data / "cache" / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    (data / "cache" / "blob").write_text("cached")
    (data / "build" / ".nobackup").write_text("")
    (data / "build" / "out.bin").write_text("built")
    (data / "Logs" / "App.LOG").write_text("log")
    (data / "big.iso").write_bytes(b"\0" * 20_000)
    patterns = tmp_path / "patterns"
    patterns.write_text("# objects\n*.o\n")
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    source = bt.DirectorySource(
        [data],
        exclude_file=[patterns],
        iexclude=["*.log"],
        exclude_if_present=[".nobackup"],
        exclude_caches=True,
        exclude_larger_than=10_000,
    )
    repo.backup(source=source)
    stored = sorted(entry.path for entry in repo.ls("latest"))
    assert stored == [
        "data",
        "data/Logs",
        "data/build",
        "data/build/.nobackup",
        "data/cache",
        "data/cache/CACHEDIR.TAG",
        "data/src",
        "data/src/main.c",
    ]
    with pytest.raises(bt.InvalidArgumentError):
        bt.DirectorySource([data], exclude=["!negated"])


def test_restore_options_overwrite_delete_exclude_verify(tmp_path: Path) -> None:
    data = tmp_path / "site"
    (data / "logs").mkdir(parents=True)
    (data / "index.html").write_text("backed up")
    (data / "logs" / "App.LOG").write_text("log")
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    repo.backup([data])
    target = tmp_path / "target"
    done = repo.restore("latest", target, iexclude=["*.log"], verify=True)
    assert done.verified == 1 and not (target / "site" / "logs" / "App.LOG").exists()

    (target / "site" / "index.html").write_text("edited, longer than before")
    (target / "site" / "extra.txt").write_text("not in the backup")
    kept = repo.restore("latest", target, overwrite="never", iexclude=["*.log"])
    assert kept.skipped == 1
    assert (target / "site" / "index.html").read_text() == "edited, longer than before"
    synced = repo.restore("latest", target, delete=True, exclude=["logs"])
    assert synced.deleted == 1 and synced.skipped == 0
    assert sorted(p.name for p in (target / "site").iterdir()) == ["index.html", "logs"]
    assert (target / "site" / "index.html").read_text() == "backed up"
    with pytest.raises(bt.InvalidArgumentError):
        repo.restore("latest", target, overwrite="sometimes")  # type: ignore[arg-type]
