#!/usr/bin/env bash
# Creates the golden repositories of manifest version 2 (repository format
# version 1): a tree with hard links and extended attributes (POSIX ACLs
# among them), which a backup records only in manifest version 2.
#
# GOLDEN REPOSITORIES ARE NEVER REGENERATED. They are test vectors: they prove
# that every later build still reads what an earlier build wrote. A format
# change adds new repositories beside these; never replace v1-m2-*. The
# script therefore refuses to write over existing ones. (make-golden.sh made
# the manifest version 1 repositories, v1-plain and v1-encrypted.)
#
# Usage: make-golden-m2.sh [OUTPUT_DIR]   (default: the directory of this script)
# Needs: bash, python3, GNU touch, setfattr (attr), setfacl (acl), a file
# system with user extended attributes and POSIX ACLs for the scratch
# directory (ext4, xfs, btrfs, tmpfs), and backupctl (built by
# `cargo build -p backup-cli`, or given as $BACKUPCTL).
#
# What it writes in OUTPUT_DIR:
#   v1-m2-plain/               `backupctl init --no-encryption`, one backup
#   v1-m2-encrypted/           encrypted with the password in v1-m2-encrypted.password
#   v1-m2-encrypted.password   the password ("golden-password", no newline)
#   expected-m2.json           every path of the backed-up tree with its type,
#                              mode, size, SHA-256, symlink target, mtime (ns),
#                              link count, hard-link group and extended
#                              attributes
# Both repositories hold one backup of set "golden" taken with
# --time 2026-01-01T00:00:00Z of the same source tree, stored as "tree".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here}"
workspace="$(cd "$here/../../.." && pwd)"
backupctl="${BACKUPCTL:-${CARGO_TARGET_DIR:-$workspace/target}/debug/backupctl}"

for name in v1-m2-plain v1-m2-encrypted v1-m2-encrypted.password expected-m2.json; do
    if [ -e "$out/$name" ]; then
        echo "error: $out/$name exists; golden repositories are never regenerated" >&2
        echo "(add a new repository instead, or pass an empty OUTPUT_DIR)" >&2
        exit 1
    fi
done
if [ ! -x "$backupctl" ]; then
    echo "error: $backupctl not found: run 'cargo build -p backup-cli' or set BACKUPCTL" >&2
    exit 1
fi
for tool in setfattr setfacl; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found: install the attr and acl packages" >&2
        exit 1
    fi
done
mkdir -p "$out"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
src="$scratch/tree"

# The source tree. Contents are fixed (or come from a fixed xorshift
# generator), so every run produces the same bytes. It is small: the
# repositories are a few tens of KiB.
python3 - "$src" <<'PY'
import os, sys

root = sys.argv[1]

def xorshift(n, state):
    out = bytearray(n)
    for i in range(n):
        state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 7
        state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
        out[i] = state & 0xFF
    return bytes(out)

def write(rel, data, mode):
    path = os.path.join(root, rel)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)

def link(existing, new):
    os.link(os.path.join(root, existing), os.path.join(root, new))

for d in ["", "attrs-dir", "linked", "shared"]:
    os.makedirs(os.path.join(root, d), exist_ok=True)

# One file with three names, one of them in a subdirectory. The first
# name by path ("tree/linked/third.txt") is the one a reader writes; the
# others become hard links of it.
lines = [f"{i:03d} three names, one file\n" for i in range(40)]
write("triple-a.txt", "".join(lines).encode(), 0o640)
link("triple-a.txt", "triple-b.txt")
link("triple-a.txt", "linked/third.txt")
# A pair of hard links, incompressible content.
write("pair-1.bin", xorshift(1500, 0x2545F4914F6CDD1D), 0o600)
link("pair-1.bin", "pair-2.bin")
# A file alone: one link, no hard-link fields.
write("alone.txt", b"a file with one name\n", 0o644)
# Files with extended attributes.
write("attrs.txt", b"user attributes, one of them binary\n", 0o644)
write("acl.txt", b"an access ACL\n", 0o640)
# Created before its directory gets a default ACL: it inherits none, and a
# reader that sets the directory's attributes before writing its files
# would give its restored copy one.
write("shared/before-default-acl.txt", b"no ACL of its own\n", 0o644)
os.symlink("alone.txt", os.path.join(root, "link-to-alone"))
for d, mode in [("", 0o755), ("attrs-dir", 0o750), ("linked", 0o755), ("shared", 0o775)]:
    os.chmod(os.path.join(root, d), mode)
PY

# Extended attributes: user attributes on files and a directory (one with a
# binary value), an access ACL (system.posix_acl_access; it makes the
# mode's group bits the ACL mask, rw-) and a default ACL
# (system.posix_acl_default).
setfattr -n user.comment -v 'golden tree' "$src/attrs.txt"
setfattr -n user.binary -v 0x00ff10 "$src/attrs.txt"
setfattr -n user.empty "$src/attrs.txt"
setfattr -n user.names -v 'three names, one set of attributes' "$src/triple-a.txt"
setfattr -n user.purpose -v 'a directory with attributes' "$src/attrs-dir"
setfacl -m u:nobody:r--,g:daemon:rw- "$src/acl.txt"
setfacl -d -m g:daemon:r-x "$src/shared"

