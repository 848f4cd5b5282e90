"""Cassandra from Python: ``CassandraSource``, ``CassandraRestorer`` and the
cluster operations of a ``Repository``, against **stand-in** nodes.

Cassandra cannot be installed on the test machines, so each node here is a
directory built by the ``standin_cluster`` fixture the way
``backup-testkit/src/cassandra.rs`` (``StandInNode::create`` and
``StandInCluster::create``) builds one: a ``node.json`` (cluster, data
center, rack, version, address, host id, 16 tokens, schema, peers, failure
switches) and two data directories holding ``<keyspace>/<table>-<id>/``
with SSTable components (``nb-<generation>-big-<Component>``) of random
bytes, secondary index SSTables in ``.<index>/``. The nodes are driven by
the stand-in ``nodetool`` of ``backup-testkit/standin/nodetool`` (python3,
run as ``python3 <script> --home <node home> <command>``), which prints what
Cassandra 4.0's nodetool prints and lays out ``snapshots/<tag>/`` as it
does; ``"fail_snapshot_after": N`` in ``node.json`` makes its snapshot fail
after N tables, leaving the partial snapshot behind.

What these tests do **not** prove: anything about real SSTables (the
components are random bytes), that memtables are flushed before the
snapshot, compaction racing a snapshot, JMX authentication, ``cqlsh``
(not run here: ``cqlsh=None``), SSH access (the nodes are local), or that a
restored node starts and serves its data. They show that the binding
drives the library's Cassandra support as the stand-in presents a cluster,
and that the files and tokens come back as they were backed up.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shlex
import sys
import threading
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import backup_toolkit as bt

NODETOOL = Path(__file__).resolve().parents[2] / "backup-testkit" / "standin" / "nodetool"

#: Cassandra's own table ids of the system tables the stand-in schema has.
SYSTEM_IDS = {
    ("system", "local"): "7ad54392bcdd35a684174e047860b377",
    ("system", "peers_v2"): "c4325fbb8e5e3bafbd070f9250ed818e",
    ("system_schema", "keyspaces"): "abac5682dea631c5b535b3d6cffd0fb6",
    ("system_schema", "tables"): "afddfb9dbc1e30688056eed6c302ba09",
    ("system_traces", "sessions"): "c5e99f1686773914b17e960613512345",
}

#: (keyspace, table, columns, primary key, indexes (name, column)).
TABLES: list[tuple[str, str, list[tuple[str, str]], str, list[tuple[str, str]]]] = [
    ("system", "local", [("key", "text"), ("host_id", "uuid"), ("tokens", "set<text>")], "key", []),
    ("system", "peers_v2", [("peer", "inet"), ("peer_port", "int"), ("host_id", "uuid")], "peer, peer_port", []),
    ("system_schema", "keyspaces", [("keyspace_name", "text"), ("durable_writes", "boolean")], "keyspace_name", []),
    ("system_schema", "tables", [("keyspace_name", "text"), ("table_name", "text"), ("id", "uuid")],
     "keyspace_name, table_name", []),
    ("system_traces", "sessions", [("session_id", "uuid"), ("command", "text")], "session_id", []),
    ("shop", "orders", [("order_id", "uuid"), ("customer_id", "uuid"), ("status", "text")], "order_id",
     [("orders_by_customer", "customer_id")]),
    ("shop", "customers", [("customer_id", "uuid"), ("email", "text")], "customer_id", []),
    ("inventory", "items", [("sku", "text"), ("warehouse", "text"), ("quantity", "int")], "(sku), warehouse", []),
]

#: The components of an SSTable, in the order a 4.0 ``TOC.txt`` lists them.
COMPONENTS = [
    "Digest.crc32", "Data.db", "Statistics.db", "TOC.txt",
    "Summary.db", "Index.db", "CompressionInfo.db", "Filter.db",
]

SSTABLE = re.compile(r"^[a-z]{2}-\d+-big-[A-Za-z0-9.]+$")

#: Node-local keyspaces a restore leaves out, and the one a backup leaves out.
NOT_RESTORED = {"system", "system_traces"}

CLUSTER_NAME = "Test Cluster"
VERSION = "4.0.11"


def replication(keyspace: str, datacenter: str) -> dict[str, str]:
    """The replication the stand-in's keyspace has, as Cassandra lists it."""
    if keyspace in ("system", "system_schema"):
        return {"class": "LocalStrategy"}
    if keyspace == "system_auth":
        return {"class": "SimpleStrategy", "replication_factor": "1"}
    if keyspace == "system_traces":
        return {"class": "SimpleStrategy", "replication_factor": "2"}
    return {"class": "NetworkTopologyStrategy", datacenter: "3"}


