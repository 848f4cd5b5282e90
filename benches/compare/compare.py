#!/usr/bin/env python3
"""Side-by-side benchmark of backupctl, restic, borg and rustic.

Generates deterministic datasets, backs them up and restores them with every
tool present into local, encrypted, compressed repositories, alternating the
tools, and writes a Markdown report (plus the raw numbers as JSON) with the
machine's description, per-scenario tables, ratios to each peer, and the
targets of the performance issue marked MET, NOT MET or NOT MEASURED.

    python3 benches/compare/compare.py --quick            # seconds, checks itself
    python3 benches/compare/compare.py                    # the full run

See benches/README.md for what is measured and how. Python 3.11, standard
library only.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "benches" / "results"

# Bump when the generators change: cached datasets with another version are
# generated again.
GENERATOR_VERSION = 1
SEED = 20260101

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

PASSWORD = "benchmark password, not a secret"

# Dataset shapes. "mixed" is the tree most scenarios use; "small" the
# many-files tree; "large" the single large file; "series" the number of
# versions of the mixed tree.
SPECS = {
    "full": {
        "mixed": {
            "text_files": 36_000,
            "text_dirs": (30, 12),
            "text_size": (200, 64 * KIB),
            "logs": 96,
            "log_size": (2 * MIB, 9 * MIB),
            "binaries": [96 * MIB, 128 * MIB, 160 * MIB, 128 * MIB],
            "partial": 24,
            "partial_size": (12 * MIB, 32 * MIB),
            "assets": 64,
        },
        "small": {"files": 200_000, "per_dir": 1000, "size": (64, 4 * KIB)},
        "large": {"size": 4 * GIB},
        "series": {"versions": 10, "new_partial": 4 * MIB},
    },
    "quick": {
        "mixed": {
            "text_files": 300,
            "text_dirs": (3, 4),
            "text_size": (200, 16 * KIB),
            "logs": 4,
            "log_size": (128 * KIB, 512 * KIB),
            "binaries": [1 * MIB, 2 * MIB],
            "partial": 2,
            "partial_size": (1 * MIB, 2 * MIB),
            "assets": 4,
        },
        "small": {"files": 400, "per_dir": 100, "size": (64, 4 * KIB)},
        "large": {"size": 20 * MIB},
        "series": {"versions": 3, "new_partial": 256 * KIB},
    },
}

# The file restored alone: exactly 1 MiB, in the mixed tree.
SINGLE_FILE = "assets/asset-0003.bin"

# Scenario keys, in report order, with their titles.
SCENARIOS = {
    "first_backup": "First full backup of the mixed tree",
    "unchanged_backup": "Backup with nothing changed",
    "changed_backup": "Backup after 1% of the files changed",
    "full_restore": "Full restore of the mixed tree",
    "single_restore": "Restore of one 1 MiB file",
    "small_backup": "Backup of the many-small-files tree",
    "small_restore": "Restore of the many-small-files tree",
    "large_backup": "Backup of the single large file",
    "large_restore": "Restore of the single large file",
    "series": "Series of versions of the mixed tree",
}


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------

WORDS = (
    "backup restore chunk pack index manifest tree repository the a of and to in is for "
    "with on error warning info debug request response latency server client connection "
    "timeout retry user session token config value key table row column query insert "
    "update delete select from where order by limit offset function return struct impl "
    "let mut match if else loop while disk memory network cpu thread process signal file "
    "directory path name size time date year month day hour minute second alpha beta "
    "gamma delta epsilon kernel module driver buffer cache page block sector volume"
).split()


def random_bytes(label: str, size: int) -> bytes:
    """`size` incompressible bytes, a pure function of `label`."""
    return hashlib.shake_128(f"{SEED}:{label}".encode()).digest(size)


class TextPool:
    """A few MiB of English-like text; files are cut from it at random offsets."""

    def __init__(self, size: int = 8 * MIB):
        rng = random.Random(SEED)
        lines = []
        total = 0
        while total < size:
            count = 4 + rng.getrandbits(4)
            line = " ".join(WORDS[rng.getrandbits(16) % len(WORDS)] for _ in range(count))
            lines.append(line)
            total += len(line) + 1
        self.data = ("\n".join(lines) + "\n").encode()[:size]

    def piece(self, rng: random.Random, length: int) -> bytes:
        length = min(length, len(self.data))
        start = rng.randrange(0, len(self.data) - length + 1)
        return self.data[start : start + length]


def text_content(pool: TextPool, rng: random.Random, size: int, name: str) -> bytes:
    """Text of `size` bytes: pool pieces between numbered lines, so that no
    two files (or regions of one file) are the same."""
    parts = [f"# {name}\n".encode()]
    total = len(parts[0])
    counter = 0
    while total < size:
        counter += 1
        marker = f"{counter:06d} {rng.getrandbits(32):08x} ".encode()
        piece = pool.piece(rng, 64 + rng.getrandbits(10))
        parts.append(marker)
        parts.append(piece)
        total += len(marker) + len(piece)
    return b"".join(parts)[:size]


LEVELS = (b"INFO", b"INFO", b"INFO", b"DEBUG", b"WARN", b"ERROR")
SERVICES = (b"api", b"worker", b"scheduler", b"db-proxy", b"auth")


def log_lines(pool: TextPool, rng: random.Random, size: int, start_second: int) -> bytes:
    """Log lines (timestamp, level, service, message) totalling `size` bytes."""
    parts = []
    total = 0
    second = start_second
    while total < size:
        second += rng.getrandbits(2)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_767_225_600 + second))
        head = b"%s.%03dZ %s %s[%d]: " % (
            stamp.encode(),
            rng.getrandbits(10) % 1000,
            LEVELS[rng.getrandbits(8) % len(LEVELS)],
            SERVICES[rng.getrandbits(8) % len(SERVICES)],
            1000 + rng.getrandbits(12),
        )
        body = pool.piece(rng, 40 + rng.getrandbits(7)).replace(b"\n", b" ")
        parts.append(head)
        parts.append(body)
        parts.append(b"\n")
        total += len(head) + len(body) + 1
    return b"".join(parts)[:size]


def partial_blocks(pool: TextPool, label: str, size: int):
    """Yields blocks alternating 4 KiB of random bytes and 4 KiB of text:
    compresses to a little over half."""
    rng = random.Random(f"{SEED}:{label}")
    block = 16 * MIB
    done = 0
    index = 0
    while done < size:
        length = min(block, size - done)
        noise = random_bytes(f"{label}:{index}", length // 2 + 4 * KIB)
        parts = []
        for offset in range(0, length, 8 * KIB):
            parts.append(noise[offset // 2 : offset // 2 + 4 * KIB])
            parts.append(pool.piece(rng, 4 * KIB))
        yield b"".join(parts)[:length]
        done += length
        index += 1


def random_blocks(label: str, size: int):
    block = 16 * MIB
    for index, offset in enumerate(range(0, size, block)):
        yield random_bytes(f"{label}:{index}", min(block, size - offset))


def write_file(path: Path, content) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb", buffering=0) as out:
        if isinstance(content, (bytes, bytearray)):
            content = [content]
        for block in content:
            out.write(block)
            written += len(block)
    return written


def log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def generate_mixed(root: Path, spec: dict, pool: TextPool) -> None:
    rng = random.Random(f"{SEED}:mixed")
    top, sub = spec["text_dirs"]
    for number in range(spec["text_files"]):
        directory = root / "src" / f"d{number % top:02d}" / f"s{(number // top) % sub:02d}"
        size = log_uniform(rng, *spec["text_size"])
        name = f"file-{number:06d}.txt"
        file_rng = random.Random(f"{SEED}:text:{number}")
        write_file(directory / name, text_content(pool, file_rng, size, name))
    for number in range(spec["logs"]):
        size = rng.randrange(*spec["log_size"])
        file_rng = random.Random(f"{SEED}:log:{number}")
        write_file(
            root / "logs" / f"service-{number:03d}.log",
            log_lines(pool, file_rng, size, number * 86_400),
        )
    for number, size in enumerate(spec["binaries"]):
        write_file(root / "bin" / f"image-{number}.bin", random_blocks(f"bin:{number}", size))
    for number in range(spec["partial"]):
        size = rng.randrange(*spec["partial_size"])
        write_file(
            root / "data" / f"table-{number:03d}.db",
            partial_blocks(pool, f"partial:{number}", size),
        )
    for number in range(spec["assets"]):
        write_file(
            root / "assets" / f"asset-{number:04d}.bin",
            partial_blocks(pool, f"asset:{number}", MIB),
        )


def generate_small(root: Path, spec: dict, pool: TextPool) -> None:
    rng = random.Random(f"{SEED}:small")
    for number in range(spec["files"]):
        size = log_uniform(rng, *spec["size"])
        path = root / f"dir-{number // spec['per_dir']:04d}" / f"f{number:07d}.txt"
        if number % spec["per_dir"] == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        header = f"{number}\n".encode()
        with open(path, "wb") as out:
            out.write(header + pool.piece(rng, max(0, size - len(header))))


def generate_large(root: Path, spec: dict, pool: TextPool) -> None:
    write_file(root / "large.img", partial_blocks(pool, "large", spec["size"]))


GENERATORS = {"mixed": generate_mixed, "small": generate_small, "large": generate_large}


def ensure_dataset(work: Path, mode: str, name: str, pool_holder: list) -> Path:
    """The dataset directory, generated unless a matching stamp says it is
    already complete."""
    spec = SPECS[mode][name]
    root = work / "data" / name
    stamp = work / "data" / f"{name}.stamp"
    wanted = {"generator": GENERATOR_VERSION, "seed": SEED, "spec": spec}
    if stamp.exists() and root.exists():
        try:
            if json.loads(stamp.read_text()) == json.loads(json.dumps(wanted)):
                return root
        except (OSError, ValueError):
            pass
    if root.exists():
        shutil.rmtree(root)
    stamp.unlink(missing_ok=True)
    if not pool_holder:
        pool_holder.append(TextPool())
    log(f"generating dataset {name} ({mode}) in {root}")
    start = time.perf_counter()
    GENERATORS[name](root, spec, pool_holder[0])
    os.sync()
    stamp.write_text(json.dumps(wanted))
    log(f"  {name}: {tree_size(root) / MIB:.0f} MiB in {time.perf_counter() - start:.0f} s")
    return root


# --------------------------------------------------------------------------
# Changes: the 1% edit and the series
# --------------------------------------------------------------------------


def list_files(root: Path) -> list[str]:
    """Relative paths of the regular files under root, sorted."""
    found = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found.append(os.path.relpath(path, root))
    found.sort()
    return found


@dataclass
class Undo:
    path: Path
    offset: int
    original: bytes
    size: int
    mtime_ns: int


def change_one_percent(root: Path, files: list[str], pool_holder: list) -> list[Undo]:
    """Changes 1% of the files in place (the same ones every time): a 4 KiB
    (at most) region overwritten, and lines appended to logs. Returns what
    `undo_changes` needs to put the bytes back."""
    if not pool_holder:
        pool_holder.append(TextPool())
    pool = pool_holder[0]
    rng = random.Random(f"{SEED}:one-percent")
    count = max(1, round(len(files) / 100))
    undo = []
    for relative in sorted(rng.sample(files, count)):
        path = root / relative
        status = path.stat()
        size = status.st_size
        length = min(size, 4 * KIB)
        offset = rng.randrange(0, size - length + 1)
        with open(path, "r+b") as handle:
            handle.seek(offset)
            original = handle.read(length)
            handle.seek(offset)
            handle.write(pool.piece(rng, length))
            if relative.endswith(".log"):
                handle.seek(0, os.SEEK_END)
                handle.write(log_lines(pool, rng, 2 * KIB, 10**7))
        undo.append(Undo(path, offset, original, size, status.st_mtime_ns))
    return undo


def undo_changes(undo: list[Undo]) -> None:
    for change in undo:
        with open(change.path, "r+b") as handle:
            handle.seek(change.offset)
            handle.write(change.original)
            handle.truncate(change.size)
        os.utime(change.path, ns=(change.mtime_ns, change.mtime_ns))


def series_step(root: Path, version: int, spec: dict, pool: TextPool) -> dict:
    """Turns version `version - 1` of the series tree into `version`:
    edits, appends to logs, insertions in the middle of large files, new
    files and deleted files, all drawn from a seeded generator."""
    rng = random.Random(f"{SEED}:series:{version}")
    files = list_files(root)
    texts = [f for f in files if f.startswith("src/")]
    logs = [f for f in files if f.startswith("logs/")]
    large = [f for f in files if f.startswith(("bin/", "data/"))]
    counts = {"edited": 0, "appended": 0, "inserted": 0, "added": 0, "deleted": 0}

    for relative in rng.sample(texts, max(1, len(texts) * 15 // 1000)):
        path = root / relative
        content = path.read_bytes()
        start = rng.randrange(0, max(1, len(content)))
        end = min(len(content), start + rng.randrange(16, 512))
        replacement = pool.piece(rng, rng.randrange(16, 512))
        path.write_bytes(content[:start] + replacement + content[end:])
        counts["edited"] += 1
    for relative in rng.sample(logs, max(1, len(logs) * 3 // 10)):
        path = root / relative
        grow = max(KIB, int(path.stat().st_size * rng.uniform(0.005, 0.02)))
        with open(path, "ab") as handle:
            handle.write(log_lines(pool, rng, grow, 10**6 * version))
        counts["appended"] += 1
    for relative in rng.sample(large, min(2, len(large))):
        path = root / relative
        content = path.read_bytes()
        at = rng.randrange(0, len(content) + 1)
        inserted = random_bytes(f"series:{version}:{relative}", rng.randrange(KIB, 64 * KIB))
        temporary = path.with_name(path.name + ".tmp")
        write_file(temporary, [content[:at], inserted, content[at:]])
        os.replace(temporary, path)
        counts["inserted"] += 1
    directories = sorted({os.path.dirname(f) for f in texts})
    for number in range(max(1, len(texts) // 200)):
        name = f"new-v{version:02d}-{number:04d}.txt"
        size = log_uniform(rng, 200, 64 * KIB)
        write_file(
            root / rng.choice(directories) / name,
            text_content(pool, random.Random(f"{SEED}:{name}"), size, name),
        )
        counts["added"] += 1
    write_file(
        root / "data" / f"new-v{version:02d}.db",
        partial_blocks(pool, f"series-new:{version}", spec["new_partial"]),
    )
    counts["added"] += 1
    for relative in rng.sample(texts, max(1, len(texts) * 3 // 1000)):
        (root / relative).unlink(missing_ok=True)
        counts["deleted"] += 1
    if version % 3 == 0 and logs:
        (root / rng.choice(logs)).unlink(missing_ok=True)
        counts["deleted"] += 1
    return counts


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


def tree_size(root: Path) -> int:
    """Apparent size of every regular file under root, in bytes."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                status = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            if not os.path.islink(os.path.join(directory, name)):
                total += status.st_size
    return total