# Fixed mtimes (one with nanoseconds), after the attributes and the links,
# children before their directories so that setting a child's time does
# not disturb its parent's. The names of one file share one time.
export TZ=UTC
stamp() { touch -h -d "$1" "$src/$2"; }
stamp '2025-01-02 03:04:05.123456789' triple-a.txt
stamp '2025-02-03 04:05:06' pair-1.bin
stamp '2025-03-04 05:06:07' alone.txt
stamp '2025-04-05 06:07:08' attrs.txt
stamp '2025-05-06 07:08:09' acl.txt
stamp '2025-06-07 08:09:10' shared/before-default-acl.txt
stamp '2025-07-08 09:10:11' link-to-alone
stamp '2024-01-01 00:00:00' attrs-dir
stamp '2024-02-02 00:00:00' linked
stamp '2024-03-03 00:00:00' shared
stamp '2024-04-04 00:00:00' .

# expected-m2.json: what a restore must produce, by path relative to the
# restore target.
python3 - "$scratch" "$scratch/expected-m2.json" <<'PY'
import hashlib, json, os, stat, sys

base, dest = sys.argv[1], sys.argv[2]
paths, inodes = {}, {}
for dirpath, dirnames, filenames in os.walk(os.path.join(base, "tree")):
    for name in [None] + dirnames + filenames:
        full = dirpath if name is None else os.path.join(dirpath, name)
        rel = os.path.relpath(full, base)
        if rel in paths:
            continue
        st = os.lstat(full)
        entry = {"mtime_ns": st.st_mtime_ns}
        if stat.S_ISLNK(st.st_mode):
            entry.update(type="symlink", mode=None, size=0, sha256=None, target=os.readlink(full),
                         links=st.st_nlink, link_group=None, xattrs=None)
        else:
            xattrs = {
                attr: os.getxattr(full, attr, follow_symlinks=False).hex()
                for attr in sorted(os.listxattr(full, follow_symlinks=False))
            }
            entry.update(mode=stat.S_IMODE(st.st_mode), target=None, xattrs=xattrs)
            if stat.S_ISDIR(st.st_mode):
                # A directory's link count depends on the file system
                # (btrfs reports 1), not on the backup: not listed.
                entry.update(type="dir", size=0, sha256=None, links=None, link_group=None)
            else:
                with open(full, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                entry.update(type="file", size=st.st_size, sha256=digest, links=st.st_nlink)
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        paths[rel] = entry
for group in inodes.values():
    if len(group) != paths[group[0]]["links"]:
        sys.exit(f"error: {group} are not all the names of their file")
    for rel in group:
        paths[rel]["link_group"] = sorted(group, key=lambda p: p.encode())
doc = {
    "set": "golden",
    "time": "2026-01-01T00:00:00Z",
    "note": (
        "mode is null for symlinks (their permission bits are not restored); "
        "links is st_nlink after the restore (null for directories, whose count depends on the file system); "
        "link_group is the sorted paths of the file's names (files only); "
        "xattrs maps each extended attribute's name to its value in lowercase hex, "
        "as listxattr/getxattr report it without following symlinks (files and dirs only)"
    ),
    "paths": {rel: dict(sorted(paths[rel].items())) for rel in sorted(paths)},
}
with open(dest, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
PY

check() { # checks that repository $1 holds one backup of manifest version 2, intact
    "$backupctl" show --repo "$1" "${@:2}" --json latest |
        python3 -c 'import json, sys; m = json.load(sys.stdin); assert m["version"] == 2, m["version"]'
    "$backupctl" verify --repo "$1" "${@:2}" --read-data --json |
        python3 -c 'import json, sys; r = json.load(sys.stdin); assert r["ok"], r'
}
backup() { # backs the source tree up into repository $1
    "$backupctl" backup --repo "$1" "${@:2}" \
        --set golden --time 2026-01-01T00:00:00Z --writer make-golden-m2.sh "$src"
}

# Everything is built in the scratch directory and moved into place only
# when both repositories are complete and checked, so a failed run leaves
# nothing behind.
printf '%s' 'golden-password' > "$scratch/v1-m2-encrypted.password"
pw=(--password-file "$scratch/v1-m2-encrypted.password")
"$backupctl" init --repo "$scratch/v1-m2-plain" --no-encryption
backup "$scratch/v1-m2-plain"
check "$scratch/v1-m2-plain"
"$backupctl" init --repo "$scratch/v1-m2-encrypted" "${pw[@]}"
backup "$scratch/v1-m2-encrypted" "${pw[@]}"
check "$scratch/v1-m2-encrypted" "${pw[@]}"
mv "$scratch/v1-m2-plain" "$scratch/v1-m2-encrypted" "$scratch/v1-m2-encrypted.password" \
    "$scratch/expected-m2.json" "$out/"
du -sh "$out/v1-m2-plain" "$out/v1-m2-encrypted"