def table_id(keyspace: str, table: str) -> str:
    """A table's id: Cassandra's for system tables, else derived from the
    cluster's name (the same on every node of the cluster)."""
    fixed = SYSTEM_IDS.get((keyspace, table))
    if fixed is not None:
        return fixed
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{CLUSTER_NAME}/{keyspace}.{table}").hex


def write_sstable(directory: Path, generation: int, data_size: int, rng: random.Random) -> None:
    """The components of SSTable ``generation`` in ``directory``, random
    bytes but for the digest and the TOC."""
    directory.mkdir(parents=True, exist_ok=True)
    data = rng.randbytes(data_size)
    sizes = {
        "Statistics.db": rng.randrange(4_500, 10_500),
        "Summary.db": 56 + data_size // 2048,
        "Index.db": 64 + data_size // 16,
        "CompressionInfo.db": 43 + 8 * (data_size // 16_384 + 1),
        "Filter.db": 16 + data_size // 512,
    }
    for component in COMPONENTS:
        if component == "Data.db":
            content = data
        elif component == "Digest.crc32":
            content = str(zlib.crc32(data)).encode()
        elif component == "TOC.txt":
            content = "".join(f"{c}\n" for c in COMPONENTS).encode()
        else:
            content = rng.randbytes(sizes[component])
        (directory / f"nb-{generation}-big-{component}").write_bytes(content)


@dataclass
class StandInNode:
    """A stand-in node: its home (``node.json``) and data directories."""

    name: str
    home: Path
    data_dirs: list[Path]
    tokens: list[str]
    host_id: str

    def nodetool(self) -> str:
        """The nodetool command line of this node."""
        return shlex.join([sys.executable, str(NODETOOL), "--home", str(self.home)])

    def source(self) -> bt.CassandraSource:
        """The node as a source (no cqlsh: there is none here)."""
        return bt.CassandraSource(self.name, nodetool=self.nodetool(), cqlsh=None, data_dirs=self.data_dirs)

    def set_state(self, key: str, value: object) -> None:
        """Sets one field of ``node.json``."""
        path = self.home / "node.json"
        state = json.loads(path.read_text())
        state[key] = value
        path.write_text(json.dumps(state, indent=2))

    def sstables(self, *, skip: set[str] = NOT_RESTORED) -> dict[str, bytes]:
        """Every live SSTable component (index ones too) by its path below
        the data directory (``<keyspace>/<table>-<id>/...``), every data
        directory merged, keyspaces in ``skip`` left out."""
        files: dict[str, bytes] = {}
        for data in self.data_dirs:
            for path in data.rglob("*"):
                relative = path.relative_to(data)
                if path.is_file() and SSTABLE.match(path.name) and relative.parts[0] not in skip:
                    assert "snapshots" not in relative.parts
                    files[relative.as_posix()] = path.read_bytes()
        return files

    def snapshot_dirs(self) -> list[Path]:
        """Every ``snapshots`` directory below the data directories."""
        return sorted(p for data in self.data_dirs for p in data.rglob("snapshots") if p.is_dir())


def create_node(home: Path, name: str, number: int, seed: int) -> StandInNode:
    """Node ``number`` (from 1) of the stand-in cluster, as
    ``StandInNode::create`` makes one: ``node.json``, ``data1`` and
    ``data2``, every table's directory in both, 1-3 SSTable generations
    per table (and 1-2 per index) each in one of them."""
    rng = random.Random(seed)
    home.mkdir(parents=True)
    host_id = str(uuid.UUID(bytes=rng.randbytes(16), version=4))
    tokens: set[int] = set()
    while len(tokens) < 16:
        tokens.add(rng.randrange(-(2**63), 2**63))
    token_list = [str(token) for token in sorted(tokens)]
    data_dirs = [home / "data1", home / "data2"]
    datacenter = "dc1"

    keyspaces: list[dict[str, Any]] = []
    for keyspace, table, columns, primary_key, indexes in TABLES:
        entry = {
            "name": table,
            "id": table_id(keyspace, table),
            "columns": [list(column) for column in columns],
            "primary_key": primary_key,
            "indexes": [{"name": index, "column": column} for index, column in indexes],
        }
        found = next((ks for ks in keyspaces if ks["name"] == keyspace), None)
        if found is None:
            keyspaces.append({"name": keyspace, "replication": replication(keyspace, datacenter), "tables": [entry]})
        else:
            found["tables"].append(entry)

    started_at = 1_760_000_000 + number
    state = {
        "standin": "backup-testkit stand-in for a Cassandra 4.0 node, not Cassandra",
        "cluster": CLUSTER_NAME,
        "datacenter": datacenter,
        "rack": f"rack{number}",
        "version": VERSION,
        "address": f"127.0.0.{number}",
        "host_id": host_id,
        "tokens": token_list,
        "data_dirs": [str(d) for d in data_dirs],
        "snitch": "org.apache.cassandra.locator.GossipingPropertyFileSnitch",
        "schema_version": str(uuid.uuid3(uuid.NAMESPACE_DNS, CLUSTER_NAME)),
        "generation": started_at,
        "started_at": started_at,
        "keyspaces": keyspaces,
        "peers": [],
        "down": False,
        "fail_snapshot_after": None,
        "slow_snapshot_ms": None,
    }
    (home / "node.json").write_text(json.dumps(state, indent=2))

    for keyspace, table, _, _, indexes in TABLES:
        table_dirs = [data / keyspace / f"{table}-{table_id(keyspace, table)}" for data in data_dirs]
        for directory in table_dirs:
            directory.mkdir(parents=True)
            for index, _ in indexes:
                (directory / f".{index}").mkdir()
        system = keyspace.startswith("system")
        for generation in range(1, rng.randrange(1, 4) + 1):
            size = rng.randrange(200, 4_096) if system else rng.randrange(4_096, 40_000)
            write_sstable(rng.choice(table_dirs), generation, size, rng)
        for index, _ in indexes:
            for generation in range(1, rng.randrange(1, 3) + 1):
                write_sstable(rng.choice(table_dirs) / f".{index}", generation, rng.randrange(1_024, 8_192), rng)
    return StandInNode(name=name, home=home, data_dirs=data_dirs, tokens=token_list, host_id=host_id)


def create_cluster(root: Path, count: int) -> list[StandInNode]:
    """``count`` nodes of one cluster in ``root/node1`` …, each seeing the
    others as its peers (as ``StandInCluster::create`` sets them)."""
    nodes = [create_node(root / f"node{n}", f"cass-{n - 1}", n, seed=1_000_003 * n) for n in range(1, count + 1)]
    for node in nodes:
        node.set_state("peers", [str(other.home) for other in nodes if other is not node])
    return nodes


@pytest.fixture
def standin_cluster(tmp_path: Path) -> list[StandInNode]:
    """Three stand-in nodes of one cluster."""
    return create_cluster(tmp_path / "cluster", 3)


@dataclass
class ClusterBackup:
    repo: bt.Repository
    report: Mapping[str, Any]
    events: list[Mapping[str, Any]]
    threads: set[int]


@pytest.fixture
def backed_up(standin_cluster: list[StandInNode], tmp_path: Path) -> ClusterBackup:
    """A completed cluster backup of the three nodes, its progress events
    and the threads its callback ran on."""
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    events: list[Mapping[str, Any]] = []
    threads: set[int] = set()

    def on_progress(event: Mapping[str, Any]) -> None:
        threads.add(threading.get_ident())
        events.append(event)

    report = repo.cluster_backup(
        "shop", [node.source() for node in standin_cluster], parallelism=2, on_progress=on_progress
    )
    return ClusterBackup(repo, report, events, threads)


def yaml_file(path: Path) -> Path:
    """A new node's cassandra.yaml, before the restore sets its tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"cluster_name: '{CLUSTER_NAME}'\nnum_tokens: 16\n# initial_token:\nendpoint_snitch: x\n")
    return path


def restored_sstables(data_dir: Path) -> dict[str, bytes]:
    """The SSTable components restored into ``data_dir``."""
    return {
        path.relative_to(data_dir).as_posix(): path.read_bytes()
        for path in data_dir.rglob("*")
        if path.is_file() and SSTABLE.match(path.name)
    }


def test_cluster_backup_reports_progress_per_node(
    backed_up: ClusterBackup, standin_cluster: list[StandInNode]
) -> None:
    report, events = backed_up.report, backed_up.events
    assert report["state"] == "COMPLETED", report
    assert report["cluster"] == "shop"
    assert isinstance(report["record"], str)
    assert [node["node"] for node in report["nodes"]] == ["cass-0", "cass-1", "cass-2"]
    for node in report["nodes"]:
        assert node["state"] == "COMPLETED" and node["error"] is None
        assert node["set"] == f"shop/{node['node']}"
        assert isinstance(node["backup"], str) and node["bytes_total"] > 0
        (backup,) = backed_up.repo.list(set=node["set"])
        assert backup.id == node["backup"] and backup.kind == "cassandra"
        assert backup.tags["cluster_backup"] == report["id"]

    # Every event is a dict of the one cluster backup, delivered on the
    # calling thread (with the GIL), never on a worker of the runtime.
    assert events and backed_up.threads == {threading.get_ident()}
    assert {event["cluster_backup_id"] for event in events} == {report["id"]}
    assert all(event["nodes_total"] == 3 for event in events)
    for node in standin_cluster:
        mine = [event for event in events if event["node"] == node.name]
        assert mine, node.name
        assert mine[-1]["state"] == "COMPLETED" and mine[-1]["percent"] == 100.0
        assert all(0.0 <= event["percent"] <= 100.0 for event in mine)
        assert {event["state"] for event in mine} <= {"PENDING", "RUNNING", "COMPLETED"}
    whole = [event for event in events if event["node"] is None]
    assert whole[-1] == events[-1]
    assert whole[-1]["state"] == "COMPLETED" and whole[-1]["percent"] == 100.0
    assert whole[-1]["nodes_completed"] == 3 and whole[-1]["nodes_failed"] == 0
    assert whole[-1]["error"] is None

    # The snapshots were cleared on every node.
    for node in standin_cluster:
        assert node.snapshot_dirs() == [], node.name


def test_cluster_backups_lists_the_completed_backup(
    backed_up: ClusterBackup, standin_cluster: list[StandInNode]
) -> None:
    (record,) = backed_up.repo.cluster_backups("shop")
    assert record["id"] == backed_up.report["id"]
    assert record["record"] == backed_up.report["record"]
    assert record["cluster"] == "shop" and record["store"] == "cassandra"
    by_name = {node["node"]: node for node in record["nodes"]}
    assert sorted(by_name) == ["cass-0", "cass-1", "cass-2"]
    for node in standin_cluster:
        recorded = by_name[node.name]
        assert recorded["tokens"] == node.tokens
        assert recorded["host_id"] == node.host_id
        assert recorded["datacenter"] == "dc1" and recorded["cassandra_version"] == VERSION
    assert backed_up.repo.cluster_backups("another") == []


def test_cluster_restore_into_three_new_nodes(
    backed_up: ClusterBackup, standin_cluster: list[StandInNode], tmp_path: Path
) -> None:
    new = tmp_path / "new"
    targets = [
        bt.CassandraRestorer(new / f"n{i}" / "data", yaml=yaml_file(new / f"n{i}" / "cassandra.yaml"), version="4.0.2")
        for i in range(3)
    ]
    reports = backed_up.repo.cluster_restore("shop", targets, backup=backed_up.report["id"])
    assert len(reports) == 3
    # The recorded nodes, by name, each into one target, the first first.
    for i, (node, report) in enumerate(zip(standin_cluster, reports)):
        data_dir = new / f"n{i}" / "data"
        assert report["kind"] == "cassandra" and Path(report["target"]) == data_dir
        details = report["details"]
        assert details["source_node"] == node.name
        assert details["source_host_id"] == node.host_id
        assert details["initial_token"] == ",".join(node.tokens) and details["num_tokens"] == 16
        assert sorted(details["keyspaces"]) == ["inventory", "shop", "system_schema"]
        expected = node.sstables()
        assert expected and restored_sstables(data_dir) == expected
        assert not (data_dir / "system").exists() and not (data_dir / "system_traces").exists()
        yaml = (new / f"n{i}" / "cassandra.yaml").read_text()
        assert f"\ninitial_token: {','.join(node.tokens)}\n" in yaml
        assert "\nauto_bootstrap: false\n" in yaml and "\nnum_tokens: 16\n" in yaml
        assert f"cluster_name: '{CLUSTER_NAME}'" in yaml

    # "latest" is this backup too; the targets are no longer empty.
    with pytest.raises(bt.RestoreRefusedError):
        backed_up.repo.cluster_restore("shop", targets)


def test_cluster_restore_into_two_nodes_is_refused_and_writes_nothing(
    backed_up: ClusterBackup, tmp_path: Path
) -> None:
    new = tmp_path / "new"
    yamls = [yaml_file(new / f"n{i}" / "cassandra.yaml") for i in range(2)]
    before = [yaml.read_text() for yaml in yamls]
    targets = [bt.CassandraRestorer(new / f"n{i}" / "data", yaml=yamls[i]) for i in range(2)]
    with pytest.raises(bt.RestoreRefusedError) as raised:
        backed_up.repo.cluster_restore("shop", targets)
    assert "3 nodes" in str(raised.value)
    assert isinstance(raised.value, bt.BackupError)
    for i, yaml in enumerate(yamls):
        assert not (new / f"n{i}" / "data").exists()
        assert yaml.read_text() == before[i]
    assert sorted(p.name for p in new.rglob("*")) == ["cassandra.yaml", "cassandra.yaml", "n0", "n1"]


def test_a_failed_node_fails_the_cluster_backup(standin_cluster: list[StandInNode], tmp_path: Path) -> None:
    failing = standin_cluster[1]
    failing.set_state("fail_snapshot_after", 2)
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    events: list[Mapping[str, Any]] = []
    report = repo.cluster_backup("shop", [node.source() for node in standin_cluster], on_progress=events.append)

    # Returned, not raised: the state says it failed, and which node.
    assert report["state"] == "FAILED" and report["record"] is None
    states = {node["node"]: node for node in report["nodes"]}
    assert states[failing.name]["state"] == "FAILED"
    assert states[failing.name]["backup"] is None
    error = states[failing.name]["error"]
    assert error is not None and "No space left on device" in error
    for name in ("cass-0", "cass-2"):
        assert states[name]["state"] == "COMPLETED"
    last = events[-1]
    assert last["node"] is None and last["state"] == "FAILED" and last["nodes_failed"] == 1
    assert last["error"] is not None and failing.name in last["error"]
    assert [e for e in events if e["node"] == failing.name][-1]["state"] == "FAILED"

    # No snapshot left behind on any node, the partial one included.
    for node in standin_cluster:
        assert node.snapshot_dirs() == [], node.name
    # Never offered for restore.
    assert repo.cluster_backups("shop") == []
    with pytest.raises(bt.NotFoundError):
        repo.cluster_restore("shop", [bt.CassandraRestorer(tmp_path / f"n{i}") for i in range(3)])


def test_cluster_backup_async_delivers_progress_on_the_loop(
    standin_cluster: list[StandInNode], tmp_path: Path
) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    events: list[Mapping[str, Any]] = []

    async def main() -> tuple[Mapping[str, Any], list[str]]:
        report = await repo.cluster_backup_async(
            "shop", [node.source() for node in standin_cluster], parallelism=3, on_progress=events.append
        )
        records = await repo.cluster_backups_async("shop")
        # Events handed to the loop after the result come on the next turns.
        for _ in range(100):
            if events and events[-1]["node"] is None and events[-1]["state"] == "COMPLETED":
                break
            await asyncio.sleep(0.01)
        return report, [record["id"] for record in records]

    report, ids = asyncio.run(main())
    assert report["state"] == "COMPLETED"
    assert ids == [report["id"]]
    assert events and events[-1]["state"] == "COMPLETED" and events[-1]["percent"] == 100.0


def test_single_node_backup_and_restore_into(tmp_path: Path) -> None:
    (node,) = create_cluster(tmp_path / "cluster", 1)
    repo = bt.Repository.init(str(tmp_path / "repo"), password="pw")
    source = node.source()
    assert isinstance(source, bt.Source) and source.kind == "cassandra"
    assert repr(source) == 'CassandraSource("cass-0")'

    summary = repo.backup(source=source, set="cass-0")
    assert summary.status == "completed"
    backup = summary.backup
    assert backup.kind == "cassandra"
    assert backup.facts["tokens"] == node.tokens and backup.facts["host_id"] == node.host_id
    assert backup.facts["schema_cql"] == "per-table"
    # system_traces is left out by default.
    assert "system_traces" not in backup.facts["keyspaces"]
    assert node.snapshot_dirs() == []

    # Another major version is refused before anything is written.
    refused = tmp_path / "refused" / "data"
    with pytest.raises(bt.RestoreRefusedError):
        repo.restore_into(backup, bt.CassandraRestorer(refused, version="5.0.2"))
    assert not refused.exists()

    data_dir = tmp_path / "new" / "data"
    yaml = yaml_file(tmp_path / "new" / "cassandra.yaml")
    restorer = bt.CassandraRestorer(data_dir, yaml=yaml, version=VERSION)
    assert isinstance(restorer, bt.Restorer) and restorer.kind == "cassandra"
    restored = repo.restore_into("latest", restorer)
    assert restored.kind == "cassandra" and restored.target == data_dir
    assert restored.details["initial_token"] == ",".join(node.tokens)
    assert restored_sstables(data_dir) == node.sstables()
    assert "\nauto_bootstrap: false\n" in yaml.read_text()


def test_cassandra_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(bt.InvalidArgumentError):
        bt.CassandraSource("cass-0", ssh_port=2222)
    with pytest.raises(bt.InvalidArgumentError):
        bt.CassandraSource("cass-0", nodetool="")
    with pytest.raises(bt.InvalidArgumentError):
        bt.CassandraSource("cass-0", nodetool="nodetool 'unclosed")
    with pytest.raises(bt.InvalidArgumentError):
        bt.CassandraSource("cass-0", data_dirs=[])
    remote = bt.CassandraSource(
        "cass-1", ssh="cassandra@10.0.0.7", ssh_port=2222, ssh_key=tmp_path / "id", known_hosts=tmp_path / "kh",
        keyspaces=["shop"], system_traces=True,
    )
    assert remote.kind == "cassandra"

    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    with pytest.raises(bt.InvalidArgumentError):
        repo.cluster_backup("shop", [remote, bt.DirectorySource([tmp_path])])  # type: ignore[list-item]
    with pytest.raises(bt.InvalidArgumentError):
        repo.cluster_backup("shop", [remote], parallelism=0)
    with pytest.raises(bt.InvalidArgumentError):
        repo.cluster_backup("shop", [])
    with pytest.raises(bt.InvalidArgumentError):
        repo.cluster_restore("shop", [bt.DirectoryRestorer(tmp_path / "x")])  # type: ignore[list-item]
    assert repr(bt.CassandraRestorer("/new/data")) == 'CassandraRestorer("/new/data")'