def digest_tree(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file under root, by relative path."""
    digests = {}
    for relative in list_files(root):
        with open(root / relative, "rb") as handle:
            digests[relative] = hashlib.file_digest(handle, "sha256").hexdigest()
    return digests


class CacheControl:
    """Empties the page cache before cold measurements: through
    /proc/sys/vm/drop_caches when permitted, else posix_fadvise(DONTNEED)
    on every file of the trees involved."""

    def __init__(self, mode: str):
        self.mode = mode
        self.method = "none (warm page cache)"
        if mode == "cold":
            try:
                os.sync()
                with open("/proc/sys/vm/drop_caches", "w") as handle:
                    handle.write("3\n")
                self.method = "echo 3 > /proc/sys/vm/drop_caches"
            except OSError:
                self.method = "posix_fadvise(POSIX_FADV_DONTNEED) on every file"

    def prepare(self, paths: list[Path]) -> None:
        os.sync()
        if self.mode != "cold":
            return
        if self.method.startswith("echo"):
            with open("/proc/sys/vm/drop_caches", "w") as handle:
                handle.write("3\n")
            return
        for root in paths:
            for directory, _, files in os.walk(root):
                for name in files:
                    try:
                        fd = os.open(os.path.join(directory, name), os.O_RDONLY)
                    except OSError:
                        continue
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    finally:
                        os.close(fd)


@dataclass
class Execution:
    command: list[str]
    exit_code: int
    wall_seconds: float
    max_rss_kib: int
    rchar: int | None
    read_bytes: int | None
    stderr_tail: str


GNU_TIME = "/usr/bin/time"


def execute(command: list[str], env: dict, cwd: Path, log_path: Path) -> Execution:
    """Runs one command; measures its wall time, peak RSS and I/O counters.

    The command runs under GNU time (`/usr/bin/time -f %M`), whose own small
    process forks it: a child forked from this Python process would count
    Python's memory in its ru_maxrss (Linux keeps the high-water mark across
    exec). The I/O counters come from /proc/PID/io of the time process, read
    after it exits and before it is reaped: they include its reaped child's.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rss_file = log_path.with_suffix(".rss")
    wrapped = command
    if os.access(GNU_TIME, os.X_OK):
        wrapped = [GNU_TIME, "-f", "%M", "-o", str(rss_file)] + command
    with open(log_path, "ab") as output:
        output.write(f"$ {' '.join(command)}\n".encode())
        output.flush()
        start = time.perf_counter()
        process = subprocess.Popen(
            wrapped, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        wall = time.perf_counter() - start
        counters = {}
        try:
            with open(f"/proc/{process.pid}/io") as handle:
                for line in handle:
                    key, _, value = line.partition(":")
                    counters[key] = int(value)
        except OSError:
            pass
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    max_rss_kib = usage.ru_maxrss
    if wrapped is not command:
        try:
            max_rss_kib = int(rss_file.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
        rss_file.unlink(missing_ok=True)
    tail = ""
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
    return Execution(
        command=command,
        exit_code=process.returncode,
        wall_seconds=wall,
        max_rss_kib=max_rss_kib,
        rchar=counters.get("rchar"),
        read_bytes=counters.get("read_bytes"),
        stderr_tail=tail,
    )


STRACE_LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(.*)$")
READ_CALL = re.compile(r"^(?:read|pread64|readv|preadv|preadv2)\(\d+<([^>]*)>")
RESUMED = re.compile(r"^<\.\.\. (?:read|pread64|readv|preadv|preadv2) resumed>")
RESULT = re.compile(r"\)\s+=\s+(-?\d+)")


def strace_repository_reads(trace: Path, repository: Path) -> int:
    """Bytes returned by read calls on files under `repository`, from an
    `strace -f -y` log (unfinished/resumed pairs included)."""
    prefix = str(repository.resolve()) + os.sep
    pending: dict[str, str] = {}
    total = 0
    with open(trace, errors="replace") as handle:
        for raw in handle:
            match = STRACE_LINE.match(raw.rstrip("\n"))
            if not match:
                continue
            pid, rest = match.groups()
            call = READ_CALL.match(rest)
            if call:
                path = call.group(1)
                if rest.endswith("<unfinished ...>"):
                    pending[pid] = path
                    continue
                result = RESULT.search(rest)
                if result and path.startswith(prefix) and int(result.group(1)) > 0:
                    total += int(result.group(1))
            elif RESUMED.match(rest) and pid in pending:
                path = pending.pop(pid)
                result = RESULT.search(rest)
                if result and path.startswith(prefix) and int(result.group(1)) > 0:
                    total += int(result.group(1))
    return total


# --------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------


class Tool:
    """How one backup program is driven. Each repository is a directory;
    `src` is always an absolute dataset directory."""

    name = ""

    def __init__(self, binary: str, work: Path):
        self.binary = binary
        self.work = work

    def env(self) -> dict:
        env = dict(os.environ)
        env["HOME"] = str(self.work / "home")
        return env

    def version(self) -> str:
        return ""

    def init(self, repo: Path) -> list[str]:
        raise NotImplementedError

    def backup(self, repo: Path, src: Path) -> tuple[list[str], Path]:
        raise NotImplementedError

    def restore(self, repo: Path, src: Path, target: Path) -> tuple[list[str], Path]:
        raise NotImplementedError

    def restore_file(self, repo: Path, src: Path, relative: str, target: Path):
        raise NotImplementedError

    def restored_root(self, src: Path, target: Path) -> Path:
        """Where a full restore of `src` into `target` puts its files."""
        for candidate in (target / src.name, target / str(src).lstrip("/")):
            if candidate.is_dir():
                return candidate
        for directory, _, _ in os.walk(target):
            if os.path.basename(directory) == src.name:
                return Path(directory)
        return target / src.name

    def cleanup(self) -> None:
        """Removes caches kept outside the repository."""


def version_of(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


class Backupctl(Tool):
    name = "backupctl"

    def env(self):
        env = super().env()
        env["BACKUP_PASSWORD"] = PASSWORD
        for key in ("BACKUP_REPO", "BACKUP_PASSWORD_FILE", "BACKUP_LOG"):
            env.pop(key, None)
        return env

    def version(self):
        return version_of([self.binary, "--version"])

    def init(self, repo):
        return [self.binary, "init", "--repo", str(repo)]

    def backup(self, repo, src):
        command = [self.binary, "backup", "--repo", str(repo), "--set", "bench"]
        return command + ["--progress", "none", str(src)], src.parent

    def restore(self, repo, src, target):
        command = [self.binary, "restore", "--repo", str(repo), "latest", "--set", "bench"]
        return command + ["--progress", "none", "--target", str(target)], target.parent

    def restore_file(self, repo, src, relative, target):
        command, cwd = self.restore(repo, src, target)
        return command + ["--include", f"{src.name}/{relative}"], cwd


class Restic(Tool):
    name = "restic"

    def env(self):
        env = super().env()
        env["RESTIC_PASSWORD"] = PASSWORD
        for key in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND"):
            env.pop(key, None)
        return env

    def version(self):
        return version_of([self.binary, "version"])

    def common(self, repo):
        cache = self.work / "cache" / "restic"
        return [self.binary, "-r", str(repo), "--cache-dir", str(cache), "--quiet"]

    def init(self, repo):
        return self.common(repo) + ["init", "--repository-version", "2"]

    def backup(self, repo, src):
        command = self.common(repo) + ["--compression", "auto", "backup"]
        return command + ["--host", "bench", str(src)], src.parent

    def restore(self, repo, src, target):
        return self.common(repo) + ["restore", "latest", "--target", str(target)], target.parent

    def restore_file(self, repo, src, relative, target):
        command, cwd = self.restore(repo, src, target)
        return command + ["--include", str(src / relative)], cwd

    def cleanup(self):
        shutil.rmtree(self.work / "cache" / "restic", ignore_errors=True)


class Borg(Tool):
    name = "borg"

    def __init__(self, binary, work):
        super().__init__(binary, work)
        self.archives: dict[Path, int] = {}

    def env(self):
        env = super().env()
        env["BORG_PASSPHRASE"] = PASSWORD
        env["BORG_BASE_DIR"] = str(self.work / "cache" / "borg")
        env["BORG_DISPLAY_PASSPHRASE"] = "no"
        env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
        env.pop("BORG_REPO", None)
        return env

    def version(self):
        return version_of([self.binary, "--version"])

    def init(self, repo):
        self.archives[repo] = 0
        return [self.binary, "init", "--encryption", "repokey", str(repo)]

    def backup(self, repo, src):
        self.archives[repo] = self.archives.get(repo, 0) + 1
        archive = f"{repo}::a{self.archives[repo]}"
        command = [self.binary, "create", "--compression", "zstd,3", archive, src.name]
        return command, src.parent

    def latest(self, repo):
        return f"{repo}::a{self.archives.get(repo, 1)}"

    def restore(self, repo, src, target):
        target.mkdir(parents=True, exist_ok=True)
        return [self.binary, "extract", self.latest(repo)], target

    def restore_file(self, repo, src, relative, target):
        target.mkdir(parents=True, exist_ok=True)
        return [self.binary, "extract", self.latest(repo), f"{src.name}/{relative}"], target

    def cleanup(self):
        shutil.rmtree(self.work / "cache" / "borg", ignore_errors=True)


class Rustic(Tool):
    name = "rustic"

    def env(self):
        env = super().env()
        env["RUSTIC_PASSWORD"] = PASSWORD
        env["RUSTIC_NO_PROGRESS"] = "true"
        for key in ("RUSTIC_REPOSITORY", "RUSTIC_PASSWORD_FILE", "RUSTIC_USE_PROFILE"):
            env.pop(key, None)
        return env

    def version(self):
        return version_of([self.binary, "--version"])

    def common(self, repo):
        cache = self.work / "cache" / "rustic"
        return [self.binary, "-r", str(repo), "--cache-dir", str(cache), "--no-progress"]

    def init(self, repo):
        return self.common(repo) + ["init", "--set-compression", "3"]

    def backup(self, repo, src):
        return self.common(repo) + ["backup", "--host", "bench", str(src)], src.parent

    def restore(self, repo, src, target):
        return self.common(repo) + ["restore", "latest", str(target)], target.parent

    def restore_file(self, repo, src, relative, target):
        target.mkdir(parents=True, exist_ok=True)
        snapshot_path = f"latest:{src / relative}"
        destination = target / os.path.basename(relative)
        return self.common(repo) + ["restore", snapshot_path, str(destination)], target

    def restored_root(self, src, target):
        # rustic restores the snapshot's contents: a snapshot of one
        # directory restores that directory's entries into the target.
        if (target / src.name).is_dir() or (target / str(src).lstrip("/")).is_dir():
            return super().restored_root(src, target)
        return target

    def cleanup(self):
        shutil.rmtree(self.work / "cache" / "rustic", ignore_errors=True)


def find_restored_file(target: Path, relative: str) -> Path | None:
    name = os.path.basename(relative)
    for directory, _, files in os.walk(target):
        if name in files:
            return Path(directory) / name
    return None


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


@dataclass
class Record:
    scenario: str
    tool: str
    round: int
    ok: bool
    wall_seconds: float
    max_rss_kib: int
    dataset_bytes: int
    bytes_added: int | None = None
    repo_bytes: int | None = None
    rchar: int | None = None
    read_bytes: int | None = None
    repo_read_bytes: int | None = None
    verified: bool | None = None
    detail: str = ""
    extra: dict = field(default_factory=dict)


class Bench:
    def __init__(self, args, tools: list[Tool], work: Path, cache: CacheControl):
        self.args = args
        self.tools = tools
        self.work = work
        self.cache = cache
        self.records: list[Record] = []
        self.failures: list[str] = []
        self.logs = work / "logs"
        self.pool: list = []

    def order(self, round_number: int) -> list[Tool]:
        shift = round_number % len(self.tools)
        return self.tools[shift:] + self.tools[:shift]

    def repo(self, tool: Tool, label: str) -> Path:
        return self.work / "repos" / f"{label}-{tool.name}"

    def fail(self, message: str) -> None:
        log(f"FAILED: {message}")
        self.failures.append(message)

    def run(self, tool: Tool, command_cwd, label: str, cold_paths: list[Path]) -> Execution:
        command, cwd = command_cwd
        self.cache.prepare(cold_paths)
        execution = execute(command, tool.env(), cwd, self.logs / f"{tool.name}.log")
        if execution.exit_code != 0:
            self.fail(f"{tool.name} {label}: exit {execution.exit_code}\n{execution.stderr_tail}")
        return execution

    def fresh_repo(self, tool: Tool, label: str) -> Path | None:
        repo = self.repo(tool, label)
        shutil.rmtree(repo, ignore_errors=True)
        repo.parent.mkdir(parents=True, exist_ok=True)
        tool.cleanup()
        command = tool.init(repo)
        execution = execute(command, tool.env(), repo.parent, self.logs / f"{tool.name}.log")
        if execution.exit_code != 0:
            self.fail(f"{tool.name} init: exit {execution.exit_code}\n{execution.stderr_tail}")
            return None
        return repo

    def backup(self, scenario, tool, repo, src, round_number, dataset_bytes) -> Record:
        before = tree_size(repo)
        execution = self.run(tool, tool.backup(repo, src), scenario, [src, repo])
        after = tree_size(repo)
        record = Record(
            scenario=scenario,
            tool=tool.name,
            round=round_number,
            ok=execution.exit_code == 0,
            wall_seconds=execution.wall_seconds,
            max_rss_kib=execution.max_rss_kib,
            dataset_bytes=dataset_bytes,
            bytes_added=after - before,
            repo_bytes=after,
            rchar=execution.rchar,
            read_bytes=execution.read_bytes,
        )
        self.records.append(record)
        log(f"  {scenario:<17} {tool.name:<10} {execution.wall_seconds:8.2f} s")
        return record

    def restore(self, scenario, tool, repo, src, round_number, dataset_bytes, digests) -> Record:
        target = self.work / "restore" / tool.name
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        execution = self.run(tool, tool.restore(repo, src, target), scenario, [repo])
        record = Record(
            scenario=scenario,
            tool=tool.name,
            round=round_number,
            ok=execution.exit_code == 0,
            wall_seconds=execution.wall_seconds,
            max_rss_kib=execution.max_rss_kib,
            dataset_bytes=dataset_bytes,
            repo_bytes=tree_size(repo),
            rchar=execution.rchar,
            read_bytes=execution.read_bytes,
        )
        if record.ok and self.should_verify(round_number):
            restored = tool.restored_root(src, target)
            got = digest_tree(restored) if restored.is_dir() else {}
            record.verified = got == digests
            if not record.verified:
                missing = sorted(set(digests) - set(got))[:5]
                extra = sorted(set(got) - set(digests))[:5]
                differ = sorted(k for k in digests if k in got and got[k] != digests[k])[:5]
                self.fail(
                    f"{tool.name} {scenario}: restored tree {restored} differs from the source "
                    f"(missing {missing}, unexpected {extra}, different {differ})"
                )
                record.ok = False
        shutil.rmtree(target, ignore_errors=True)
        self.records.append(record)
        check = {True: " verified", False: " DIFFERS", None: ""}[record.verified]
        log(f"  {scenario:<17} {tool.name:<10} {execution.wall_seconds:8.2f} s{check}")
        return record

    def restore_single(self, tool, repo, src, round_number, digest) -> Record:
        scenario = "single_restore"
        target = self.work / "restore" / tool.name
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        command_cwd = tool.restore_file(repo, src, SINGLE_FILE, target)
        execution = self.run(tool, command_cwd, scenario, [repo])
        record = Record(
            scenario=scenario,
            tool=tool.name,
            round=round_number,
            ok=execution.exit_code == 0,
            wall_seconds=execution.wall_seconds,
            max_rss_kib=execution.max_rss_kib,
            dataset_bytes=MIB,
            repo_bytes=tree_size(repo),
            rchar=execution.rchar,
            read_bytes=execution.read_bytes,
        )
        if record.ok:
            restored = find_restored_file(target, SINGLE_FILE)
            files = list_files(target)
            got = None
            if restored is not None:
                with open(restored, "rb") as handle:
                    got = hashlib.file_digest(handle, "sha256").hexdigest()
            record.verified = got == digest and len(files) == 1
            if not record.verified:
                self.fail(f"{tool.name} single-file restore: got {files[:5]} (digest {got})")
                record.ok = False
        # Bytes read from the repository, in a second run under strace (it
        # slows the tool down, so it is not the timed run).
        if shutil.which("strace") and record.ok:
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            command, cwd = tool.restore_file(repo, src, SINGLE_FILE, target)
            trace = self.work / "logs" / f"strace-{tool.name}.log"
            traced = ["strace", "-f", "-qq", "-y", "-e", "trace=read,pread64,readv,preadv,preadv2"]
            traced += ["-e", "signal=none", "-o", str(trace)] + command
            done = execute(traced, tool.env(), cwd, self.logs / f"{tool.name}.log")
            if done.exit_code == 0:
                record.repo_read_bytes = strace_repository_reads(trace, repo)
            trace.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        self.records.append(record)
        read = record.repo_read_bytes
        read_text = f", {read / MIB:.2f} MiB read from the repository" if read is not None else ""
        log(f"  {scenario:<17} {tool.name:<10} {execution.wall_seconds:8.3f} s{read_text}")
        return record

    def should_verify(self, round_number: int) -> bool:
        return self.args.verify == "all" or (self.args.verify == "first" and round_number == 0)

    # The scenarios -------------------------------------------------------

    def mixed_round(self, round_number: int, mixed: Path, digests: dict) -> None:
        size = sum(os.path.getsize(mixed / f) for f in digests)
        files = sorted(digests)
        order = self.order(round_number)
        log(f"round {round_number + 1}: mixed tree, order {[t.name for t in order]}")
        repos = {}
        for tool in order:
            repo = self.fresh_repo(tool, "mixed")
            if repo is not None:
                repos[tool.name] = repo
                self.backup("first_backup", tool, repo, mixed, round_number, size)
        for tool in order:
            if tool.name in repos:
                self.backup("unchanged_backup", tool, repos[tool.name], mixed, round_number, size)
        for tool in order:
            if tool.name in repos:
                repo = repos[tool.name]
                self.restore("full_restore", tool, repo, mixed, round_number, size, digests)
        for tool in order:
            if tool.name in repos:
                self.restore_single(
                    tool, repos[tool.name], mixed, round_number, digests[SINGLE_FILE]
                )
        undo = change_one_percent(mixed, files, self.pool)
        try:
            for tool in order:
                if tool.name in repos:
                    repo = repos[tool.name]
                    self.backup("changed_backup", tool, repo, mixed, round_number, size)
        finally:
            undo_changes(undo)
        for tool in order:
            shutil.rmtree(self.repo(tool, "mixed"), ignore_errors=True)
            tool.cleanup()

    def pair_round(self, round_number: int, label: str, src: Path, digests: dict) -> None:
        size = sum(os.path.getsize(src / f) for f in digests)
        order = self.order(round_number)
        log(f"round {round_number + 1}: {label}, order {[t.name for t in order]}")
        for tool in order:
            repo = self.fresh_repo(tool, label)
            if repo is None:
                continue
            record = self.backup(f"{label}_backup", tool, repo, src, round_number, size)
            if record.ok:
                self.restore(f"{label}_restore", tool, repo, src, round_number, size, digests)
            shutil.rmtree(repo, ignore_errors=True)
            tool.cleanup()

    def series_round(self, round_number: int, mixed: Path, versions: int, spec: dict) -> None:
        order = self.order(round_number)
        log(
            f"round {round_number + 1}: series of {versions} versions, order {[t.name for t in order]}"
        )
        tree = self.work / "scratch" / "series"
        shutil.rmtree(tree, ignore_errors=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(mixed, tree, symlinks=True)
        if not self.pool:
            self.pool.append(TextPool())
        repos = {}
        for tool in order:
            repo = self.fresh_repo(tool, "series")
            if repo is not None:
                repos[tool.name] = repo
        totals = {name: 0.0 for name in repos}
        peaks = {name: 0 for name in repos}
        ok = {name: True for name in repos}
        per_version = {name: [] for name in repos}
        for version in range(versions):
            if version > 0:
                series_step(tree, version, spec, self.pool[0])
            size = tree_size(tree)
            rotation = order[version % len(order) :] + order[: version % len(order)]
            for tool in rotation:
                if tool.name not in repos:
                    continue
                repo = repos[tool.name]
                before = tree_size(repo)
                execution = self.run(
                    tool, tool.backup(repo, tree), f"series v{version}", [tree, repo]
                )
                totals[tool.name] += execution.wall_seconds
                peaks[tool.name] = max(peaks[tool.name], execution.max_rss_kib)
                ok[tool.name] &= execution.exit_code == 0
                per_version[tool.name].append(
                    {
                        "version": version,
                        "seconds": execution.wall_seconds,
                        "bytes_added": tree_size(repo) - before,
                        "source_bytes": size,
                    }
                )
        for tool in order:
            if tool.name not in repos:
                continue
            repo_bytes = tree_size(repos[tool.name])
            self.records.append(
                Record(
                    scenario="series",
                    tool=tool.name,
                    round=round_number,
                    ok=ok[tool.name],
                    wall_seconds=totals[tool.name],
                    max_rss_kib=peaks[tool.name],
                    dataset_bytes=sum(v["source_bytes"] for v in per_version[tool.name]),
                    bytes_added=repo_bytes,
                    repo_bytes=repo_bytes,
                    extra={"versions": per_version[tool.name]},
                )
            )
            log(
                f"  series            {tool.name:<10} {totals[tool.name]:8.2f} s, "
                f"repository {repo_bytes / MIB:.1f} MiB"
            )
            shutil.rmtree(repos[tool.name], ignore_errors=True)
            tool.cleanup()
        shutil.rmtree(tree, ignore_errors=True)


# --------------------------------------------------------------------------
# Machine description and limits
# --------------------------------------------------------------------------


def machine_description(work: Path) -> dict:
    def read(path):
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    cpu = re.search(r"^model name\s*:\s*(.*)$", read("/proc/cpuinfo"), re.M)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", read("/proc/meminfo"), re.M)
    usage = shutil.disk_usage(work)
    filesystem = "unknown"
    best = ""
    for line in read("/proc/mounts").splitlines():
        parts = line.split()
        if (
            len(parts) >= 3
            and str(work.resolve()).startswith(parts[1])
            and len(parts[1]) > len(best)
        ):
            best, filesystem = parts[1], f"{parts[2]} on {parts[0]}"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "ram_gib": round(int(memory.group(1)) / (1 << 20), 1) if memory else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "work_dir_filesystem": filesystem,
        "disk_free_gib": round(usage.free / GIB, 1),
        "loadavg_start": read("/proc/loadavg").split()[:3],
    }


def source_revision() -> str:
    """The workspace's commit, marked when the working tree has changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_machine_limits(binary: str, dataset: Path) -> dict | None:
    os.sync()
    done = subprocess.run([binary, str(dataset)], capture_output=True, text=True)
    if done.returncode != 0:
        log(f"machine-limits failed: {done.stderr.strip()}")
        return None
    return json.loads(done.stdout)


def cargo_build(arguments: list[str]) -> bool:
    command = ["cargo", "build", "--quiet"] + arguments
    log(f"building: {' '.join(command)}")
    return subprocess.run(command, cwd=REPO_ROOT).returncode == 0


# --------------------------------------------------------------------------
# Summaries and the report
# --------------------------------------------------------------------------


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(records: list[Record]) -> dict:
    """Per scenario and tool: medians over the rounds that succeeded."""
    summary: dict = {}
    for scenario in SCENARIOS:
        for tool in sorted({r.tool for r in records if r.scenario == scenario}):
            rows = [r for r in records if r.scenario == scenario and r.tool == tool]
            good = [r for r in rows if r.ok]
            if not good:
                summary.setdefault(scenario, {})[tool] = {"runs": len(rows), "ok_runs": 0}
                continue
            wall = median([r.wall_seconds for r in good])
            data = median([r.dataset_bytes for r in good])
            summary.setdefault(scenario, {})[tool] = {
                "runs": len(rows),
                "ok_runs": len(good),
                "wall_seconds": wall,
                "wall_min": min(r.wall_seconds for r in good),
                "wall_max": max(r.wall_seconds for r in good),
                "mb_per_s": data / 1e6 / wall if wall else None,
                "bytes_added": median([r.bytes_added for r in good]),
                "repo_bytes": median([r.repo_bytes for r in good]),
                "max_rss_kib": median([r.max_rss_kib for r in good]),
                "repo_read_bytes": median([r.repo_read_bytes for r in good]),
                "rchar": median([r.rchar for r in good]),
            }
    return summary


def human_bytes(value) -> str:
    if value is None:
        return "–"
    if abs(value) >= GIB:
        return f"{value / GIB:.2f} GiB"
    if abs(value) >= MIB:
        return f"{value / MIB:.1f} MiB"
    if abs(value) >= KIB:
        return f"{value / KIB:.1f} KiB"
    return f"{value} B"


def seconds_text(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def ratio(a, b) -> str:
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.2f}×"


@dataclass
class Target:
    name: str
    status: str
    numbers: str


def evaluate_targets(
    summary: dict, limits: dict | None, present: dict, cache_mode: str
) -> list[Target]:
    def get(scenario, tool, key="wall_seconds"):
        return summary.get(scenario, {}).get(tool, {}).get(key)

    targets = []

    def compare(name, scenario, peer, factor):
        ours, theirs = get(scenario, "backupctl"), get(scenario, peer)
        if not present.get(peer):
            targets.append(Target(name, "NOT MEASURED", f"{peer} absent"))
        elif ours is None or theirs is None:
            targets.append(Target(name, "NOT MEASURED", "a run failed"))
        else:
            status = "MET" if ours <= factor * theirs else "NOT MET"
            targets.append(
                Target(
                    name,
                    status,
                    f"backupctl {seconds_text(ours)} s, {peer} {seconds_text(theirs)} s: "
                    f"{ours / theirs:.2f}× (target ≤ {factor}×)",
                )
            )

    compare("First full backup ≤ 0.5× restic", "first_backup", "restic", 0.5)
    compare("First full backup ≤ 0.7× borg", "first_backup", "borg", 0.7)
    compare("First full backup ≤ 1.0× rustic", "first_backup", "rustic", 1.0)

    ours = get("first_backup", "backupctl")
    if limits and ours is not None:
        read_key = (
            "read_cold_dataset_seconds" if cache_mode == "cold" else "read_cached_dataset_seconds"
        )
        read = limits.get(read_key) or limits.get("read_cached_dataset_seconds")
        compute = limits.get("sha256_zstd_dataset_seconds")
        slower = max(read or 0, compute or 0)
        status = "MET" if ours <= 1.3 * slower else "NOT MET"
        targets.append(
            Target(
                "First full backup within 1.3× of the slower machine limit",
                status,
                f"backupctl {seconds_text(ours)} s; reading ({'cold' if cache_mode == 'cold' else 'cached'}) "
                f"{seconds_text(read)} s, SHA-256+zstd on all cores {seconds_text(compute)} s; "
                f"{ours / slower:.2f}× the slower (target ≤ 1.3×)"
                if slower
                else "limits missing",
            )
        )
    else:
        targets.append(
            Target(
                "First full backup within 1.3× of the slower machine limit",
                "NOT MEASURED",
                "machine limits or backup missing",
            )
        )

    compare("Backup with nothing changed ≤ 0.25× restic", "unchanged_backup", "restic", 0.25)
    compare("Backup after 1% changed ≤ 0.5× restic", "changed_backup", "restic", 0.5)
    compare("Full restore ≤ 0.7× restic", "full_restore", "restic", 0.7)

    wall = get("single_restore", "backupctl")
    read = get("single_restore", "backupctl", "repo_read_bytes")
    if wall is None:
        targets.append(Target("Restore of one 1 MiB file < 100 ms", "NOT MEASURED", "run failed"))
    else:
        targets.append(
            Target(
                "Restore of one 1 MiB file < 100 ms",
                "MET" if wall < 0.1 else "NOT MET",
                f"{wall * 1000:.0f} ms",
            )
        )
    if read is None:
        targets.append(
            Target(
                "Restore of one 1 MiB file reads < 10 MiB",
                "NOT MEASURED",
                "strace unavailable or run failed",
            )
        )
    else:
        targets.append(
            Target(
                "Restore of one 1 MiB file reads < 10 MiB",
                "MET" if read < 10 * MIB else "NOT MET",
                f"{read / MIB:.2f} MiB read from the repository",
            )
        )

    ours, theirs = get("series", "backupctl", "repo_bytes"), get("series", "restic", "repo_bytes")
    if not present.get("restic") or ours is None or theirs is None:
        targets.append(
            Target("Repository after the series ≤ restic's", "NOT MEASURED", "missing run")
        )
    else:
        targets.append(
            Target(
                "Repository after the series ≤ restic's",
                "MET" if ours <= theirs else "NOT MET",
                f"backupctl {human_bytes(ours)}, restic {human_bytes(theirs)}: {ours / theirs:.2f}×",
            )
        )

    worse = []
    compared = 0
    for scenario in SCENARIOS:
        ours = get(scenario, "backupctl", "max_rss_kib")
        theirs = get(scenario, "restic", "max_rss_kib")
        if ours is None or theirs is None:
            continue
        compared += 1
        if ours > theirs:
            worse.append(f"{scenario} {ours / 1024:.0f} vs {theirs / 1024:.0f} MiB")
    if not present.get("restic") or compared == 0:
        targets.append(
            Target("Peak memory ≤ restic's in every scenario", "NOT MEASURED", "missing runs")
        )
    else:
        targets.append(
            Target(
                "Peak memory ≤ restic's in every scenario",
                "NOT MET" if worse else "MET",
                ("above restic in: " + "; ".join(worse))
                if worse
                else f"at or below restic in all {compared} scenarios",
            )
        )

    large_backup = get("large_backup", "backupctl", "max_rss_kib")
    large_restore = get("large_restore", "backupctl", "max_rss_kib")
    mixed = get("first_backup", "backupctl", "max_rss_kib")
    if large_backup is None or large_restore is None or mixed is None:
        targets.append(
            Target("Peak memory bounded for the large file", "NOT MEASURED", "missing runs")
        )
    else:
        peak = max(large_backup, large_restore)
        bound = max(1.5 * mixed, 128 * 1024)
        status = "MET" if peak <= bound and peak * 1024 <= 512 * MIB else "NOT MET"
        targets.append(
            Target(
                "Peak memory bounded for the large file",
                status,
                f"backup {large_backup / 1024:.0f} MiB, restore {large_restore / 1024:.0f} MiB; "
                f"mixed-tree backup (largest file 40× smaller) {mixed / 1024:.0f} MiB "
                f"(bounded: ≤ 1.5× that, at least 128 MiB allowed, and ≤ 512 MiB)",
            )
        )
    return targets


def write_report(path_md: Path, data: dict) -> None:
    summary = data["summary"]
    lines = [f"# Backup tools side by side: {data['mode']} run, {data['date']}", ""]
    lines.append("Generated by `benches/compare/compare.py` (see `benches/README.md`).")
    lines.append("")
    lines.append("## Machine")
    lines.append("")
    machine = data["machine"]
    lines += [
        f"- CPU: {machine['cpu']}, {machine['nproc']} cores (nproc)",
        f"- RAM: {machine['ram_gib']} GiB; kernel {machine['kernel']}; Python {machine['python']}",
        f"- Work directory: {machine['work_dir_filesystem']}, {machine['disk_free_gib']} GiB free at start",
        f"- Load average at start: {' '.join(machine['loadavg_start'])}; "
        f"at end: {' '.join(machine.get('loadavg_end', []))}",
        f"- Page cache before each timed run: {data['cache_method']}; peak RSS from {data['rss_method']}",
        f"- Source: commit {data['revision']}; the runs took {data['elapsed_seconds'] / 60:.1f} min",
        f"- Runs per scenario: {data['runs']} (medians); tools alternate, order rotating each round",
        "",
        "| tool | version | settings |",
        "|---|---|---|",
    ]
    settings = {
        "backupctl": "`init` (encrypted: XChaCha20-Poly1305; zstd 3 by default); binary: "
        + data["backupctl_binary"],
        "restic": "`init --repository-version 2`, `backup --compression auto` (zstd); AES-256 + Poly1305",
        "borg": "`init -e repokey` (AES-CTR-256 + HMAC-SHA256), `create --compression zstd,3`",
        "rustic": "`init --set-compression 3`; same format as restic",
    }
    for tool, version in data["versions"].items():
        lines.append(f"| {tool} | {version} | {settings.get(tool, '')} |")
    lines.append("")
    lines.append("## Datasets")
    lines.append("")
    for name, info in data["datasets"].items():
        lines.append(f"- **{name}**: {info}")
    lines.append("")

    limits = data.get("limits")
    lines.append("## Machine limits (mixed tree)")
    lines.append("")
    if limits:
        lines.append("| measurement | MB/s | seconds for the whole tree |")
        lines.append("|---|---|---|")
        for key, title in [
            ("read_cached", "read, page-cached (all threads)"),
            ("read_cold", "read, cold (posix_fadvise DONTNEED first)"),
            ("sha256", "SHA-256, all cores"),
            ("zstd", f"zstd level {limits.get('zstd_level', 3)}, all cores"),
            ("sha256_zstd", "SHA-256 + zstd, all cores"),
        ]:
            entry = limits.get(key)
            if entry:
                rate = entry["mb_per_s"]
                whole = limits["bytes"] / 1e6 / rate if rate else None
                lines.append(f"| {title} | {rate:.0f} | {seconds_text(whole)} |")
        lines.append("")
        lines.append(
            f"Medians of {data.get('limits_runs', 1)} measurement(s) of `machine-limits` "
            f"over {human_bytes(limits['bytes'])} in {limits['files']} files."
        )
    else:
        lines.append("Not measured (machine-limits failed or was skipped).")
    lines.append("")

    lines.append("## Results")
    lines.append("")
    lines.append(
        "Wall time and peak RSS are medians over successful runs; MB/s is the "
        "dataset's size (10^6 bytes) over the wall time; *bytes added* is the growth "
        "of the repository directory; the last columns divide backupctl's number by "
        "the tool's (below 1: backupctl is faster or smaller)."
    )
    lines.append("")
    for scenario, title in SCENARIOS.items():
        rows = summary.get(scenario)
        if not rows:
            continue
        lines.append(f"### {title}")
        lines.append("")
        extra = " | read from repo" if scenario == "single_restore" else ""
        lines.append(
            "| tool | runs | median wall s | min–max s | MB/s | bytes added | repo size | "
            f"peak RSS{extra} | backupctl/tool time | backupctl/tool RSS |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if extra else ""))
        ours = rows.get("backupctl", {})
        for tool in data["tools"]:
            row = rows.get(tool)
            if row is None:
                continue
            if not row.get("ok_runs"):
                lines.append(f"| {tool} | 0/{row['runs']} | failed |" + " – |" * (7 + bool(extra)))
                continue
            read = f" | {human_bytes(row['repo_read_bytes'])}" if extra else ""
            lines.append(
                f"| {tool} | {row['ok_runs']}/{row['runs']} | {seconds_text(row['wall_seconds'])} | "
                f"{seconds_text(row['wall_min'])}–{seconds_text(row['wall_max'])} | "
                f"{row['mb_per_s']:.1f} | {human_bytes(row['bytes_added'])} | "
                f"{human_bytes(row['repo_bytes'])} | {human_bytes(row['max_rss_kib'] * 1024)}{read} | "
                f"{ratio(ours.get('wall_seconds'), row['wall_seconds'])} | "
                f"{ratio(ours.get('max_rss_kib'), row['max_rss_kib'])} |"
            )
        for tool in data["absent"]:
            lines.append(f"| {tool} | absent |" + " – |" * (8 + bool(extra)))
        lines.append("")
        if scenario == "series":
            lines.append(
                "For the series, the wall time is the sum over all versions, MB/s the "
                "total source bytes over it, and the repository size the final one."
            )
            lines.append("")
        if scenario == "single_restore":
            lines.append(
                "*Read from repo*: bytes returned by read calls on files under the "
                "repository directory, counted in a second run under `strace -f -y` "
                "(local caches outside the repository are not counted)."
            )
            lines.append("")

    lines.append("## Targets")
    lines.append("")
    lines.append("| target | status | numbers |")
    lines.append("|---|---|---|")
    for target in data["targets"]:
        lines.append(f"| {target['name']} | **{target['status']}** | {target['numbers']} |")
    lines.append("")
    if data["failures"]:
        lines.append("## Failures")
        lines.append("")
        for failure in data["failures"]:
            first = failure.splitlines()[0] if failure else ""
            lines.append(f"- {first}")
        lines.append("")
    path_md.write_text("\n".join(lines))


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny datasets, one run, report in a temporary directory; exits non-zero "
        "if a tool fails or a restore differs",
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="work directory for datasets, repositories and restores "
        "(default: $BENCH_DIR or /tmp/backup-bench; --quick: a temporary directory)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for the report (default: benches/results; --quick: a temporary directory)",
    )
    parser.add_argument(
        "--runs", type=int, help="rounds of the mixed-tree scenarios (default 3; --quick 1)"
    )
    parser.add_argument(
        "--heavy-runs",
        type=int,
        help="rounds of the many-files, large-file and series scenarios (default: --runs)",
    )
    parser.add_argument("--backupctl", help="backupctl binary (default: build it with cargo)")
    parser.add_argument(
        "--machine-limits", help="machine-limits binary (default: build it with cargo)"
    )
    parser.add_argument(
        "--tools",
        default="backupctl,restic,borg,rustic",
        help="comma-separated tools to run (absent ones are reported as absent)",
    )
    parser.add_argument(
        "--scenarios",
        default="mixed,small,large,series",
        help="comma-separated scenario groups: mixed, small, large, series",
    )
    parser.add_argument(
        "--cache",
        choices=["cold", "warm"],
        help="empty the page cache before each timed run (default: cold; --quick: warm)",
    )
    parser.add_argument(
        "--verify",
        choices=["all", "first", "none"],
        help="compare restored trees with their source: every round, the first, or never "
        "(default: first; --quick: all)",
    )
    parser.add_argument(
        "--generate-only", action="store_true", help="generate (or check) the datasets and stop"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the quick mode's temporary work directory"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    mode = "quick" if args.quick else "full"
    runs = args.runs or (1 if args.quick else 3)
    heavy_runs = args.heavy_runs or runs
    args.verify = args.verify or ("all" if args.quick else "first")
    cache_mode = args.cache or ("warm" if args.quick else "cold")
    temporary = None
    if args.work:
        work = args.work
    elif args.quick:
        temporary = Path(tempfile.mkdtemp(prefix="backup-bench-quick-"))
        work = temporary
    else:
        work = Path(os.environ.get("BENCH_DIR", "/tmp/backup-bench"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("repos", "restore", "scratch", "cache", "home", "logs"):
        shutil.rmtree(work / stale, ignore_errors=True)
    (work / "home").mkdir()
    groups = set(args.scenarios.split(","))

    profile = [] if args.quick else ["--release"]
    target_dir = REPO_ROOT / "target" / ("debug" if args.quick else "release")
    backupctl = args.backupctl
    if backupctl is None:
        if not cargo_build(profile + ["-p", "backup-cli"]):
            log("building backupctl failed")
            return 1
        backupctl = str(target_dir / "backupctl")
    backupctl = str(Path(backupctl).resolve())
    limits_binary = args.machine_limits
    if limits_binary is None:
        if not cargo_build(profile + ["-p", "backup-benches", "--bin", "machine-limits"]):
            log("building machine-limits failed")
            return 1
        limits_binary = str(target_dir / "machine-limits")

    wanted = [name.strip() for name in args.tools.split(",") if name.strip()]
    classes = {"backupctl": Backupctl, "restic": Restic, "borg": Borg, "rustic": Rustic}
    tools, absent = [], []
    for name in wanted:
        binary = backupctl if name == "backupctl" else shutil.which(name)
        if binary is None or name not in classes:
            absent.append(name)
        else:
            tools.append(classes[name](binary, work))
    if not tools:
        log("none of the tools is present")
        return 2
    present = {tool.name: True for tool in tools}
    versions = {tool.name: tool.version() for tool in tools}
    versions.update({name: "absent" for name in absent})
    for name, version in versions.items():
        log(f"{name}: {version}")

    machine = machine_description(work)
    cache = CacheControl(cache_mode)
    log(f"page cache: {cache.method}")
    bench = Bench(args, tools, work, cache)

    pool: list = bench.pool
    datasets = {}
    mixed = ensure_dataset(work, mode, "mixed", pool)
    mixed_digests = digest_tree(mixed)
    if SINGLE_FILE not in mixed_digests or os.path.getsize(mixed / SINGLE_FILE) != MIB:
        log(f"{SINGLE_FILE} is missing or not 1 MiB")
        return 1
    datasets["mixed"] = (
        f"{human_bytes(tree_size(mixed))} in {len(mixed_digests)} files: small text "
        f"files, compressible logs, incompressible binaries, partly compressible "
        f"files, 1 MiB assets"
    )
    small = large = None
    small_digests = large_digests = {}
    if "small" in groups:
        small = ensure_dataset(work, mode, "small", pool)
        small_digests = digest_tree(small)
        datasets["small"] = (
            f"{len(small_digests)} small text files, {human_bytes(tree_size(small))}"
        )
    if "large" in groups:
        large = ensure_dataset(work, mode, "large", pool)
        large_digests = digest_tree(large)
        datasets["large"] = f"one file of {human_bytes(tree_size(large))}, partly compressible"
    if args.generate_only:
        for name, info in datasets.items():
            log(f"{name}: {info}")
        return 0
    versions_count = SPECS[mode]["series"]["versions"]
    if "series" in groups:
        datasets["series"] = (
            f"{versions_count} versions of the mixed tree: edits, log appends, "
            f"insertions in large files, new and deleted files"
        )

    limits_runs = []
    started = time.time()
    for round_number in range(runs):
        measured = run_machine_limits(limits_binary, mixed)
        if measured:
            limits_runs.append(measured)
            log(
                f"machine limits: read cached {measured['read_cached']['mb_per_s']:.0f} MB/s, cold "
                f"{(measured.get('read_cold') or {}).get('mb_per_s', 0):.0f} MB/s, SHA-256+zstd "
                f"{measured['sha256_zstd']['mb_per_s']:.0f} MB/s"
            )
        else:
            bench.fail("machine-limits failed")
        if "mixed" in groups:
            bench.mixed_round(round_number, mixed, mixed_digests)
    for round_number in range(heavy_runs):
        if small is not None:
            bench.pair_round(round_number, "small", small, small_digests)
        if large is not None:
            bench.pair_round(round_number, "large", large, large_digests)
        if "series" in groups:
            bench.series_round(round_number, mixed, versions_count, SPECS[mode]["series"])
    elapsed = time.time() - started

    limits = None
    if limits_runs:
        limits = dict(limits_runs[0])
        for key in ("read_cached", "read_cold", "sha256", "zstd", "sha256_zstd"):
            values = [run[key] for run in limits_runs if run.get(key)]
            if values:
                limits[key] = {
                    "bytes": values[0]["bytes"],
                    "seconds": median([v["seconds"] for v in values]),
                    "mb_per_s": median([v["mb_per_s"] for v in values]),
                }
        for key in (
            "read_cached_dataset_seconds",
            "read_cold_dataset_seconds",
            "sha256_zstd_dataset_seconds",
        ):
            limits[key] = median([run.get(key) for run in limits_runs])

    summary = summarise(bench.records)
    targets = evaluate_targets(summary, limits, present, cache_mode)
    machine["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    today = datetime.date.today().isoformat()
    data = {
        "mode": mode,
        "date": today,
        "elapsed_seconds": elapsed,
        "revision": source_revision(),
        "machine": machine,
        "cache_method": cache.method,
        "rss_method": "GNU time's %M"
        if os.access(GNU_TIME, os.X_OK)
        else "wait4's ru_maxrss (includes the harness's own memory: GNU time is missing)",
        "runs": runs
        if heavy_runs == runs
        else f"{runs} (many-files, large-file and series: {heavy_runs})",
        "tools": [tool.name for tool in tools],
        "absent": absent,
        "versions": versions,
        "backupctl_binary": "release build"
        if "/release/" in backupctl
        else ("debug build" if "/debug/" in backupctl else "given binary"),
        "datasets": datasets,
        "limits": limits,
        "limits_runs": len(limits_runs),
        "limits_all": limits_runs,
        "summary": summary,
        "targets": [target.__dict__ for target in targets],
        "records": [record.__dict__ for record in bench.records],
        "failures": bench.failures,
    }
    out = args.out
    if out is None:
        out = (work / "report") if args.quick else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    report = out / f"{today}-{mode}.md"
    write_report(report, data)
    (out / f"{today}-{mode}.json").write_text(json.dumps(data, indent=1, default=str))
    log(f"report: {report} ({elapsed:.0f} s of runs)")
    if args.quick:
        text = report.read_text()
        print(text[text.index("## Targets") :] if "## Targets" in text else text)

    for stale in ("repos", "restore", "scratch", "cache"):
        shutil.rmtree(work / stale, ignore_errors=True)
    if temporary is not None and not args.keep and args.out is None:
        # The report lives in the temporary directory: keep only it.
        for entry in work.iterdir():
            if entry.name != "report":
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
    if bench.failures:
        log(f"{len(bench.failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
