#!/usr/bin/env bash
# Creates the golden repositories of repository format version 1.
#
# GOLDEN REPOSITORIES ARE NEVER REGENERATED. They are test vectors: they prove
# that every later build still reads what an earlier build wrote. If the
# format changes, bump the format version and add new repositories beside
# these (v2-plain, v2-encrypted, ...) made by a copy of this script; never
# replace v1-*. The script therefore refuses to write over existing ones.
#
# Usage: make-golden.sh [OUTPUT_DIR]   (default: the directory of this script)
# Needs: bash, python3, GNU touch, and backupctl (built by `cargo build -p
# backup-cli`, or given as $BACKUPCTL).
#
# What it writes in OUTPUT_DIR:
#   v1-plain/               `backupctl init --no-encryption`, one backup
#   v1-encrypted/           encrypted with the password in v1-encrypted.password
#   v1-encrypted.password   the password ("golden-password", no newline)
#   expected.json           every path of the backed-up tree with its type,
#                           mode, size, SHA-256, symlink target and mtime (ns)
# Both repositories hold one backup of set "golden" taken with
# --time 2026-01-01T00:00:00Z of the same source tree, stored as "tree".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here}"
workspace="$(cd "$here/../../.." && pwd)"
backupctl="${BACKUPCTL:-${CARGO_TARGET_DIR:-$workspace/target}/debug/backupctl}"

for name in v1-plain v1-encrypted; do
    if [ -e "$out/$name" ]; then
        echo "error: $out/$name exists; golden repositories are never regenerated" >&2
        echo "(add a new v2-... repository instead, or pass an empty OUTPUT_DIR)" >&2
        exit 1
    fi
done
if [ ! -x "$backupctl" ]; then
    echo "error: $backupctl not found: run 'cargo build -p backup-cli' or set BACKUPCTL" >&2
    exit 1
fi
mkdir -p "$out"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
src="$scratch/tree"

# The source tree. Contents come from a fixed xorshift generator, so every
# run produces the same bytes.
python3 - "$src" <<'PY'
import os, sys

root = sys.argv[1]

def xorshift(n, state, alphabet=None):
    out = bytearray(n)
    for i in range(n):
        state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 7
        state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
        out[i] = alphabet[state & 3] if alphabet else state & 0xFF
    return bytes(out)

def write(rel, data, mode):
    path = os.path.join(root, rel)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)

for d in ["", "docs", "docs/nested", "docs/nested/deeper", "empty-dir", "private"]:
    os.makedirs(os.path.join(root, d), exist_ok=True)

# ~1.5 MiB of pseudo-random bases: spans several content-defined chunks
# (512 KiB minimum) yet compresses to about a quarter, keeping the
# repositories small.
big = xorshift(1536 * 1024 + 123, 0x9E3779B97F4A7C15, b"ACGT")
write("genome.dat", big, 0o644)
# The same content again: stored once (deduplicated), restored twice.
write("docs/nested/deeper/genome-copy.dat", big, 0o600)
# Incompressible: its chunk is stored raw (compression would not shrink it).
write("noise.bin", xorshift(3000, 42), 0o640)
# Compressible text.
lines = [f"{i:05d} the quick brown fox jumps over the lazy dog\n" for i in range(600)]
write("docs/readme.txt", "".join(lines).encode(), 0o644)
write("empty.txt", b"", 0o444)
write("run.sh", b"#!/bin/sh\necho golden\n", 0o755)
write("caf\u00e9-\u65e5\u672c\u8a9e.txt", "unicode name \u2713\n".encode(), 0o644)
write("docs/nested/small.txt", b"small\n", 0o664)
write("private/secret.txt", b"not really secret\n", 0o600)
os.symlink("docs/readme.txt", os.path.join(root, "link-to-readme"))
os.symlink("../missing-target", os.path.join(root, "docs/dangling"))
os.chmod(os.path.join(root, "private"), 0o700)
os.chmod(os.path.join(root, "empty-dir"), 0o750)
for d in ["", "docs", "docs/nested", "docs/nested/deeper"]:
    os.chmod(os.path.join(root, d), 0o755)
PY

