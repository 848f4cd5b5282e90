#!/usr/bin/env python3
"""The Python binding against backupctl: backup time, peak memory, and the GIL.

On one generated mixed tree (many small text files, compressible logs,
incompressible binaries, partly compressible tables and assets; the
generators of benches/compare/compare.py, at half the size of its mixed
tree), in one run:

1. backup time: a first backup into a fresh encrypted local repository and
   an unchanged second one into the same repository, with
   `backup_toolkit.Repository.open(...).backup(...)` in a child
   `python3 -c` process and with `backupctl backup`, alternating, ROUNDS
   runs each; wall time of the whole process (interpreter start-up and
   import included) and peak RSS from GNU time's %M for both. A third
   variant, in the same rotation, runs the Python child with glibc's malloc
   tunables set as backupctl sets them;
2. the GIL: a pure-Python counting loop in one thread, alone for
   LOOP_SECONDS, then while the main thread runs `repo.backup(...)` of the
   tree into a fresh repository (the rate taken only while the backup
   runs); GIL_ROUNDS times, median of the ratio.

Page cache warm: the tree is read once before the runs, and each tool makes
one untimed backup first. Each repository is created by the tool that backs
up into it, untimed, and deleted (and the disk synced) after its runs.

    python3 benches/python/bench.py                  # the full run, about 1 GiB
    python3 benches/python/bench.py --quick          # a tiny tree, seconds

Needs the binding installed (`pip install ./backup-py`), a release backupctl
(`cargo build --release --locked -p backup-cli --bin backupctl`) and
/usr/bin/time. Python 3.11, standard library only besides the binding.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benches" / "compare"))

import compare  # noqa: E402  (the dataset generators, shared)

KIB, MIB, GIB = compare.KIB, compare.MIB, compare.GIB
SET = "bench"

# backupctl's main() caps glibc's malloc arenas at two and fixes the mmap
# threshold at 4 MiB (mallopt); the binding leaves the host process's
# allocator alone. The third variant sets the same tunables through glibc's
# environment variables, to show how much of the memory difference that is.
MALLOC_AS_BACKUPCTL = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": str(4 * MIB)}
TOOLS = ["python", "backupctl", "python (malloc as backupctl)"]

# Half of compare.py's full mixed tree: about 1 GiB.
SPECS = {
    "full": {
        "text_files": 18_000,
        "text_dirs": (30, 12),
        "text_size": (200, 64 * KIB),
        "logs": 48,
        "log_size": (2 * MIB, 9 * MIB),
        "binaries": [64 * MIB, 96 * MIB, 96 * MIB],
        "partial": 12,
        "partial_size": (12 * MIB, 32 * MIB),
        "assets": 64,
    },
    "quick": compare.SPECS["quick"]["mixed"],
}

# Opens the repository and backs the tree up; prints the seconds spent
# inside the process and the summary. argv: repo, password file, tree.
PYTHON_BACKUP = """
import json, sys, time
started = time.perf_counter()
import backup_toolkit as bt
imported = time.perf_counter()
repo = bt.Repository.open(sys.argv[1], password_file=sys.argv[2])
opened = time.perf_counter()
summary = repo.backup([sys.argv[3]], set=%r)
done = time.perf_counter()
print(json.dumps({"import": imported - started, "open": opened - imported,
                  "backup": done - opened, "summary": repr(summary)}))
""" % SET


def log(message: str) -> None:
    print(f"[python-bench] {message}", file=sys.stderr, flush=True)


def timed(command: list[str], env: dict) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and standard output of `command`."""
    started = time.monotonic()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{command} failed:\n{result.stderr}")
    peak = int(result.stderr.strip().splitlines()[-1])
    return elapsed, peak, result.stdout


def tree_facts(root: Path) -> tuple[int, int]:
    files = size = 0
    for path in root.rglob("*"):
        if path.is_file():
            files += 1
            size += path.stat().st_size
    return files, size


