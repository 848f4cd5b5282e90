"""Runs the independent reader on the golden repositories (and damaged or
hand-made copies of them) and compares what it extracts with expected.json
(v1-plain, v1-encrypted) and expected-m2.json (v1-m2-plain, v1-m2-encrypted:
manifest version 2, with hard links and extended attributes)."""

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
EXPECTED_M2 = json.loads((GOLDEN / "expected-m2.json").read_text(encoding="utf-8"))


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
    password_file = GOLDEN / f"{name}.password"
    return ["--password-file", password_file] if password_file.exists() else []


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


@pytest.mark.parametrize("name", ["v1-plain", "v1-encrypted", "v1-m2-plain", "v1-m2-encrypted"])
def test_lists_one_golden_backup(name, tmp_path):
    result = run_reader(copy_repo(name, tmp_path), "--list", *password_args(name))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    expected = EXPECTED_M2 if name.startswith("v1-m2-") else EXPECTED
    assert lines[0].split()[1:3] == [expected["time"], expected["set"]]


def describe_m2(root):
    """Every path below `root` as expected-m2.json describes it: as
    `describe`, plus link counts, the names of each file and extended
    attributes."""
    found = describe(root)
    names_of = {}
    for relative, entry in found.items():
        full = os.path.join(root, relative)
        st = os.lstat(full)
        entry.update(links=None, link_group=None, xattrs=None)
        if entry["type"] == "symlink":
            entry["links"] = st.st_nlink
            continue
        entry["xattrs"] = {
            name: os.getxattr(full, name, follow_symlinks=False).hex()
            for name in sorted(os.listxattr(full, follow_symlinks=False))
        }
        if entry["type"] == "file":
            entry["links"] = st.st_nlink
            names_of.setdefault((st.st_dev, st.st_ino), []).append(relative)
    for names in names_of.values():
        for relative in names:
            found[relative]["link_group"] = sorted(names, key=lambda path: path.encode())
    return found


@pytest.mark.parametrize("name", ["v1-m2-plain", "v1-m2-encrypted"])
def test_golden_manifest_version_2_extracts_exactly(name, tmp_path):
    """Contents, modes, times, hard links (the three names of one file, one
    in a subdirectory, and a pair) and extended attributes (user ones, a
    binary and an empty value, an access and a default ACL) byte for byte."""
    repo = copy_repo(name, tmp_path)
    out = tmp_path / "out"
    result = run_reader(repo, out, "--set", "golden", *password_args(name))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert describe_m2(out) == EXPECTED_M2["paths"]
    groups = {tuple(entry["link_group"]) for entry in EXPECTED_M2["paths"].values() if entry["type"] == "file"}
    assert sorted(len(group) for group in groups if len(group) > 1) == [2, 3], "the golden tree lost its hard links"


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