# Fixed mtimes (one with nanoseconds), children before their directories
# so that setting a child's time does not disturb its parent's.
export TZ=UTC
stamp() { touch -h -d "$1" "$src/$2"; }
stamp '2021-03-04 05:06:07.123456789' genome.dat
stamp '2021-03-04 05:06:08' docs/nested/deeper/genome-copy.dat
stamp '2019-12-31 23:59:59' noise.bin
stamp '2022-02-22 22:22:22.5' docs/readme.txt
stamp '2000-01-01 00:00:00' empty.txt
stamp '2023-07-08 09:10:11' run.sh
stamp '2024-05-06 07:08:09' 'café-日本語.txt'
stamp '2018-01-01 12:00:00' docs/nested/small.txt
stamp '2017-06-15 08:30:00' private/secret.txt
stamp '2020-10-10 10:10:10' link-to-readme
stamp '2020-11-11 11:11:11' docs/dangling
stamp '2016-01-01 00:00:00' empty-dir
stamp '2016-02-02 00:00:00' private
stamp '2016-03-03 00:00:00' docs/nested/deeper
stamp '2016-04-04 00:00:00' docs/nested
stamp '2016-05-05 00:00:00' docs
stamp '2016-06-06 00:00:00' .

# expected.json: what a restore must produce, by path relative to the
# restore target.
python3 - "$scratch" "$out/expected.json" <<'PY'
import hashlib, json, os, stat, sys

base, dest = sys.argv[1], sys.argv[2]
paths = {}
for dirpath, dirnames, filenames in os.walk(os.path.join(base, "tree")):
    for name in [None] + dirnames + filenames:
        full = dirpath if name is None else os.path.join(dirpath, name)
        rel = os.path.relpath(full, base)
        if rel in paths:
            continue
        st = os.lstat(full)
        entry = {"mtime_ns": st.st_mtime_ns}
        if stat.S_ISLNK(st.st_mode):
            entry.update(type="symlink", mode=None, size=0, sha256=None, target=os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            entry.update(type="dir", mode=stat.S_IMODE(st.st_mode), size=0, sha256=None, target=None)
        else:
            with open(full, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            entry.update(type="file", mode=stat.S_IMODE(st.st_mode), size=st.st_size, sha256=digest, target=None)
        paths[rel] = dict(sorted(entry.items()))
doc = {
    "set": "golden",
    "time": "2026-01-01T00:00:00Z",
    "note": "mode is null for symlinks (their permission bits are not restored)",
    "paths": dict(sorted(paths.items())),
}
with open(dest, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
PY

printf '%s' 'golden-password' > "$out/v1-encrypted.password"

blobs() { # number of blobs `verify --read-data` checks in repository $1
    "$backupctl" verify --repo "$1" "${@:2}" --read-data --json |
        python3 -c 'import json, sys; r = json.load(sys.stdin); assert r["ok"], r; print(r["report"]["blobs_checked"])'
}
backup() { # backs the source tree up into repository $1
    "$backupctl" backup --repo "$1" "${@:2}" \
        --set golden --time 2026-01-01T00:00:00Z --writer make-golden.sh "$src"
}

# The plain repository is used without a password file on purpose. Its
# chunker is unseeded, so genome.dat is cut the same way every time (into
# two chunks).
"$backupctl" init --repo "$out/v1-plain" --no-encryption
backup "$out/v1-plain"
want="$(blobs "$out/v1-plain")"

# The encrypted repository's chunker seed is random: with some seeds
# genome.dat is a single chunk. Retry until it has as many chunks as in the
# plain repository, so both exercise multi-chunk files.
pw=(--password-file "$out/v1-encrypted.password")
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    candidate="$scratch/v1-encrypted-$attempt"
    "$backupctl" init --repo "$candidate" "${pw[@]}"
    backup "$candidate" "${pw[@]}"
    if [ "$(blobs "$candidate" "${pw[@]}")" = "$want" ]; then
        mv "$candidate" "$out/v1-encrypted"
        break
    fi
done
if [ ! -d "$out/v1-encrypted" ]; then
    echo "error: no encrypted repository with the expected chunk count" >&2
    exit 1
fi
du -sh "$out/v1-plain" "$out/v1-encrypted"