def read_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(8 * MIB):
                    pass


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children (and theirs) so far."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def built(path: str) -> str:
    """When the file was last written, UTC."""
    return datetime.datetime.fromtimestamp(os.stat(path).st_mtime, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def machine() -> dict:
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    git = lambda *args: subprocess.run(["git", "-C", str(REPO_ROOT), *args],
                                       capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "commit_time": git("show", "-s", "--format=%cI", "HEAD"),
        "modified_tracked_files": len(git("status", "--porcelain", "--untracked-files=no").splitlines()),
        "load_average_start": os.getloadavg(),
    }


class Tools:
    """The ways of backing up (TOOLS), each a timed child process."""

    def __init__(self, backupctl: str, work: Path, tree: Path):
        self.backupctl = backupctl
        self.work = work
        self.tree = tree
        self.password = work / "password"
        self.password.write_text("benchmark password, not a secret\n")
        self.env = dict(os.environ, BACKUP_PASSWORD_FILE=str(self.password))
        self.env.pop("MALLOC_ARENA_MAX", None)
        self.env.pop("MALLOC_MMAP_THRESHOLD_", None)

    def env_of(self, tool: str) -> dict:
        if tool == "python (malloc as backupctl)":
            return dict(self.env, **MALLOC_AS_BACKUPCTL)
        return self.env

    def init(self, tool: str, repo: Path) -> None:
        if tool.startswith("python"):
            command = [sys.executable, "-c",
                       "import sys, backup_toolkit as bt; bt.Repository.init(sys.argv[1], password_file=sys.argv[2])",
                       str(repo), str(self.password)]
        else:
            command = [self.backupctl, "init", "--repo", str(repo)]
        subprocess.run(command, env=self.env_of(tool), check=True, stdout=subprocess.DEVNULL)

    def backup(self, tool: str, repo: Path) -> dict:
        if tool.startswith("python"):
            command = [sys.executable, "-c", PYTHON_BACKUP, str(repo), str(self.password), str(self.tree)]
        else:
            command = [self.backupctl, "backup", "--repo", str(repo), "--set", SET, str(self.tree)]
        seconds, peak, output = timed(command, self.env_of(tool))
        record = {"seconds": seconds, "peak_rss_kib": peak}
        if tool.startswith("python"):
            record["inside"] = json.loads(output.strip().splitlines()[-1])
        return record


def backup_rounds(tools: Tools, rounds: int) -> dict:
    runs: dict = {name: {"first": [], "unchanged": []} for name in TOOLS}
    warmup: dict = {}
    # The interpreter's own start-up and exit, once a round: part of every
    # Python run's wall time and memory.
    empty: list = []
    for round_number in range(-1, rounds):
        # Round -1 warms the executables, the extension and the tree; untimed.
        # The order rotates each round.
        shift = round_number % len(TOOLS)
        order = TOOLS[shift:] + TOOLS[:shift]
        for tool in order:
            repo = tools.work / f"repo-{TOOLS.index(tool)}"
            tools.init(tool, repo)
            first = tools.backup(tool, repo)
            unchanged = tools.backup(tool, repo)
            stored = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
            shutil.rmtree(repo)
            os.sync()
            first["repository_bytes"] = stored
            if round_number < 0:
                warmup[tool] = {"first": first, "unchanged": unchanged}
                continue
            runs[tool]["first"].append(first)
            runs[tool]["unchanged"].append(unchanged)
            log(f"round {round_number + 1}, {tool}: first {first['seconds']:.2f} s, "
                f"unchanged {unchanged['seconds']:.3f} s")
        if round_number >= 0:
            seconds, peak, _ = timed([sys.executable, "-c", "pass"], tools.env)
            empty.append({"seconds": seconds, "peak_rss_kib": peak})
    return {"warmup": warmup, "runs": runs, "python_c_pass": empty}


def count_loop(state: dict, stop: threading.Event, backing_up: threading.Event,
               finished: threading.Event) -> None:
    """Counts in a tight loop; notes (time, count) when the backup is seen to
    start and to end, and when `stop` is set."""
    count = 0
    started = time.perf_counter()
    seen_start = None
    while True:
        for _ in range(10_000):
            count += 1
        if seen_start is None and backing_up.is_set():
            seen_start = (time.perf_counter(), count)
        if finished.is_set() or stop.is_set():
            break
    now = time.perf_counter()
    state["window"] = (seen_start or (started, 0), (now, count))


def gil_rounds(tree: Path, work: Path, password: Path, rounds: int, loop_seconds: float) -> list[dict]:
    import backup_toolkit as bt

    results = []
    for round_number in range(rounds):
        alone: dict = {}
        stop, never, unused = threading.Event(), threading.Event(), threading.Event()
        never.set()  # the window starts at once
        thread = threading.Thread(target=count_loop, args=(alone, stop, never, unused))
        thread.start()
        time.sleep(loop_seconds)
        stop.set()
        thread.join()
        (t0, n0), (t1, n1) = alone["window"]
        rate_alone = (n1 - n0) / (t1 - t0)

        repo_path = work / "repo-gil"
        repo = bt.Repository.init(str(repo_path), password_file=str(password))
        during: dict = {}
        backing_up, finished = threading.Event(), threading.Event()
        thread = threading.Thread(target=count_loop, args=(during, threading.Event(), backing_up, finished))
        thread.start()
        time.sleep(0.2)  # the loop is running before the backup starts
        backing_up.set()
        started = time.perf_counter()
        repo.backup([str(tree)], set=SET)
        backup_seconds = time.perf_counter() - started
        finished.set()
        thread.join()
        (t0, n0), (t1, n1) = during["window"]
        rate_during = (n1 - n0) / (t1 - t0)
        del repo
        shutil.rmtree(repo_path)
        os.sync()
        result = {
            "rate_alone_per_s": rate_alone, "alone_seconds": loop_seconds,
            "rate_during_backup_per_s": rate_during, "window_seconds": t1 - t0,
            "backup_seconds": backup_seconds, "ratio": rate_during / rate_alone,
        }
        results.append(result)
        log(f"GIL round {round_number + 1}: {rate_alone / 1e6:.1f} M/s alone, "
            f"{rate_during / 1e6:.1f} M/s during a {backup_seconds:.2f} s backup: {result['ratio']:.2f}")
    return results


def report(summary: dict) -> str:
    facts, data, versions = summary["machine"], summary["dataset"], summary["versions"]
    median = lambda tool, kind, key="seconds": statistics.median(r[key] for r in summary["backups"]["runs"][tool][kind])
    peak = lambda tool, kind: max(r["peak_rss_kib"] for r in summary["backups"]["runs"][tool][kind]) / 1024
    inside = lambda kind: statistics.median(
        r["inside"]["open"] + r["inside"]["backup"] for r in summary["backups"]["runs"]["python"][kind])
    importing = statistics.median(r["inside"]["import"] for r in summary["backups"]["runs"]["python"]["first"])
    gil = summary["gil"]
    rounds = summary["rounds"]
    lines = [
        f"# The Python binding against backupctl, {summary['date']}",
        "",
        "Generated by `python3 benches/python/bench.py` (see `benches/python/README.md`).",
        "",
        "## Machine",
        "",
        f"- CPU: {facts['cpu']}, {facts['nproc']} cores (nproc); RAM {facts['memory_gib']} GiB; "
        f"kernel {facts['kernel']}; Python {facts['python']}",
        f"- Source: commit {facts['commit']} (committed {facts['commit_time']})"
        + (f", {facts['modified_tracked_files']} tracked files modified"
           if facts["modified_tracked_files"] else ""),
        f"- Versions: {versions['backupctl']} (release build, built {versions['backupctl_built']}); "
        f"backup_toolkit {versions['backup_toolkit']} (release build, installed with pip "
        f"{versions['backup_toolkit_built']})",
        f"- Load average at start {' '.join(f'{v:.2f}' for v in facts['load_average_start'])}, "
        f"at end {' '.join(f'{v:.2f}' for v in summary['load_average_end'])}; the run took "
        f"{summary['run_seconds'] / 60:.1f} min; CPU time of everything else on the machine (other "
        f"processes, kernel threads) during the run: {max(0.0, summary['other_cpu_seconds']):.0f} s of "
        f"{summary['run_seconds'] * facts['nproc']:.0f} s",
        f"- Dataset: {data['bytes'] / GIB:.2f} GiB in {data['files']} files (compare.py's mixed-tree "
        f"generators: small text files, compressible logs, incompressible binaries, partly "
        f"compressible tables, 1 MiB assets), page cache warm",
        f"- Reproduce: `cargo build --release --locked -p backup-cli --bin backupctl && "
        f"pip install ./backup-py && python3 benches/python/bench.py`",
        "",
        "## Backup time",
        "",
        f"{rounds} runs of each, alternating, the order rotating each round (after one untimed run "
        "of each), medians; a fresh "
        "encrypted local repository for each first backup, the unchanged backup into the same one. "
        "Wall time of the whole process, for Python `python3 -c` with interpreter start-up and "
        "`import backup_toolkit` included; peak RSS from GNU time's %M, the largest of the runs.",
        "",
        "| backup | Python | backupctl | ratio Python / backupctl | peak RSS Python / backupctl |",
        "|---|---|---|---|---|",
    ]
    for kind, title in (("first", "first, fresh repository"), ("unchanged", "unchanged, same repository")):
        py, cli = median("python", kind), median("backupctl", kind)
        lines.append(f"| {title} | {py:.3f} s | {cli:.3f} s | {py / cli:.3f}x | "
                     f"{peak('python', kind):.0f} / {peak('backupctl', kind):.0f} MiB |")
    variant = "python (malloc as backupctl)"
    empty = summary["backups"]["python_c_pass"]
    lines += [
        "",
        f"The binding leaves the process's allocator as Python has it; backupctl caps glibc's malloc "
        f"arenas at 2 and fixes the mmap threshold at 4 MiB (`mallopt` in its `main`). With the same "
        f"tunables set for the Python child through the environment "
        f"(`MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=4194304`), same runs: first "
        f"{median(variant, 'first'):.3f} s ({median(variant, 'first') / median('backupctl', 'first'):.3f}x), "
        f"peak {peak(variant, 'first'):.0f} MiB; unchanged {median(variant, 'unchanged'):.3f} s "
        f"({median(variant, 'unchanged') / median('backupctl', 'unchanged'):.3f}x), "
        f"peak {peak(variant, 'unchanged'):.0f} MiB.",
        "",
        f"Inside the Python process (open + backup, without start-up and import): first "
        f"{inside('first'):.3f} s, unchanged {inside('unchanged'):.3f} s; `import backup_toolkit` "
        f"{importing * 1000:.0f} ms. An empty `python3 -c pass`, once a round: "
        f"{statistics.median(r['seconds'] for r in empty):.3f} s, peak "
        f"{max(r['peak_rss_kib'] for r in empty) / 1024:.0f} MiB.",
        "",
        "Per run (seconds): " + "; ".join(
            f"{tool} {kind}: " + ", ".join(f"{r['seconds']:.3f}" for r in summary["backups"]["runs"][tool][kind])
            for tool in TOOLS for kind in ("first", "unchanged")),
        "",
        "## The GIL during a backup",
        "",
        f"A pure-Python loop (`count += 1`) in one thread, alone for {summary['loop_seconds']:g} s, "
        f"then while the main thread runs `repo.backup(...)` of the tree into a fresh repository "
        f"(rate over the backup only); {len(gil)} rounds. The backup keeps both cores busy, so the "
        f"loop shares them with its threads.",
        "",
        "| round | alone | during backup | backup | ratio |",
        "|---|---|---|---|---|",
    ]
    for number, r in enumerate(gil, 1):
        lines.append(f"| {number} | {r['rate_alone_per_s'] / 1e6:.1f} M/s | "
                     f"{r['rate_during_backup_per_s'] / 1e6:.1f} M/s | {r['backup_seconds']:.2f} s | "
                     f"{r['ratio']:.2f} |")
    lines += ["", f"Median ratio: {statistics.median(r['ratio'] for r in gil):.2f}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny tree, 2 rounds: seconds")
    parser.add_argument("--backupctl", default=str(REPO_ROOT / "target" / "release" / "backupctl"))
    parser.add_argument("--rounds", type=int, help="backup runs per tool (default 5, quick 2)")
    parser.add_argument("--gil-rounds", type=int, default=3)
    parser.add_argument("--loop-seconds", type=float, help="the loop alone (default 3, quick 0.5)")
    parser.add_argument("--out", help="write OUT.md and OUT.json (default for the full run: "
                                      "benches/results/DATE-python)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    rounds = args.rounds or (2 if args.quick else 5)
    loop_seconds = args.loop_seconds or (0.5 if args.quick else 3.0)
    date = datetime.date.today().isoformat()
    out = args.out or (None if args.quick else str(REPO_ROOT / "benches" / "results" / f"{date}-python"))
    backupctl = str(Path(args.backupctl).resolve())
    if not os.access(backupctl, os.X_OK):
        raise SystemExit(f"no backupctl at {backupctl}; build it with "
                         "cargo build --release --locked -p backup-cli --bin backupctl")
    import backup_toolkit

    run_started = time.monotonic()
    busy_started, own_started = busy_cpu_seconds(), own_cpu_seconds()
    facts = machine()
    work = Path(tempfile.mkdtemp(prefix="python-bench-"))
    try:
        tree = work / "tree"
        log(f"generating the {mode} tree")
        compare.generate_mixed(tree, SPECS[mode], compare.TextPool())
        os.sync()
        files, size = tree_facts(tree)
        log(f"{size / MIB:.0f} MiB in {files} files")
        read_tree(tree)
        tools = Tools(backupctl, work, tree)
        backups = backup_rounds(tools, rounds)
        gil = gil_rounds(tree, work, tools.password, args.gil_rounds, loop_seconds)
        summary = {
            "date": date,
            "mode": mode,
            "machine": facts,
            "versions": {
                "backupctl": subprocess.run([backupctl, "--version"], capture_output=True,
                                            text=True).stdout.strip(),
                "backupctl_built": built(backupctl),
                "backup_toolkit": backup_toolkit.__version__,
                "backup_toolkit_built": built(backup_toolkit._native.__file__),
            },
            "dataset": {"files": files, "bytes": size, "spec": SPECS[mode], "seed": compare.SEED},
            "rounds": rounds,
            "loop_seconds": loop_seconds,
            "backups": backups,
            "gil": gil,
        }
        runs = backups["runs"]
        med = lambda tool, kind, key: statistics.median(r[key] for r in runs[tool][kind])
        summary["medians"] = {
            kind: {
                "python_malloc_as_backupctl_seconds": med("python (malloc as backupctl)", kind, "seconds"),
                "python_malloc_as_backupctl_peak_rss_kib": max(
                    r["peak_rss_kib"] for r in runs["python (malloc as backupctl)"][kind]),
                "python_seconds": med("python", kind, "seconds"),
                "backupctl_seconds": med("backupctl", kind, "seconds"),
                "ratio_python_to_backupctl": med("python", kind, "seconds") / med("backupctl", kind, "seconds"),
                "python_peak_rss_kib": max(r["peak_rss_kib"] for r in runs["python"][kind]),
                "backupctl_peak_rss_kib": max(r["peak_rss_kib"] for r in runs["backupctl"][kind]),
            }
            for kind in ("first", "unchanged")
        }
        summary["gil_median_ratio"] = statistics.median(r["ratio"] for r in gil)
        summary["load_average_end"] = os.getloadavg()
        summary["run_seconds"] = time.monotonic() - run_started
        # What else ran: the machine's busy CPU time less this run's own.
        summary["other_cpu_seconds"] = ((busy_cpu_seconds() - busy_started)
                                        - (own_cpu_seconds() - own_started))
        text = report(summary)
        print(text)
        if out:
            Path(out + ".md").write_text(text)
            Path(out + ".json").write_text(json.dumps(summary, indent=2) + "\n")
            log(f"wrote {out}.md and {out}.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
