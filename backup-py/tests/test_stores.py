"""PostgreSQL and MariaDB through the binding, against real servers
(Debian's packages) started on 127.0.0.1 in temporary directories: backed
up, the server destroyed, restored into a fresh one, read back."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import backup_toolkit as bt
from conftest import free_port


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.fail("PostgreSQL is not installed (scripts/install-test-servers.sh installs it)")
    return Path(found[-1]).parent


def as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(path)], check=True)


@dataclass
class Postgres:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def sql(self, sql: str) -> str:
        out = subprocess.run(
            [str(pg_bin() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.url, "-c", sql],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def start_postgres(place: Path, data_dir: Path | None = None) -> Postgres:
    place.mkdir(parents=True, exist_ok=True)
    place.chmod(0o755)
    give_to_server_user(place)
    if data_dir is None:
        data_dir = place / "data"
        subprocess.run(
            as_server_user([str(pg_bin() / "initdb"), "-D", str(data_dir), "-U", "postgres",
                            "--auth=trust", "--no-sync"]),
            check=True, capture_output=True,
        )
    else:
        give_to_server_user(data_dir)
        data_dir.chmod(0o700)
    port = free_port()
    process = subprocess.Popen(
        as_server_user([str(pg_bin() / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(place),
                        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while subprocess.run([str(pg_bin() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"postgres did not start on port {port}")
        time.sleep(0.1)
    return Postgres(process, port, data_dir)


@pytest.fixture
def pg_place() -> Iterator[Path]:
    """A directory the server's user can reach (pytest's own are private
    to whoever runs the tests)."""
    place = Path(tempfile.mkdtemp(prefix="backup-py-pg-"))
    place.chmod(0o755)
    yield place
    shutil.rmtree(place, ignore_errors=True)


@pytest.fixture
def postgres(pg_place: Path) -> Iterator[Postgres]:
    server = start_postgres(pg_place / "pg")
    yield server
    server.stop()


def test_postgres_physical_and_logical_backups_restore_into_fresh_servers(
    postgres: Postgres, pg_place: Path, tmp_path: Path
) -> None:
    postgres.sql("CREATE TABLE orders (id int PRIMARY KEY, total int); "
                 "INSERT INTO orders SELECT i, i FROM generate_series(1, 1000) i")
    repo = bt.Repository.init(str(tmp_path / "repo"), password="pg through python")
    physical = repo.backup(source=bt.PostgresSource(postgres.url, bin_dir=pg_bin()), set="pg")
    logical = repo.backup(source=bt.PostgresSource(postgres.url, mode="logical", bin_dir=pg_bin()), set="pg-dump")
    assert physical.backup.facts["mode"] == "physical"
    assert isinstance(physical.backup.facts["start_lsn"], str)
    assert logical.backup.facts["databases"] == ["postgres"]
    assert "PostgresSource" in repr(bt.PostgresSource(postgres.url))
    postgres.stop()
    shutil.rmtree(postgres.data_dir)

    data_dir = pg_place / "restored" / "data"
    data_dir.parent.mkdir()
    restored = repo.restore_into(physical.backup, bt.PostgresRestorer(data_dir=data_dir, bin_dir=pg_bin()))
    assert restored.kind == "postgres"
    verified = subprocess.run([str(pg_bin() / "pg_verifybackup"), str(data_dir)], capture_output=True, text=True)
    assert "successfully verified" in verified.stdout, verified.stderr
    server = start_postgres(pg_place / "restored", data_dir)
    try:
        assert server.sql("SELECT sum(total) FROM orders") == "500500"
    finally:
        server.stop()

    fresh = start_postgres(pg_place / "fresh")
    try:
        repo.restore_into(logical.backup, bt.PostgresRestorer(url=fresh.url, bin_dir=pg_bin()))
        assert fresh.sql("SELECT sum(total) FROM orders") == "500500"
        with pytest.raises(bt.exceptions.RestoreRefusedError):
            repo.restore_into(logical.backup, bt.PostgresRestorer(url=fresh.url, bin_dir=pg_bin()))
    finally:
        fresh.stop()
    with pytest.raises(bt.exceptions.InvalidArgumentError):
        bt.PostgresRestorer(data_dir=data_dir, url=fresh.url)
    with pytest.raises(bt.exceptions.InvalidArgumentError):
        bt.PostgresSource(postgres.url, mode="incremental")  # type: ignore[arg-type]


def test_a_postgres_that_cannot_be_reached_fails_with_its_own_message(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    with pytest.raises(bt.exceptions.BackupError) as raised:
        repo.backup(
            source=bt.PostgresSource(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", bin_dir=pg_bin()),
            set="pg",
        )
    assert "Connection refused" in str(raised.value)
    assert repo.list() == []


@dataclass
class Mariadb:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/"

    def sql(self, sql: str) -> str:
        out = subprocess.run(
            ["mariadb", "--no-defaults", "--host=127.0.0.1", "--protocol=TCP", f"--port={self.port}",
             "--user=root", "--batch", "--skip-column-names", "-e", sql],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def start_mariadb(place: Path) -> Mariadb:
    data_dir, tmp = place / "data", place / "tmp"
    tmp.mkdir(parents=True)
    root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data_dir}", f"--tmpdir={tmp}",
         "--auth-root-authentication-method=normal", "--skip-test-db", *root],
        check=True, capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data_dir}", f"--tmpdir={tmp}",
         f"--socket={place / 'sock'}", f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
         f"--log-bin={data_dir / 'binlog'}", "--server-id=1", *root],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = Mariadb(process, port)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.sql("SELECT 1")
            break
        except subprocess.CalledProcessError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mariadbd did not start on port {port}")
            time.sleep(0.1)
    # Accounts named by this host's name are unusable with --skip-name-resolve.
    for host in server.sql("SELECT host FROM mysql.user WHERE user = 'root' AND host NOT IN "
                           "('localhost', '127.0.0.1', '::1')").splitlines():
        server.sql(f"DROP USER root@'{host}'")
    return server


def test_a_mariadb_dump_replays_into_a_fresh_server(tmp_path: Path) -> None:
    source = start_mariadb(tmp_path / "source")
    try:
        source.sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, total int); "
                   "INSERT INTO shop.orders VALUES (1, 10), (2, 20), (3, 30)")
        repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
        summary = repo.backup(source=bt.MariadbSource(source.url), set="db")
    finally:
        source.stop()
    assert summary.backup.facts["databases"] == ["shop"]
    assert str(summary.backup.facts["gtid"]).startswith("0-1-")
    fresh = start_mariadb(tmp_path / "fresh")
    try:
        repo.restore_into(summary.backup, bt.MariadbRestorer(url=fresh.url))
        assert fresh.sql("SELECT sum(total) FROM shop.orders") == "60"
    finally:
        fresh.stop()
