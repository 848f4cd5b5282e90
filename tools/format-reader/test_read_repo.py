"""Runs the independent reader on the golden repositories (and damaged or
hand-made copies of them) and compares what it extracts with expected.json."""

import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
READER = HERE / "read_repo.py"
GOLDEN = HERE.parent.parent / "backup-core" / "tests" / "golden"
PASSWORD_FILE = GOLDEN / "v1-encrypted.password"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))


def run_reader(*args):
    return subprocess.run(
        [sys.executable, str(READER), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def copy_repo(name, tmp_path):
    """A private copy, so no test can modify a golden repository."""
    target = tmp_path / name
    shutil.copytree(GOLDEN / name, target)
    return target


def password_args(name):
    return ["--password-file", PASSWORD_FILE] if name == "v1-encrypted" else []


def describe(root):
    """Every path below `root` as expected.json describes it."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            entry = {"mtime_ns": st.st_mtime_ns, "mode": stat.S_IMODE(st.st_mode), "size": 0, "sha256": None, "target": None}
            if stat.S_ISLNK(st.st_mode):
                entry.update(type="symlink", mode=None, target=os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                entry.update(type="dir")
            else:
                with open(full, "rb") as file:
                    entry.update(type="file", size=st.st_size, sha256=hashlib.sha256(file.read()).hexdigest())
            found[os.path.relpath(full, root)] = entry
    return found


@pytest.mark.parametrize("name", ["v1-plain", "v1-encrypted"])
def test_golden_repository_extracts_exactly(name, tmp_path):
    repo = copy_repo(name, tmp_path)
    out = tmp_path / "out"
    result = run_reader(repo, out, "--set", "golden", *password_args(name))
    assert result.returncode == 0, result.stderr
    assert describe(out) == EXPECTED["paths"]


@pytest.mark.parametrize("name", ["v1-plain", "v1-encrypted"])
def test_lists_one_golden_backup(name, tmp_path):
    result = run_reader(copy_repo(name, tmp_path), "--list", *password_args(name))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].split()[1:3] == [EXPECTED["time"], EXPECTED["set"]]


def only_file(directory):
    (path,) = [p for p in directory.rglob("*") if p.is_file()]
    return path


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["v1-plain", "v1-encrypted"])
@pytest.mark.parametrize("where", ["pack-blob", "pack-header", "index", "manifest", "config"])
def test_any_damage_is_refused(name, where, tmp_path):
    repo = copy_repo(name, tmp_path)
    if where.startswith("pack"):
        # The largest pack holds the data blobs.
        pack = max((repo / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
        flip(pack, 100 if where == "pack-blob" else pack.stat().st_size - 20)
    elif where == "config":
        flip(repo / "config", 20)
    else:
        flip(only_file(repo / where.replace("manifest", "manifests")), 12)
    result = run_reader(repo, tmp_path / "out", *password_args(name))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "damaged object" in result.stderr


@pytest.mark.parametrize("name", ["v1-plain", "v1-encrypted"])
def test_damaged_blob_is_caught_by_ranged_read_alone(name, tmp_path):
    repo = copy_repo(name, tmp_path)
    pack = max((repo / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    flip(pack, 100)
    result = run_reader(repo, tmp_path / "out", "--skip-pack-check", *password_args(name))
    assert result.returncode == 1
    assert "blob" in result.stderr


def reseal(path, version):
    data = bytearray(path.read_bytes()[:-32])
    data[4] = version
    path.write_bytes(bytes(data) + hashlib.sha256(data).digest())


def test_future_version_is_a_version_error(tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    reseal(repo / "config", 2)
    result = run_reader(repo, tmp_path / "out")
    assert result.returncode == 3
    assert "unsupported repository format version 2 in config" in result.stderr


def test_encrypted_needs_the_right_password(tmp_path):
    repo = copy_repo("v1-encrypted", tmp_path)
    assert run_reader(repo, tmp_path / "a").returncode == 4
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    result = run_reader(repo, tmp_path / "b", "--password-file", wrong)
    assert result.returncode == 4
    assert "wrong password" in result.stderr


def test_modified_config_is_refused_in_encrypted_repository(tmp_path):
    repo = copy_repo("v1-encrypted", tmp_path)
    config = repo / "config"
    text = config.read_bytes()[8:-32].replace(b'"compression_level": 3', b'"compression_level": 4')
    body = config.read_bytes()[:8] + text
    config.write_bytes(body + hashlib.sha256(body).digest())
    result = run_reader(repo, tmp_path / "out", "--password-file", PASSWORD_FILE)
    assert result.returncode == 1
    assert "config was modified" in result.stderr


# Hand-made objects for an unencrypted repository, per FORMAT.md.


def envelope(kind, payload):
    body = b"BKUP" + bytes([1, kind, 0, 0]) + payload
    return body + hashlib.sha256(body).digest()


def put_named(repo, prefix, obj):
    name = hashlib.sha256(obj).hexdigest()
    path = repo / prefix / name if prefix != "data" else repo / "data" / name[:2] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(obj)
    return bytes.fromhex(name)


def index_payload(supersedes, packs):
    out = struct.pack("<I", len(supersedes)) + b"".join(supersedes) + struct.pack("<I", len(packs))
    for pack_id, size, blobs in packs:
        out += pack_id + struct.pack("<QI", size, len(blobs))
        for kind, offset, data in blobs:
            out += struct.pack("<BBIII", kind, 0, offset, len(data), len(data)) + hashlib.sha256(data).digest()
    return out


def write_plain_backup(repo, listing, time="2030-01-01T00:00:00Z"):
    """Stores one tree chunk in a new pack, indexes it, and writes a
    manifest whose root is that tree."""
    chunk_id = hashlib.sha256(listing).digest()
    header = struct.pack("<BBII", 2, 0, len(listing), len(listing)) + chunk_id
    sealed = envelope(5, header)
    pack = listing + sealed + struct.pack("<I", len(sealed)) + b"BKPK"
    pack_id = put_named(repo, "data", pack)
    put_named(repo, "index", envelope(3, index_payload([], [(pack_id, len(pack), [(2, 0, listing)])])))
    manifest = {
        "version": 1, "set": "handmade", "time": time, "started": time, "finished": time,
        "writer": "test", "hostname": "test", "source": {"kind": "directory", "paths": []},
        "root": [chunk_id.hex()], "stats": dict.fromkeys(
            "files dirs symlinks files_unchanged bytes_total bytes_read bytes_added chunks_added skipped duration_ms".split(), 0
        ), "status": "completed",
    }
    put_named(repo, "manifests", envelope(4, json.dumps(manifest).encode()))


@pytest.mark.parametrize(
    "name", ["..", ".", "a/b", "", "x\u0000y"]
)
def test_unsafe_names_are_refused(name, tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    node = {"name": name, "type": "file", "mode": 0o644, "mtime_ns": 0}
    write_plain_backup(repo, json.dumps(node).encode() + b"\n")
    out = tmp_path / "out"
    result = run_reader(repo, out, "--set", "handmade")
    assert result.returncode == 1
    assert "unsafe name" in result.stderr


def test_unsorted_listing_is_refused(tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    nodes = [{"name": n, "type": "file", "mode": 0o644, "mtime_ns": 0} for n in ("b", "a")]
    write_plain_backup(repo, b"".join(json.dumps(n).encode() + b"\n" for n in nodes))
    result = run_reader(repo, tmp_path / "out", "--set", "handmade")
    assert result.returncode == 1
    assert "out of order" in result.stderr


def test_handmade_backup_is_read(tmp_path):
    """Objects made from FORMAT.md alone are accepted: a check of the spec
    as much as of the reader."""
    repo = copy_repo("v1-plain", tmp_path)
    nodes = [
        {"name": "a", "type": "dir", "mode": 0o755, "mtime_ns": 5, "subtree": []},
        {"name": "b", "type": "symlink", "mode": 0o777, "mtime_ns": 7, "target": "/etc/passwd"},
        {"name": "c", "type": "file", "mode": 0o600, "mtime_ns": 9},
    ]
    write_plain_backup(repo, b"".join(json.dumps(n).encode() + b"\n" for n in nodes))
    out = tmp_path / "out"
    result = run_reader(repo, out, "--set", "handmade")
    assert result.returncode == 0, result.stderr
    assert (out / "a").is_dir() and os.readlink(out / "b") == "/etc/passwd"
    assert (out / "c").read_bytes() == b"" and (out / "c").stat().st_mtime_ns == 9


def test_superseded_index_is_ignored(tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    (old,) = (repo / "index").iterdir()
    # A new index superseding the golden one but listing nothing: every
    # chunk of the golden backup becomes unknown.
    put_named(repo, "index", envelope(3, index_payload([bytes.fromhex(old.name)], [])))
    result = run_reader(repo, tmp_path / "out", "--skip-pack-check")
    assert result.returncode == 1
    assert "not in any index" in result.stderr
