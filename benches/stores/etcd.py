#!/usr/bin/env python3
"""etcd backup and restore, backupctl against etcdctl, on the same member.

The peer is what teams do by hand: `etcdctl snapshot save FILE` followed by a
copy of the file to the backup location, and `etcdctl snapshot restore`.
Ours is `backupctl backup --source etcd` (the Maintenance stream straight
into an encrypted repository, trailer checked) and `backupctl restore --to
etcd`. Each step runs ROUNDS times; the report gives medians, ratios and
peak memory (GNU time's maximum resident set size).

    python3 benches/stores/etcd.py --backupctl target/release/backupctl \\
        [--megabytes 256] [--rounds 3] [--out benches/results/DATE-etcd]

Needs etcd, etcdctl (Debian etcd-server, etcd-client) and /usr/bin/time.
"""

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VALUE_BYTES = 64 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log(message: str) -> None:
    print(f"[etcd-bench] {message}", file=sys.stderr, flush=True)


class Etcd:
    def __init__(self, work: Path):
        self.client = free_port()
        self.peer = free_port()
        self.dir = work / "member"
        self.log = open(work / "etcd.log", "ab")
        self.process = subprocess.Popen(
            [
                "etcd", "--name=bench", f"--data-dir={self.dir}",
                f"--listen-client-urls=http://127.0.0.1:{self.client}",
                f"--advertise-client-urls=http://127.0.0.1:{self.client}",
                f"--listen-peer-urls=http://127.0.0.1:{self.peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer}",
                f"--initial-cluster=bench=http://127.0.0.1:{self.peer}",
                "--quota-backend-bytes=8589934592", "--log-level=warn",
            ],
            stdout=self.log, stderr=self.log,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.client, timeout=2)
                connection.request("GET", "/health")
                if b'"health":"true"' in connection.getresponse().read():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("etcd did not start; see etcd.log")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client}"

    def put_many(self, keys: list[int], seed: int) -> None:
        def worker(part: list[int]) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", self.client, timeout=30)
            for key in part:
                value = random.Random(seed * 1_000_003 + key).randbytes(VALUE_BYTES)
                body = json.dumps({
                    "key": base64.b64encode(f"bench/{key:07}".encode()).decode(),
                    "value": base64.b64encode(value).decode(),
                })
                connection.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"put failed: {response.status}")
        parts = [keys[i::4] for i in range(4)]
        threads = [threading.Thread(target=worker, args=(part,)) for part in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def timed(command: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of `command`."""
    started = time.monotonic()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{command} failed:\n{result.stderr}")
    peak = int(result.stderr.strip().splitlines()[-1])
    return elapsed, peak


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backupctl", required=True)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", help="write OUT.md and OUT.json")
    args = parser.parse_args()
    backupctl = str(Path(args.backupctl).resolve())
    work = Path(tempfile.mkdtemp(prefix="etcd-bench-"))
    etcd = Etcd(work)
    try:
        keys = list(range(args.megabytes * 1024 * 1024 // VALUE_BYTES))
        log(f"loading {len(keys)} keys of 64 KiB into etcd")
        etcd.put_many(keys, 0)
        (work / "password").write_text("bench password\n")
        env = dict(os.environ, BACKUP_PASSWORD_FILE=str(work / "password"), ETCDCTL_API="3")
        repo = work / "repo"
        subprocess.run([backupctl, "init", "--repo", str(repo)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        copies = work / "copies"
        copies.mkdir()
        results: dict[str, list] = {name: [] for name in [
            "etcdctl save + copy", "backupctl backup (first)", "backupctl backup (unchanged)",
            "etcdctl restore", "backupctl restore",
            "etcdctl save + copy (1% changed)", "backupctl backup (1% changed)"]}
        peaks: dict[str, list] = {name: [] for name in results}
        growth: dict[str, list] = {"etcdctl (1% changed)": [], "backupctl (1% changed)": []}

        def record(name: str, outcome: tuple[float, int]) -> None:
            results[name].append(outcome[0])
            peaks[name].append(outcome[1])

        def save_and_copy(round_: int, label: str) -> int:
            snapshot = work / "snapshot.db"
            started = time.monotonic()
            save = timed(["etcdctl", f"--endpoints={etcd.endpoint}", "snapshot", "save", str(snapshot)], env)
            shutil.copyfile(snapshot, copies / f"{label}-{round_}.db")
            os.fsync(os.open(copies / f"{label}-{round_}.db", os.O_RDONLY))
            elapsed = time.monotonic() - started
            size = snapshot.stat().st_size
            snapshot.unlink()
            record("etcdctl save + copy" + ("" if label == "full" else " (1% changed)"), (elapsed, save[1]))
            return size

        def our_backup(name: str) -> None:
            record(name, timed([backupctl, "backup", "--repo", str(repo), "--set", "etcd",
                                "--source", "etcd", "--etcd-endpoints", etcd.endpoint], env))

        db_size = 0
        for round_ in range(args.rounds):
            log(f"round {round_ + 1}: backups")
            db_size = save_and_copy(round_, "full")
            # A fresh repository each round, so the first backup stores everything.
            shutil.rmtree(repo)
            subprocess.run([backupctl, "init", "--repo", str(repo)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            our_backup("backupctl backup (first)")
            our_backup("backupctl backup (unchanged)")
            log(f"round {round_ + 1}: restores")
            target = work / f"restored-{round_}"
            record("etcdctl restore", timed(["etcdctl", "snapshot", "restore", str(copies / f"full-{round_}.db"),
                                             f"--data-dir={target}-peer"], env))
            record("backupctl restore", timed([backupctl, "restore", "--repo", str(repo), "latest",
                                               "--set", "etcd", "--to", "etcd", "--data-dir",
                                               f"{target}-ours"], env))
            shutil.rmtree(f"{target}-peer")
            shutil.rmtree(f"{target}-ours")
            log(f"round {round_ + 1}: 1% of the keys rewritten")
            etcd.put_many(keys[round_::100], round_ + 1)
            before = du(repo)
            our_backup("backupctl backup (1% changed)")
            growth["backupctl (1% changed)"].append(du(repo) - before)
            growth["etcdctl (1% changed)"].append(save_and_copy(round_, "changed"))
            for copy in copies.iterdir():
                copy.unlink()
        summary = {
            "database_bytes": db_size,
            "keys": len(keys),
            "rounds": args.rounds,
            "seconds": {name: statistics.median(values) for name, values in results.items()},
            "all_seconds": results,
            "peak_rss_kib": {name: max(values) for name, values in peaks.items()},
            "stored_bytes_after_1pct_change": {name: statistics.median(v) for name, v in growth.items()},
            "etcd_version": subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        }
        seconds = summary["seconds"]
        ratio = lambda ours, peer: seconds[ours] / seconds[peer]
        lines = [
            f"# etcd: backupctl against etcdctl snapshot save + copy",
            "",
            f"One member ({summary['etcd_version']}), {len(keys)} keys of 64 KiB of random bytes, "
            f"database {db_size / 2**20:.0f} MiB; {args.rounds} rounds, medians; "
            "backupctl into an encrypted local repository, etcdctl's file copied to a local directory and synced.",
            "",
            "| step | etcdctl | backupctl | ratio | peak RSS etcdctl / backupctl |",
            "|---|---|---|---|---|",
            f"| first backup | {seconds['etcdctl save + copy']:.2f} s | {seconds['backupctl backup (first)']:.2f} s | "
            f"{ratio('backupctl backup (first)', 'etcdctl save + copy'):.2f}x | "
            f"{summary['peak_rss_kib']['etcdctl save + copy'] / 1024:.0f} / {summary['peak_rss_kib']['backupctl backup (first)'] / 1024:.0f} MiB |",
            f"| backup, nothing changed | {seconds['etcdctl save + copy']:.2f} s | {seconds['backupctl backup (unchanged)']:.2f} s | "
            f"{ratio('backupctl backup (unchanged)', 'etcdctl save + copy'):.2f}x | — / {summary['peak_rss_kib']['backupctl backup (unchanged)'] / 1024:.0f} MiB |",
            f"| backup, 1% of keys rewritten | {seconds['etcdctl save + copy (1% changed)']:.2f} s | {seconds['backupctl backup (1% changed)']:.2f} s | "
            f"{ratio('backupctl backup (1% changed)', 'etcdctl save + copy (1% changed)'):.2f}x | — |",
            f"| restore to a new data directory | {seconds['etcdctl restore']:.2f} s | {seconds['backupctl restore']:.2f} s | "
            f"{ratio('backupctl restore', 'etcdctl restore'):.2f}x | "
            f"{summary['peak_rss_kib']['etcdctl restore'] / 1024:.0f} / {summary['peak_rss_kib']['backupctl restore'] / 1024:.0f} MiB |",
            "",
            f"Stored by the backup after 1% of the keys were rewritten: etcdctl a whole new copy, "
            f"{growth['etcdctl (1% changed)'][0] / 2**20:.1f} MiB; backupctl "
            f"{summary['stored_bytes_after_1pct_change']['backupctl (1% changed)'] / 2**20:.1f} MiB (median).",
            "",
            "Per round (seconds): " + "; ".join(f"{name}: {', '.join(f'{v:.2f}' for v in values)}" for name, values in results.items()),
        ]
        report = "\n".join(lines) + "\n"
        print(report)
        if args.out:
            Path(args.out + ".md").write_text(report)
            Path(args.out + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        etcd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
