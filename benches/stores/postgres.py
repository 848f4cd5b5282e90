#!/usr/bin/env python3
"""PostgreSQL physical backups, backupctl against pgBackRest, on the same cluster.

The peer is pgBackRest with its defaults (gzip level 6, one process, an
unencrypted repository in a local directory, file-level incrementals: a
file whose size or time changed is stored again whole). Ours is
`backupctl backup --source postgres` (pg_basebackup's tar stream, with the
WAL from the backup's start to its end, stored file by file into an
encrypted local repository, zstd level 3, deduplicated by content-defined
chunks: its next backup of the set stores only the chunks it does not
have).

One PostgreSQL cluster is made (initdb, `pgbench -i -s SCALE`) with
wal_level=replica, archive_mode=on and pgBackRest's `archive-push` as the
archive command (pgBackRest needs its archive to finish a backup; backupctl
does not use it). Each tool makes a full backup, then each round applies two
change patterns, each followed by one incremental backup with each tool, in
alternating order:

- contiguous 1 %: `UPDATE pgbench_accounts SET abalance = abalance + 1`
  on 1 % of the rows with neighbouring ids (round 1: `aid <= 1 %`, round N
  the N-th 1 % range, so that every round updates rows not updated before);
- scattered 1 %: the same on `aid % 100 = r` (round 1: `r = 0`, round N:
  `r = N - 1`, rows not updated before).

After every change: CHECKPOINT, a switch to a new WAL segment and a wait
until the server has archived every finished one; before every backup:
CHECKPOINT and the same wait. So both tools see the same files and the
peer's repository grows only by what its own backup adds (the WAL of the
change is reported apart). Measured: wall
time, peak RSS (GNU time's %M: the largest single process of the tool's
process tree), bytes added to the repository (`du -sb` before and after;
backupctl's `bytes_added` from its JSON summary; pgBackRest's
`repository.delta` from `pgbackrest info --output=json`).

    python3 benches/stores/postgres.py --backupctl target/release/backupctl \\
        [--scale 70] [--rounds 3] [--full-rounds 1] [--work /work/bench-pg] \\
        [--out benches/results/DATE-postgres]

Needs PostgreSQL (Debian postgresql-15: initdb, postgres, psql, pgbench,
pg_basebackup), pgbackrest, runuser and /usr/bin/time. When run as root,
the server and pgBackRest run as the `postgres` user.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STANZA = "bench"
TOOLS = ["pgbackrest", "backupctl"]


def log(message: str) -> None:
    print(f"[postgres-bench] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_server_user(command: list[str]) -> list[str]:
    """`command` run as the `postgres` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(path)], check=True)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def timed(command: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and standard output of `command`."""
    started = time.monotonic()
    # In its own process group, so that an interrupted run ends the whole tree, not only GNU time.
    process = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", *command],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        # runuser passes the signal on and waits for its child: wait for the whole group.
        for _ in range(100):
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(process.pid, signal.SIGKILL)
        raise
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stdout}{stderr}")
    peak = int(stderr.strip().splitlines()[-1])
    return elapsed, peak, stdout


def du(path: Path) -> int:
    """Apparent size of `path` in bytes (`du -sb`)."""
    return int(run(["du", "-sb", str(path)]).stdout.split()[0])


class Cluster:
    """A new PostgreSQL cluster with pgBackRest's archive-push as its archive command."""

    def __init__(self, work: Path, bin_dir: Path):
        self.bin = bin_dir
        self.root = work / "pg"
        self.root.mkdir(mode=0o755)
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.socket_dir.mkdir()
        self.pgbackrest_dir = self.root / "pgbackrest"
        self.repo = self.pgbackrest_dir / "repo"
        for name in ["repo", "log", "lock", "spool"]:
            (self.pgbackrest_dir / name).mkdir(parents=True)
        self.port = free_port()
        self.config = self.pgbackrest_dir / "pgbackrest.conf"
        self.config.write_text(
            "[global]\n"
            f"repo1-path={self.repo}\n"
            # Keeps every backup (the default, unset, warns on each backup).
            "repo1-retention-full=99\n"
            f"log-path={self.pgbackrest_dir / 'log'}\n"
            f"lock-path={self.pgbackrest_dir / 'lock'}\n"
            f"spool-path={self.pgbackrest_dir / 'spool'}\n"
            "log-level-console=warn\n"
            f"\n[{STANZA}]\n"
            f"pg1-path={self.data}\n"
            f"pg1-port={self.port}\n"
            f"pg1-socket-path={self.socket_dir}\n"
        )
        self.process = None
        self.log_file = None

    def start(self) -> None:
        give_to_server_user(self.root)
        run(as_server_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                            "--auth-local=trust", "--auth-host=trust"]))
        self.log_file = open(self.root / "server.log", "ab")
        archive = f"pgbackrest --config={self.config} --stanza={STANZA} archive-push %p"
        self.process = subprocess.Popen(
            as_server_user([
                str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1",
                "-c", "wal_level=replica", "-c", "archive_mode=on",
                "-c", f"archive_command={archive}",
            ]),
            stdout=self.log_file, stderr=self.log_file, start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"postgres exited ({self.process.returncode}); see {self.root / 'server.log'}")
            ready = subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1",
                                    "-p", str(self.port)])
            if ready.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("postgres did not start in 60 s")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def sql(self, statement: str) -> str:
        return run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                    "-d", self.url, "-c", statement]).stdout.strip()

    def pgbackrest(self, *arguments: str) -> list[str]:
        return as_server_user(["pgbackrest", f"--config={self.config}", f"--stanza={STANZA}", *arguments])

    def settle(self, switch: bool = False) -> None:
        """CHECKPOINT (and with `switch`, a switch to a new WAL segment, so that the current one is
        archived too), then wait until every finished WAL segment is archived."""
        self.sql("CHECKPOINT")
        if switch:
            self.sql("SELECT pg_switch_wal()")
        deadline = time.time() + 600
        while True:
            ready = int(self.sql("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"))
            if ready == 0:
                break
            if time.time() > deadline:
                raise SystemExit(f"{ready} WAL segments still not archived after 10 minutes")
            time.sleep(0.2)
        failed = int(self.sql("SELECT failed_count FROM pg_stat_archiver"))
        if failed:
            raise SystemExit(f"the archive command failed {failed} times; see {self.root / 'server.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGINT to the postmaster itself: fast shutdown (runuser, its parent, then exits).
            try:
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            except (OSError, ValueError, IndexError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log("the server did not stop in 60 s: killing it")
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.log_file is not None:
            self.log_file.close()


def pgbackrest_stored_files(manifest: Path) -> list[tuple[str, int]]:
    """The files a pgBackRest backup stored itself (not referenced from an earlier one), biggest first."""
    stored = []
    section = None
    for line in manifest.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section != "target:file" or "=" not in line:
            continue
        name, value = line.split("=", 1)
        entry = json.loads(value)
        if "reference" not in entry and entry.get("size", 0) > 0:
            stored.append((name, entry["size"]))
    return sorted(stored, key=lambda item: -item[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backupctl", required=True)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70: 7 million accounts, about 1 GiB)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the two incremental patterns")
    parser.add_argument("--full-rounds", type=int, default=1,
                        help="full backups per tool (each into a fresh repository for backupctl; "
                             "pgBackRest's fulls go into its one repository)")
    parser.add_argument("--pg-bin-dir", default="/usr/lib/postgresql/15/bin")
    parser.add_argument("--work", default="/work/bench-pg", help="parent of the temporary directory")
    parser.add_argument("--pgbackrest-option", action="append", default=[], metavar="OPTION",
                        help="extra option of pgBackRest's backups, such as --process-max=2 or "
                             "--compress-type=zst (repeatable; default: none, its defaults)")
    parser.add_argument("--out", help="write OUT.md and OUT.json")
    args = parser.parse_args()
    backupctl = str(Path(args.backupctl).resolve())
    bin_dir = Path(args.pg_bin_dir)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="postgres-bench-", dir=args.work))
    os.chmod(work, 0o755)
    # A SIGTERM ends the run through the `finally` below, like an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = None
    load_start = os.getloadavg()
    started = time.time()
    try:
        log(f"initdb and server in {work}")
        cluster = Cluster(work, bin_dir)
        cluster.start()
        run(cluster.pgbackrest("stanza-create"))
        log(f"pgbench -i -s {args.scale}")
        load_started = time.monotonic()
        run([str(bin_dir / "pgbench"), "-i", "-q", "-s", str(args.scale), "-d", cluster.url])
        load_seconds = time.monotonic() - load_started
        rows = int(cluster.sql("SELECT count(*) FROM pgbench_accounts"))
        one_percent = rows // 100
        db_size = int(cluster.sql("SELECT pg_database_size('postgres')"))
        cluster_size = int(cluster.sql("SELECT sum(pg_database_size(oid)) FROM pg_database"))
        accounts_size = int(cluster.sql("SELECT pg_relation_size('pgbench_accounts')"))
        log(f"{rows} rows, database size {db_size} bytes ({db_size / 2**30:.2f} GiB; "
            f"pg_database_size('postgres'); all databases {cluster_size}; pgbench_accounts "
            f"{accounts_size}), loaded in {load_seconds:.1f} s")

        password = work / "password"
        password.write_text("bench password\n")
        env = dict(os.environ, BACKUP_PASSWORD=password.read_text().strip())
        ours_repo = work / "ours-repo"

        def our_init() -> None:
            if ours_repo.exists():
                shutil.rmtree(ours_repo)
            run([backupctl, "init", "--repo", str(ours_repo)], env=env)

        results: dict[str, dict[str, list]] = {}

        def record(step: str, tool: str, **values) -> None:
            entry = results.setdefault(step, {}).setdefault(tool, [])
            entry.append(values)

        def pgbackrest_latest() -> dict:
            info = json.loads(run(cluster.pgbackrest("info", "--output=json")).stdout)
            return info[0]["backup"][-1]

        def backup(tool: str, step: str, kind: str) -> None:
            """One timed backup by `tool`; `kind` is full or incr (pgBackRest's --type)."""
            cluster.settle()
            repo = cluster.repo if tool == "pgbackrest" else ours_repo
            before = du(repo)
            if tool == "pgbackrest":
                before_backup, before_archive = du(repo / "backup"), du(repo / "archive")
                seconds, peak, _ = timed(cluster.pgbackrest("backup", f"--type={kind}", *args.pgbackrest_option))
                after = du(repo)
                latest = pgbackrest_latest()
                if latest["type"] != kind:
                    raise SystemExit(f"pgBackRest made a {latest['type']} backup, not {kind}")
                values = {
                    "backup_dir_added": du(repo / "backup") - before_backup,
                    "archive_added": du(repo / "archive") - before_archive,
                    "info_repository_delta": latest["info"]["repository"]["delta"],
                    "info_delta": latest["info"]["delta"],
                    "info_size": latest["info"]["size"],
                    "label": latest["label"],
                }
                stored = pgbackrest_stored_files(repo / "backup" / STANZA / latest["label"] / "backup.manifest")
                values["files_stored"] = len(stored)
                values["bytes_of_files_stored"] = sum(size for _, size in stored)
                values["largest_files_stored"] = stored[:3]
            else:
                seconds, peak, output = timed(
                    [backupctl, "backup", "--repo", str(ours_repo), "--set", "pg", "--source", "postgres",
                     "--pg-url", cluster.url, "--pg-bin-dir", str(bin_dir), "--progress", "none", "--json"],
                    env)
                after = du(repo)
                summary = json.loads(output)
                if summary["status"] != "completed" or summary["errors"]:
                    raise SystemExit(f"backupctl backup did not complete: {output}")
                values = {
                    "bytes_added_json": summary["bytes_added"],
                    "bytes_read": summary["bytes_read"],
                    "bytes_total": summary["bytes_total"],
                    "files": summary["files"],
                    "files_unchanged": summary["files_unchanged"],
                    "id": summary["short_id"],
                }
            record(step, tool, seconds=seconds, peak_rss_kib=peak, du_added=after - before,
                   repo_after=after, load_1min=os.getloadavg()[0], **values)
            log(f"{step}: {tool} {seconds:.2f} s, peak {peak / 1024:.0f} MiB, "
                f"repository +{(after - before) / 2**20:.1f} MiB")

        log("full backups")
        for round_ in range(args.full_rounds):
            order = TOOLS if round_ % 2 == 0 else TOOLS[::-1]
            for tool in order:
                if tool == "backupctl":
                    # Each full backup of ours into a fresh repository; the last one stays
                    # as the parent of the incrementals.
                    our_init()
                backup(tool, "full", "full")

        patterns = {
            "contiguous": lambda r: f"aid > {r * one_percent} AND aid <= {(r + 1) * one_percent}",
            "scattered": lambda r: f"aid % 100 = {r % 100}",
        }
        change_seconds: dict[str, list] = {name: [] for name in patterns}
        # WAL of the UPDATE itself, archived by pgBackRest before its backup starts
        # (needed for point-in-time recovery, not by the backup): not in the backups' growth.
        change_wal: dict[str, list] = {name: [] for name in patterns}
        order_log = []
        for round_ in range(args.rounds):
            for index, (name, where) in enumerate(patterns.items()):
                condition = where(round_)
                log(f"round {round_ + 1}: {name} 1 %: UPDATE ... WHERE {condition}")
                archive_before = du(cluster.repo / "archive")
                change_started = time.monotonic()
                updated = cluster.sql(
                    f"WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE {condition} "
                    "RETURNING 1) SELECT count(*) FROM u")
                change_seconds[name].append(time.monotonic() - change_started)
                # The UPDATE's WAL archived now, so that it is not counted in the next backup's growth.
                cluster.settle(switch=True)
                change_wal[name].append(du(cluster.repo / "archive") - archive_before)
                if int(updated) != one_percent:
                    raise SystemExit(f"{name}: {updated} rows updated, expected {one_percent}")
                # Alternate: by round and by pattern, so each tool goes first half the time.
                order = TOOLS if (round_ + index) % 2 == 0 else TOOLS[::-1]
                order_log.append({"round": round_ + 1, "pattern": name, "where": condition, "order": order})
                for tool in order:
                    backup(tool, name, "incr")

        final_db_size = int(cluster.sql("SELECT pg_database_size('postgres')"))
        final_accounts_size = int(cluster.sql("SELECT pg_relation_size('pgbench_accounts')"))
        autovacuum = cluster.sql(
            "SELECT relname || ':' || autovacuum_count || ':' || autoanalyze_count FROM pg_stat_user_tables "
            "WHERE autovacuum_count + autoanalyze_count > 0 ORDER BY relname")
        versions = {
            "backupctl": run([backupctl, "--version"]).stdout.strip(),
            "pgbackrest": run(["pgbackrest", "version"]).stdout.strip(),
            "postgres": run([str(bin_dir / "postgres"), "--version"]).stdout.strip(),
        }
        source = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()

        def median(step: str, tool: str, key: str) -> float:
            return statistics.median(v[key] for v in results[step][tool])

        summary = {
            "scale": args.scale,
            "rows": rows,
            "database_bytes": db_size,
            "database_bytes_after": final_db_size,
            "all_databases_bytes": cluster_size,
            "pgbench_accounts_bytes": accounts_size,
            "pgbench_accounts_bytes_after": final_accounts_size,
            "load_seconds": load_seconds,
            "rounds": args.rounds,
            "full_rounds": args.full_rounds,
            "change_seconds": change_seconds,
            "change_wal_archived_bytes": change_wal,
            "order": order_log,
            "medians": {
                step: {tool: {key: statistics.median(v[key] for v in values)
                              for key in values[0] if isinstance(values[0][key], (int, float))}
                       for tool, values in tools.items()}
                for step, tools in results.items()
            },
            "runs": results,
            "autovacuum_runs": autovacuum.splitlines(),
            "versions": versions,
            "source_commit": commit + ("-dirty" if dirty else ""),
            "machine": {"cpus": os.cpu_count(), "load_start": load_start, "load_end": os.getloadavg()},
            "total_seconds": time.time() - started,
            "pgbackrest_options": args.pgbackrest_option,
            "settings": {
                "pgbackrest": "defaults: compress-type=gz, compress-level=6, process-max=1, no repository "
                              "encryption, start-fast=n, file-level incremental",
                "backupctl": "encrypted repository (XChaCha20-Poly1305), zstd level 3, content-defined chunks, "
                             "pg_basebackup -Ft -X fetch --checkpoint=fast",
                "server": "PostgreSQL defaults but wal_level=replica, archive_mode=on, "
                          "archive_command=pgbackrest archive-push",
            },
        }

        def fmt_bytes(n: float) -> str:
            return f"{n / 2**20:.1f} MiB"

        def ratio(step: str) -> str:
            return f"{median(step, 'backupctl', 'seconds') / median(step, 'pgbackrest', 'seconds'):.2f}x"

        def peaks(step: str) -> str:
            return (f"{max(v['peak_rss_kib'] for v in results[step]['pgbackrest']) / 1024:.0f} / "
                    f"{max(v['peak_rss_kib'] for v in results[step]['backupctl']) / 1024:.0f} MiB")

        def share(n: float) -> str:
            return f"{100 * n / db_size:.1f} %"

        loads = [v["load_1min"] for tools in results.values() for values in tools.values() for v in values]
        labels = {"full": "full backup", "contiguous": "incremental after contiguous 1 %",
                  "scattered": "incremental after scattered 1 %"}
        lines = [
            "# PostgreSQL: backupctl against pgBackRest (physical backups)",
            "",
            f"One cluster ({versions['postgres']}), `pgbench -i -s {args.scale}`: {rows:,} accounts, "
            f"database {db_size / 2**30:.2f} GiB (`pg_database_size`, {db_size:,} bytes; "
            f"{final_db_size / 2**30:.2f} GiB after the changes); {args.rounds} rounds of the incremental "
            f"patterns, medians; {args.full_rounds} full backup(s) per tool; tools in alternating order. "
            f"{versions['pgbackrest']} with its defaults (gzip level 6, one process, unencrypted, "
            "file-level incrementals)"
            + (f" but {' '.join(f'`{o}`' for o in args.pgbackrest_option)}" if args.pgbackrest_option else "")
            + "; backupctl "
            f"({versions['backupctl']}; checkout at run time {summary['source_commit']}) into an encrypted local repository "
            "(zstd level 3, content-defined chunks). Both into local directories. "
            f"Machine: {os.cpu_count()} cores, load average {load_start[0]:.2f} at start, "
            f"{summary['machine']['load_end'][0]:.2f} at end, "
            f"{min(loads):.2f}–{max(loads):.2f} after the backups (1 min).",
            "",
            "| step | pgBackRest | backupctl | ratio | peak RSS pgBackRest / backupctl |",
            "|---|---|---|---|---|",
        ]
        for step in ["full", "contiguous", "scattered"]:
            lines.append(f"| {labels[step]} | {median(step, 'pgbackrest', 'seconds'):.2f} s | "
                         f"{median(step, 'backupctl', 'seconds'):.2f} s | {ratio(step)} | {peaks(step)} |")
        lines += [
            "",
            "Bytes added to the repository (medians; share of the database size):",
            "",
            "| step | pgBackRest `du -sb` | of which WAL archive | pgBackRest `info` repository delta | "
            "backupctl `du -sb` | backupctl `bytes_added` |",
            "|---|---|---|---|---|---|",
        ]
        for step in ["full", "contiguous", "scattered"]:
            peer_du = median(step, "pgbackrest", "du_added")
            ours_du = median(step, "backupctl", "du_added")
            lines.append(
                f"| {labels[step]} | {fmt_bytes(peer_du)} ({share(peer_du)}) | "
                f"{fmt_bytes(median(step, 'pgbackrest', 'archive_added'))} | "
                f"{fmt_bytes(median(step, 'pgbackrest', 'info_repository_delta'))} | "
                f"{fmt_bytes(ours_du)} ({share(ours_du)}) | "
                f"{fmt_bytes(median(step, 'backupctl', 'bytes_added_json'))} |")
        def relation(path: str) -> str:
            """`pg_data/base/DB/FILENODE[_fork][.N]` with the relation's name, when it is one."""
            parts = path.split("/")
            if len(parts) == 4 and parts[1] == "base":
                node = parts[3].split(".")[0].split("_")[0]
                if node.isdigit():
                    name = cluster.sql(f"SELECT relname FROM pg_class WHERE relfilenode = {node}")
                    if name:
                        return f"{path} ({name}{parts[3][len(node):]})"
            return path

        for step in ["contiguous", "scattered"]:
            last = results[step]["pgbackrest"][-1]
            lines.append("")
            lines.append(
                f"pgBackRest's last incremental after the {step} change stored {last['files_stored']} files "
                f"({fmt_bytes(last['bytes_of_files_stored'])} before compression), the largest: "
                + ", ".join(f"`{relation(name)}` {fmt_bytes(size)}" for name, size in last["largest_files_stored"])
                + f"; backupctl's read {fmt_bytes(results[step]['backupctl'][-1]['bytes_read'])} "
                f"({results[step]['backupctl'][-1]['files']} files, "
                f"{results[step]['backupctl'][-1]['files_unchanged']} unchanged).")
        lines += ["", "Per round:", "",
                  "| step | round | first | pgBackRest s | backupctl s | pgBackRest added | backupctl added | "
                  "pgBackRest peak | backupctl peak |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for step in ["full", "contiguous", "scattered"]:
            count = len(results[step]["pgbackrest"])
            for i in range(count):
                peer, ours = results[step]["pgbackrest"][i], results[step]["backupctl"][i]
                if step == "full":
                    first = TOOLS[0] if i % 2 == 0 else TOOLS[1]
                else:
                    first = [o for o in order_log if o["pattern"] == step][i]["order"][0]
                lines.append(
                    f"| {labels[step]} | {i + 1} | {first} | {peer['seconds']:.2f} | {ours['seconds']:.2f} | "
                    f"{fmt_bytes(peer['du_added'])} | {fmt_bytes(ours['du_added'])} | "
                    f"{peer['peak_rss_kib'] / 1024:.0f} MiB | {ours['peak_rss_kib'] / 1024:.0f} MiB |")
        lines += [
            "",
            f"The UPDATEs took (s): " + "; ".join(
                f"{name}: {', '.join(f'{v:.1f}' for v in values)}" for name, values in change_seconds.items())
            + f". pgbench_accounts grew from {fmt_bytes(accounts_size)} to {fmt_bytes(final_accounts_size)} "
            "(every updated row gets a new version, at the end of the table: its pages are full). "
            "Autovacuum runs during the benchmark: "
            + (", ".join(summary["autovacuum_runs"]) if summary["autovacuum_runs"] else "none") + ". "
            "WAL of the UPDATEs archived by pgBackRest before its backup (not counted above, "
            "medians): " + "; ".join(f"{name} {fmt_bytes(statistics.median(v))}" for name, v in change_wal.items())
            + ".",
            "",
            "Each round updates rows not updated before: "
            + "; ".join(f"{name}: " + ", ".join(f"`{o['where']}`" for o in order_log if o["pattern"] == name)
                        for name in patterns) + ".",
            "",
            "How to read it: every change is followed by CHECKPOINT, a switch to a new WAL segment and a wait "
            "for the archiver, and every backup is preceded by CHECKPOINT and a wait for the archiver, so both "
            "tools see the same files. pgBackRest's incremental stores again, whole and compressed, every file whose "
            "size or time changed (whichever rows changed: the table's segment, its primary-key index), "
            "and references the others; it reads only the changed files. backupctl's incremental reads the "
            "whole cluster again through pg_basebackup and stores the chunks it does not have: a contiguous "
            "change touches few chunks, a scattered one (aid % 100: a row on most heap pages, since a page "
            f"holds about {rows / (accounts_size / 8192):.0f} rows) changes most pages of the table and so most of its chunks. "
            "Bytes added by pgBackRest include its WAL archive's growth during its own backup (the segments "
            "from the backup's start to its stop); backupctl's include the same WAL, which it streams with the "
            "backup (`pg_wal/`). Peak RSS is GNU time's %M: the largest single process of the tool's tree "
            "(pgBackRest runs through runuser, with its local worker process; backupctl with pg_basebackup and "
            "psql as children).",
        ]
        report = "\n".join(lines) + "\n"
        print(report)
        if args.out:
            Path(args.out + ".md").write_text(report)
            Path(args.out + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        # A second SIGTERM must not cut the cleanup short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
        log(f"stopped the server, removed {work}")


if __name__ == "__main__":
    main()