def write_plain_backup(repo, listing, time="2030-01-01T00:00:00Z", status="completed", version=1, data=()):
    """Stores one tree chunk (and the data chunks `data`) in a new pack,
    indexes it, and writes a manifest of `version` whose root is that tree."""
    chunk_id = hashlib.sha256(listing).digest()
    blobs, offset = [], 0
    for kind, body in [(2, listing)] + [(1, body) for body in data]:
        blobs.append((kind, offset, body))
        offset += len(body)
    header = b"".join(
        struct.pack("<BBII", kind, 0, len(body), len(body)) + hashlib.sha256(body).digest() for kind, _, body in blobs
    )
    sealed = envelope(5, header)
    pack = b"".join(body for _, _, body in blobs) + sealed + struct.pack("<I", len(sealed)) + b"BKPK"
    pack_id = put_named(repo, "data", pack)
    put_named(repo, "index", envelope(3, index_payload([], [(pack_id, len(pack), blobs)])))
    manifest = {
        "version": version, "set": "handmade", "time": time, "started": time, "finished": time,
        "writer": "test", "hostname": "test", "source": {"kind": "directory", "paths": []},
        "root": [chunk_id.hex()], "stats": dict.fromkeys(
            "files dirs symlinks files_unchanged bytes_total bytes_read bytes_added chunks_added skipped duration_ms".split(), 0
        ), "status": status,
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


def deletion_mark(packs, marked_at="2030-01-01T00:00:00Z"):
    body = json.dumps({"marked_at": marked_at, "packs": [p.hex() for p in packs]}, separators=(",", ":"))
    return envelope(7, body.encode())


def golden_packs(repo):
    return [bytes.fromhex(p.name) for p in (repo / "data").glob("*/*")]


def test_restore_through_a_deletion_mark(tmp_path):
    """A prune marked every pack of the golden backup and wrote an index
    without them (the backup was still being written when it looked): the
    chunks are reachable only through `pending/`, and the backup restores."""
    repo = copy_repo("v1-plain", tmp_path)
    (old,) = (repo / "index").iterdir()
    put_named(repo, "index", envelope(3, index_payload([bytes.fromhex(old.name)], [])))
    put_named(repo, "pending", deletion_mark(golden_packs(repo)))
    out = tmp_path / "out"
    result = run_reader(repo, out)
    assert result.returncode == 0, result.stderr
    assert describe(out) == EXPECTED["paths"]


def test_a_damaged_deletion_mark_is_an_error(tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    mark = bytearray(deletion_mark(golden_packs(repo)))
    mark[12] ^= 0xFF
    put_named(repo, "pending", bytes(mark))
    result = run_reader(repo, tmp_path / "out", "--skip-pack-check")
    assert result.returncode == 1
    assert "pending/" in result.stderr and "checksum" in result.stderr


def test_latest_is_the_newest_completed_backup(tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    node = {"name": "newer", "type": "file", "mode": 0o644, "mtime_ns": 0}
    write_plain_backup(repo, json.dumps(node).encode() + b"\n", status="partially_failed")
    out = tmp_path / "out"
    result = run_reader(repo, out)
    assert result.returncode == 0, result.stderr
    assert describe(out) == EXPECTED["paths"], "the newer, partially failed backup was restored"


@pytest.mark.parametrize("field,value", [("mode", "420.0"), ("mode", "4.2e2"), ("mtime_ns", "true"), ("size", "1e0")])
def test_an_integer_with_a_fraction_or_exponent_is_damage(field, value, tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    node = {"name": "a", "type": "file", "mode": 420, "mtime_ns": 0, "size": 0}
    line = json.dumps(node, separators=(",", ":")).replace(f'"{field}":{json.dumps(node[field])}', f'"{field}":{value}')
    assert value in line
    write_plain_backup(repo, line.encode() + b"\n")
    result = run_reader(repo, tmp_path / "out", "--set", "handmade", "--skip-pack-check")
    assert result.returncode == 1
    assert "invalid" in result.stderr


# --- Manifest version 2: hard links and extended attributes -------------------

LINKED = {"links": 2, "dev": 2049, "inode": 77}


def listing_of(*nodes):
    return b"".join(json.dumps(node, separators=(",", ":")).encode() + b"\n" for node in nodes)


@pytest.mark.parametrize(
    "node,message",
    [
        ({"type": "file", **LINKED, "links": 1}, "invalid links"),
        ({"type": "file", **LINKED, "links": None}, "invalid links"),
        ({"type": "file", "links": 2, "inode": 77}, "do not fit"),
        ({"type": "file", "dev": 2049, "inode": 77}, "do not fit"),
        ({"type": "dir", "subtree": [], **LINKED}, "do not fit"),
        ({"type": "symlink", "target": "x", **LINKED}, "do not fit"),
        ({"type": "file", "xattrs": [{"name": "user.b", "value": ""}, {"name": "user.a", "value": ""}]}, "order"),
        ({"type": "file", "xattrs": [{"name": "user.a", "value": ""}, {"name": "user.a", "value": "00"}]}, "dupl"),
        ({"type": "symlink", "target": "x", "xattrs": [{"name": "user.a", "value": "00"}]}, "do not fit"),
        ({"type": "file", "xattrs": [{"name": "user.a", "value": "AB"}]}, "not lowercase hex"),
        ({"type": "file", "xattrs": [{"name": "user.a", "value": "abc"}]}, "not lowercase hex"),
        ({"type": "file", "xattrs": [{"name": "user.a", "value": "00" * 65537}]}, "at most 65536 bytes"),
        ({"type": "file", "xattrs": [{"name": "", "value": "00"}]}, "invalid extended attribute name"),
        ({"type": "file", "xattrs": [{"name": "user.a\u0000b", "value": "00"}]}, "invalid extended attribute name"),
        ({"type": "file", "xattrs": [{"name": "user.a"}]}, "invalid extended attribute"),
        ({"type": "file", "xattrs": None}, "invalid xattrs"),
    ],
    ids=[
        "links-1", "links-null", "links-without-dev", "dev-without-links", "links-on-a-dir",
        "links-on-a-symlink", "xattrs-unsorted", "xattrs-duplicated", "xattrs-on-a-symlink",
        "xattr-uppercase-hex", "xattr-odd-hex", "xattr-too-long", "xattr-empty-name", "xattr-nul-in-name",
        "xattr-no-value", "xattrs-null",
    ],
)
def test_damaged_hard_link_and_xattr_fields_are_refused(node, message, tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    write_plain_backup(repo, listing_of({"name": "a", "mode": 0o644, "mtime_ns": 0, **node}), version=2)
    result = run_reader(repo, tmp_path / "out", "--set", "handmade", "--skip-pack-check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "damaged object tree of '/'" in result.stderr and message in result.stderr, result.stderr


def test_a_valid_xattr_value_of_65536_bytes_is_accepted(tmp_path):
    """The limit is inclusive. (Decoded only: a file system may refuse a
    value that large, ext4 does, which extraction reports, not fatal.)"""
    sys.path.insert(0, str(HERE))
    import read_repo

    node = {"name": "a", "type": "file", "mode": 0o644, "mtime_ns": 0}
    node["xattrs"] = [{"name": "user.a", "value": "ab" * 65536}]
    (decoded,) = read_repo.decode_tree("test", listing_of(node))
    assert decoded["xattrs"] == [("user.a", b"\xab" * 65536)]


def test_future_manifest_version_is_a_version_error(tmp_path):
    """Manifest version 3 fails the listing (FORMAT.md "Reading a
    repository", step 4), beside the golden backup of version 2."""
    repo = copy_repo("v1-m2-plain", tmp_path)
    write_plain_backup(repo, b"", version=3)
    result = run_reader(repo, tmp_path / "out")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "unsupported manifest version 3 in manifests/" in result.stderr
    assert "reads versions 1 to 2" in result.stderr


@pytest.mark.parametrize("version", [2.0, True, "2", None])
def test_a_manifest_version_that_is_no_integer_is_damage(version, tmp_path):
    """A version of another JSON type is damage, not another version
    (FORMAT.md "Conventions": check the type, not the value)."""
    repo = copy_repo("v1-plain", tmp_path)
    write_plain_backup(repo, b"", version=version)
    result = run_reader(repo, tmp_path / "out", "--skip-pack-check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "invalid manifest version" in result.stderr


def test_names_of_one_file_are_restored_as_hard_links(tmp_path):
    """FORMAT.md "Hard links": nodes with `links` and the same `dev`,
    `inode`, `size` and `content` are one file; one that shares `dev` and
    `inode` but not the content (the file changed between the reads of its
    names) is a separate file; a node without `links` is never linked."""
    repo = copy_repo("v1-plain", tmp_path)
    hello = hashlib.sha256(b"hello").hexdigest()
    common = {"type": "file", "mode": 0o640, "mtime_ns": 1_000_000_007, "size": 5, "content": [hello]}
    listing = listing_of(
        {"name": "a", **common, **LINKED},
        {"name": "b", **common, **LINKED, "xattrs": [{"name": "user.k", "value": "01"}]},
        {"name": "c", **common, **LINKED, "size": 0, "content": []},
        {"name": "d", **common, "inode": 77},
    )
    write_plain_backup(repo, listing, version=2, data=[b"hello"])
    out = tmp_path / "out"
    result = run_reader(repo, out, "--set", "handmade", "--skip-pack-check")
    assert result.returncode == 0, result.stderr
    a, b, c, d = (os.lstat(out / name) for name in "abcd")
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert c.st_ino != a.st_ino and c.st_nlink == 1 and c.st_size == 0
    assert d.st_ino != a.st_ino and d.st_nlink == 1 and (out / "d").read_bytes() == b"hello"
    assert (out / "b").read_bytes() == b"hello" and stat.S_IMODE(b.st_mode) == 0o640
    # The first name by path ("a") is the one written, with its own
    # (absent) attributes: a hard link takes the file as it is.
    assert os.listxattr(out / "b") == []
    assert a.st_mtime_ns == 1_000_000_007


def test_a_refused_extended_attribute_is_reported_not_fatal(tmp_path):
    """An attribute the target refuses (here a namespace Linux does not
    know) is reported for its item, which is otherwise restored, as are
    its other attributes."""
    repo = copy_repo("v1-plain", tmp_path)
    node = {
        "name": "a", "type": "file", "mode": 0o600, "mtime_ns": 5,
        "xattrs": [{"name": "nonexistent-namespace.x", "value": "01"}, {"name": "user.kept", "value": "00ff"}],
    }
    write_plain_backup(repo, listing_of(node), version=2)
    out = tmp_path / "out"
    result = run_reader(repo, out, "--set", "handmade", "--skip-pack-check")
    assert result.returncode == 5, result.stdout + result.stderr
    assert "a: extended attribute 'nonexistent-namespace.x' not restored" in result.stderr
    assert os.getxattr(out / "a", "user.kept") == b"\x00\xff"
    assert stat.S_IMODE(os.lstat(out / "a").st_mode) == 0o600 and os.lstat(out / "a").st_mtime_ns == 5


@pytest.mark.parametrize("kind", ["dir", "symlink"])
def test_a_size_on_a_directory_or_symlink_is_damage(kind, tmp_path):
    repo = copy_repo("v1-plain", tmp_path)
    node = {"name": "a", "type": kind, "mode": 0o755, "mtime_ns": 0, "size": 3}
    node.update(subtree=[]) if kind == "dir" else node.update(target="b")
    write_plain_backup(repo, json.dumps(node).encode() + b"\n")
    result = run_reader(repo, tmp_path / "out", "--set", "handmade", "--skip-pack-check")
    assert result.returncode == 1
    assert "do not fit" in result.stderr


# --- The inline vectors of FORMAT.md ("Test vectors") -------------------------


def format_vectors():
    text = (HERE.parent.parent / "FORMAT.md").read_text(encoding="utf-8")
    vectors = {}
    for block in text.split("```text\n")[1:]:
        lines = block.split("```", 1)[0].splitlines()
        if not lines or not lines[0].startswith("vector: "):
            continue
        fields, last = {}, None
        for line in lines[1:]:
            if line.startswith("  "):
                fields[last] += line.strip()
            else:
                last, value = line.split(": ", 1)
                fields[last] = value.strip()
        vectors[lines[0][len("vector: "):]] = {k: bytes.fromhex(v) for k, v in fields.items()}
    return vectors


def hchacha20(key, nonce):
    """HChaCha20 (draft-irtf-cfrg-xchacha 2.2), written out here because
    PyNaCl does not expose it."""
    mask = 0xFFFFFFFF
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    state += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce))

    def quarter(a, b, c, d):
        for x, y, z, shift in ((a, b, d, 16), (c, d, b, 12), (a, b, d, 8), (c, d, b, 7)):
            state[x] = (state[x] + state[y]) & mask
            state[z] ^= state[x]
            state[z] = ((state[z] << shift) | (state[z] >> (32 - shift))) & mask

    for _ in range(10):
        for q in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15)):
            quarter(*q)
        for q in ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            quarter(*q)
    return struct.pack("<8I", *(state[0:4] + state[12:16]))


def test_inline_vectors(tmp_path):
    sys.path.insert(0, str(HERE))
    import read_repo

    vectors = format_vectors()
    assert sorted(vectors) == ["hchacha20", "index", "key-file", "master-key", "tree"]
    v = vectors["hchacha20"]
    assert hchacha20(v["key"], v["nonce"]) == v["subkey"]

    m = vectors["master-key"]
    master = read_repo.MasterKey.from_bytes(m["master-key"])
    assert (master.encryption, master.id_key) == (m["encryption-key"], m["id-key"])

    t = vectors["tree"]
    nodes = read_repo.decode_tree("vector", t["listing"])
    assert [n["name"] for n in nodes] == ["a.txt", "link"]
    assert nodes[0]["content"] == [hashlib.sha256(b"hello").digest()]
    assert hashlib.sha256(t["listing"]).digest() == t["sha256-id"]
    assert master.chunk_id(t["listing"]) == t["keyed-id"]
    assert t["encrypted-blob"][:24] == t["blob-nonce"]
    assert read_repo.aead_open(master.encryption, t["encrypted-blob"], t["keyed-id"] + b"\x02") == t["listing"]

    i = vectors["index"]
    assert read_repo.open_envelope("vector", i["plain-object"], read_repo.KIND_INDEX, None, False) == i["payload"]
    assert hashlib.sha256(i["plain-object"]).digest() == i["plain-name"]
    assert read_repo.open_envelope("vector", i["encrypted-object"], read_repo.KIND_INDEX, master, True) == i["payload"]
    assert i["encrypted-object"][8:32] == i["envelope-nonce"]
    index = read_repo.decode_index("vector", i["payload"])
    assert index.supersedes == [b"\xaa" * 32]
    ((pack_id, size, (blob,)),) = index.packs
    assert (pack_id, size) == (b"\xbb" * 32, 4096)
    assert (blob.kind, blob.offset, blob.stored_length) == (read_repo.BLOB_TREE, 0, len(t["encrypted-blob"]))
    assert blob.id == t["keyed-id"]

    k = vectors["key-file"]
    repo = tmp_path / "repo"
    (repo / "keys").mkdir(parents=True)
    (repo / "config").write_bytes(k["config-object"])
    (repo / "keys" / k["key-name"].hex()).write_bytes(k["key-object"])
    opened = read_repo.Repository(repo)
    opened.open_config()
    opened.open_key(k["password"])
    assert opened.master == master
    key_file = opened._read_key_file("keys/" + k["key-name"].hex())
    assert key_file["_sealed"][:24] == k["key-nonce"]
