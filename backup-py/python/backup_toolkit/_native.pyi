"""Type stubs of the native module (the binding of the Rust library)."""

import builtins
import os
import pathlib
from collections.abc import Awaitable, Callable, Iterator, AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, final

from typing_extensions import TypedDict, Unpack, disjoint_base

__version__: str
__all__ = [
    "Backup",
    "BackupStats",
    "BackupSummary",
    "CassandraRestorer",
    "CassandraSource",
    "CommandRestorer",
    "CommandSource",
    "DirectoryRestorer",
    "DirectorySource",
    "Entry",
    "EtcdRestorer",
    "EtcdSource",
    "FileReader",
    "ForgetDecision",
    "Hooks",
    "ItemFailure",
    "JobStatus",
    "KeepPolicy",
    "Problem",
    "Progress",
    "PruneReport",
    "MariadbRestorer",
    "MariadbSource",
    "PostgresRestorer",
    "PostgresSource",
    "RedisRestorer",
    "RedisSource",
    "Repository",
    "RestoreSummary",
    "Restorer",
    "ScheduleEvent",
    "Scheduler",
    "Source",
    "StoreRestore",
    "VerifyReport",
    "__version__",
]

_StrPath = str | os.PathLike[str]
_BackupRef = Backup | str
_Status = Literal["completed", "partially_failed", "failed"]
_ProgressCallback = Callable[[Progress], object]
_ClusterState = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED"]

class _ClusterProgress(TypedDict):
    """One progress event of ``Repository.cluster_backup``: of one node
    (``node`` set) or of the whole cluster (``node`` None)."""

    cluster_backup_id: str
    cluster: str
    node: str | None
    state: _ClusterState
    percent: float
    bytes_done: int
    bytes_total: int | None
    nodes_completed: int
    nodes_failed: int
    nodes_total: int
    error: str | None

class _ClusterNodeReport(TypedDict):
    """What happened to one node of a cluster backup."""

    node: str
    set: str
    state: _ClusterState
    backup: str | None
    bytes_total: int
    bytes_read: int
    bytes_added: int
    error: str | None

class _ClusterBackupReport(TypedDict):
    """What ``Repository.cluster_backup`` did: ``state`` is ``COMPLETED``
    only when every node's backup and the group record were stored."""

    id: str
    cluster: str
    state: Literal["COMPLETED", "FAILED"]
    nodes: list[_ClusterNodeReport]
    record: str | None

class _RecordedNode(TypedDict):
    """One node of a completed cluster backup, as its record lists it."""

    node: str
    set: str
    backup: str
    host_id: str
    datacenter: str
    rack: str
    tokens: list[str]
    cassandra_version: str

class _ClusterRecord(TypedDict):
    """A completed cluster backup (``Repository.cluster_backups``)."""

    id: str
    cluster: str
    store: str
    nodes: list[_RecordedNode]
    record: str

class _ClusterNodeRestore(TypedDict):
    """What ``Repository.cluster_restore`` restored into one target."""

    kind: str
    target: str
    bytes: int
    details: dict[str, Any]

_ClusterProgressCallback = Callable[[_ClusterProgress], object]

class _StorageOptions(TypedDict, total=False):
    """The storage options of remote repositories; each defaults to its
    ``BACKUP_*`` environment variable, as for backupctl."""

    endpoint: str | None
    region: str | None
    allow_http: bool | None
    sse_kms_key_id: str | None
    sse_c_key_file: _StrPath | None
    azure_emulator: bool | None
    ssh_key: _StrPath | None
    ssh_key_passphrase_file: _StrPath | None
    known_hosts: _StrPath | None
    host_key_fingerprint: str | None

@final
class ItemFailure:
    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def message(self) -> str: ...

@final
class BackupStats:
    @property
    def files(self) -> int: ...
    @property
    def dirs(self) -> int: ...
    @property
    def symlinks(self) -> int: ...
    @property
    def files_unchanged(self) -> int: ...
    @property
    def bytes_total(self) -> int: ...
    @property
    def bytes_read(self) -> int: ...
    @property
    def bytes_added(self) -> int: ...
    @property
    def chunks_added(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def duration_ms(self) -> int: ...

@final
class Backup:
    @property
    def id(self) -> str: ...
    @property
    def short_id(self) -> str: ...
    @property
    def set(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def started(self) -> datetime: ...
    @property
    def finished(self) -> datetime: ...
    @property
    def writer(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def paths(self) -> list[str]: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def facts(self) -> dict[str, Any]: ...
    @property
    def stats(self) -> BackupStats: ...
    @property
    def status(self) -> Literal["completed", "partially_failed"]: ...
    @property
    def errors(self) -> list[ItemFailure]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class BackupSummary:
    @property
    def backup(self) -> Backup: ...
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> _Status: ...
    @property
    def failures(self) -> list[ItemFailure]: ...
    @property
    def stats(self) -> BackupStats: ...

@final
class RestoreSummary:
    @property
    def status(self) -> _Status: ...
    @property
    def failures(self) -> list[ItemFailure]: ...
    @property
    def files(self) -> int: ...
    @property
    def dirs(self) -> int: ...
    @property
    def symlinks(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def deleted(self) -> int: ...
    @property
    def verified(self) -> int: ...

@final
class StoreRestore:
    @property
    def kind(self) -> str: ...
    @property
    def target(self) -> pathlib.Path: ...
    @property
    def bytes(self) -> int: ...
    @property
    def details(self) -> dict[str, Any]: ...

@final
class Problem:
    @property
    def object(self) -> str: ...
    @property
    def message(self) -> str: ...

@final
class VerifyReport:
    @property
    def ok(self) -> bool: ...
    @property
    def errors(self) -> list[Problem]: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def backups(self) -> int: ...
    @property
    def indexes(self) -> int: ...
    @property
    def packs(self) -> int: ...
    @property
    def packs_read(self) -> int: ...
    @property
    def blobs_checked(self) -> int: ...
    @property
    def bytes_read(self) -> int: ...
    def __bool__(self) -> bool: ...

@final
class ForgetDecision:
    @property
    def backup(self) -> Backup: ...
    @property
    def keep(self) -> bool: ...
    @property
    def reasons(self) -> list[str]: ...

@final
class PruneReport:
    @property
    def packs_before(self) -> int: ...
    @property
    def bytes_before(self) -> int: ...
    @property
    def packs_marked(self) -> int: ...
    @property
    def packs_repacked(self) -> int: ...
    @property
    def packs_written(self) -> int: ...
    @property
    def packs_deleted(self) -> int: ...
    @property
    def bytes_deleted(self) -> int: ...
    @property
    def packs_rescued(self) -> int: ...
    @property
    def marks_waiting(self) -> int: ...
    @property
    def marks_postponed(self) -> int: ...

@final
class Entry:
    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> Literal["file", "dir", "symlink"]: ...
    @property
    def size(self) -> int: ...
    @property
    def mode(self) -> int: ...
    @property
    def mtime(self) -> datetime: ...
    @property
    def target(self) -> str | None: ...

@final
class Progress:
    @property
    def operation(self) -> str: ...
    @property
    def phase(self) -> Literal["running", "completed", "partially_failed", "failed"]: ...
    @property
    def files_done(self) -> int: ...
    @property
    def files_total(self) -> int | None: ...
    @property
    def bytes_done(self) -> int: ...
    @property
    def bytes_total(self) -> int | None: ...
    @property
    def percent(self) -> float | None: ...
    @property
    def current(self) -> str | None: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def failure(self) -> ItemFailure | None: ...

@final
class KeepPolicy:
    def __new__(
        cls,
        *,
        last: int | None = None,
        hourly: int | None = None,
        daily: int | None = None,
        weekly: int | None = None,
        monthly: int | None = None,
        yearly: int | None = None,
        within: str | None = None,
        within_hourly: str | None = None,
        within_daily: str | None = None,
        within_weekly: str | None = None,
        within_monthly: str | None = None,
        within_yearly: str | None = None,
        tags: Sequence[str] = ...,
        ttl: str | None = None,
    ) -> KeepPolicy: ...
    @property
    def empty(self) -> bool: ...

@disjoint_base
class Source:
    @property
    def kind(self) -> str: ...

@final
class DirectorySource(Source):
    def __new__(
        cls,
        paths: Sequence[_StrPath],
        *,
        exclude: Sequence[str] = ...,
        iexclude: Sequence[str] = ...,
        exclude_file: Sequence[_StrPath] = ...,
        iexclude_file: Sequence[_StrPath] = ...,
        exclude_if_present: Sequence[str] = ...,
        exclude_caches: bool = False,
        exclude_larger_than: int | None = None,
        one_file_system: bool = False,
    ) -> DirectorySource: ...

@final
class CommandSource(Source):
    def __new__(cls, argv: Sequence[str], *, file_name: str | None = None) -> CommandSource: ...

@final
class EtcdSource(Source):
    def __new__(
        cls,
        endpoints: Sequence[str],
        *,
        ca: _StrPath | None = None,
        cert: _StrPath | None = None,
        key: _StrPath | None = None,
        user: str | None = None,
        password: str | None = None,
        file_name: str | None = None,
    ) -> EtcdSource: ...

@final
class RedisSource(Source):
    def __new__(
        cls,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        data_dir: _StrPath | None = None,
        replication: bool = False,
        save_timeout: timedelta | None = None,
        file_name: str | None = None,
    ) -> RedisSource: ...

@final
class PostgresSource(Source):
    def __new__(
        cls,
        url: str,
        *,
        mode: Literal["physical", "logical"] = "physical",
        password: str | None = None,
        bin_dir: _StrPath | None = None,
        databases: Sequence[str] = ...,
        jobs: int = 1,
        globals: bool = True,
    ) -> PostgresSource: ...

@final
class MariadbSource(Source):
    def __new__(
        cls,
        url: str,
        *,
        mode: Literal["logical", "physical"] = "logical",
        password: str | None = None,
        bin_dir: _StrPath | None = None,
        databases: Sequence[str] = ...,
        staging_dir: _StrPath | None = None,
    ) -> MariadbSource: ...

@final
class CassandraSource(Source):
    """A Cassandra node: its ``nodetool snapshot``, read locally or over SSH."""

    def __new__(
        cls,
        name: str,
        *,
        nodetool: str = "nodetool",
        cqlsh: str | None = "cqlsh",
        data_dirs: Sequence[_StrPath] | None = None,
        keyspaces: Sequence[str] | None = None,
        system_traces: bool = False,
        ssh: str | None = None,
        ssh_port: int | None = None,
        ssh_key: _StrPath | None = None,
        known_hosts: _StrPath | None = None,
    ) -> CassandraSource: ...

@final
class Hooks:
    def __new__(
        cls,
        *,
        before: Sequence[Sequence[str]] = ...,
        after: Sequence[Sequence[str]] = ...,
        timeout: timedelta | None = None,
        on_error: Literal["fail", "continue"] = "fail",
    ) -> Hooks: ...

@disjoint_base
class Restorer:
    @property
    def kind(self) -> str: ...

@final
class DirectoryRestorer(Restorer):
    def __new__(cls, target: _StrPath, *, include: Sequence[str] = ...) -> DirectoryRestorer: ...

@final
class CommandRestorer(Restorer):
    def __new__(cls, argv: Sequence[str]) -> CommandRestorer: ...

@final
class EtcdRestorer(Restorer):
    def __new__(
        cls,
        data_dir: _StrPath,
        *,
        name: str | None = None,
        initial_cluster: str | None = None,
        initial_cluster_token: str | None = None,
        initial_advertise_peer_urls: str | None = None,
        tool: _StrPath | None = None,
    ) -> EtcdRestorer: ...

@final
class RedisRestorer(Restorer):
    def __new__(
        cls,
        data_dir: _StrPath,
        *,
        dbfilename: str | None = None,
        config: _StrPath | None = None,
        server: _StrPath | None = None,
    ) -> RedisRestorer: ...

@final
class PostgresRestorer(Restorer):
    def __new__(
        cls,
        *,
        data_dir: _StrPath | None = None,
        url: str | None = None,
        bin_dir: _StrPath | None = None,
        password: str | None = None,
        restore_command: str | None = None,
        target_time: datetime | None = None,
        target_lsn: str | None = None,
        target_latest: bool = False,
    ) -> PostgresRestorer: ...

@final
class MariadbRestorer(Restorer):
    def __new__(
        cls,
        *,
        data_dir: _StrPath | None = None,
        url: str | None = None,
        bin_dir: _StrPath | None = None,
        password: str | None = None,
    ) -> MariadbRestorer: ...

@final
class CassandraRestorer(Restorer):
    """A Cassandra node backup into a stopped, never started node."""

    def __new__(
        cls, data_dir: _StrPath, *, yaml: _StrPath | None = None, version: str | None = None
    ) -> CassandraRestorer: ...

@final
class FileReader:
    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mode(self) -> int: ...
    def read(self, size: int | None = None) -> bytes: ...
    def read_async(self, size: int | None = None) -> Awaitable[bytes]: ...
    def close(self) -> None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def __anext__(self) -> Awaitable[bytes]: ...
    def __enter__(self) -> FileReader: ...
    def __exit__(self, *_exc: object) -> bool: ...

@final
class Repository:
    @classmethod
    def init(
        cls,
        url: str,
        *,
        password: str | bytes | None = None,
        password_file: _StrPath | None = None,
        encryption: bool = True,
        **storage_options: Unpack[_StorageOptions],
    ) -> Repository: ...
    @classmethod
    def init_async(
        cls,
        url: str,
        *,
        password: str | bytes | None = None,
        password_file: _StrPath | None = None,
        encryption: bool = True,
        **storage_options: Unpack[_StorageOptions],
    ) -> Awaitable[Repository]: ...
    @classmethod
    def open(
        cls,
        url: str,
        *,
        password: str | bytes | None = None,
        password_file: _StrPath | None = None,
        **storage_options: Unpack[_StorageOptions],
    ) -> Repository: ...
    @classmethod
    def open_async(
        cls,
        url: str,
        *,
        password: str | bytes | None = None,
        password_file: _StrPath | None = None,
        **storage_options: Unpack[_StorageOptions],
    ) -> Awaitable[Repository]: ...
    @property
    def location(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def encrypted(self) -> bool: ...
    @property
    def format_version(self) -> int: ...
    def backup(
        self,
        paths: _StrPath | Sequence[_StrPath] | None = None,
        *,
        set: str = "default",
        tags: Mapping[str, str] | None = None,
        time: datetime | None = None,
        source: Source | None = None,
        hooks: Hooks | None = None,
        check_collision: bool = False,
        writer: str | None = None,
        on_progress: _ProgressCallback | None = None,
    ) -> BackupSummary: ...
    def backup_async(
        self,
        paths: _StrPath | Sequence[_StrPath] | None = None,
        *,
        set: str = "default",
        tags: Mapping[str, str] | None = None,
        time: datetime | None = None,
        source: Source | None = None,
        hooks: Hooks | None = None,
        check_collision: bool = False,
        writer: str | None = None,
        on_progress: _ProgressCallback | None = None,
    ) -> Awaitable[BackupSummary]: ...
    def list(self, set: str | None = None) -> builtins.list[Backup]: ...
    def list_async(self, set: str | None = None) -> Awaitable[builtins.list[Backup]]: ...
    def find(self, selector: str = "latest", set: str | None = None) -> Backup: ...
    def find_async(self, selector: str = "latest", set: str | None = None) -> Awaitable[Backup]: ...
    def ls(self, backup: _BackupRef) -> builtins.list[Entry]: ...
    def ls_async(self, backup: _BackupRef) -> Awaitable[builtins.list[Entry]]: ...
    def restore(
        self,
        backup: _BackupRef,
        target: _StrPath,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        iexclude: Sequence[str] | None = None,
        overwrite: Literal["always", "if-changed", "if-newer", "never"] = "always",
        delete: bool = False,
        verify: bool = False,
        on_progress: _ProgressCallback | None = None,
    ) -> RestoreSummary: ...
    def restore_async(
        self,
        backup: _BackupRef,
        target: _StrPath,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        iexclude: Sequence[str] | None = None,
        overwrite: Literal["always", "if-changed", "if-newer", "never"] = "always",
        delete: bool = False,
        verify: bool = False,
        on_progress: _ProgressCallback | None = None,
    ) -> Awaitable[RestoreSummary]: ...
    def restore_into(self, backup: _BackupRef, restorer: Restorer) -> StoreRestore: ...
    def restore_into_async(self, backup: _BackupRef, restorer: Restorer) -> Awaitable[StoreRestore]: ...
    def cluster_backup(
        self,
        cluster: str,
        nodes: Sequence[CassandraSource],
        *,
        parallelism: int = 2,
        on_progress: _ClusterProgressCallback | None = None,
        writer: str | None = None,
    ) -> _ClusterBackupReport:
        """Backs up every node of a Cassandra cluster under one cluster
        backup id; a FAILED cluster backup is returned (``state``), not
        raised."""
    def cluster_backup_async(
        self,
        cluster: str,
        nodes: Sequence[CassandraSource],
        *,
        parallelism: int = 2,
        on_progress: _ClusterProgressCallback | None = None,
        writer: str | None = None,
    ) -> Awaitable[_ClusterBackupReport]:
        """``cluster_backup``, as an awaitable."""
    def cluster_backups(self, cluster: str) -> builtins.list[_ClusterRecord]:
        """The completed cluster backups of ``cluster``, oldest first."""
    def cluster_backups_async(self, cluster: str) -> Awaitable[builtins.list[_ClusterRecord]]:
        """``cluster_backups``, as an awaitable."""
    def cluster_restore(
        self, cluster: str, targets: Sequence[CassandraRestorer], backup: str = "latest"
    ) -> builtins.list[_ClusterNodeRestore]:
        """Restores a completed cluster backup into as many new nodes;
        raises ``RestoreRefusedError`` before writing anything."""
    def cluster_restore_async(
        self, cluster: str, targets: Sequence[CassandraRestorer], backup: str = "latest"
    ) -> Awaitable[builtins.list[_ClusterNodeRestore]]:
        """``cluster_restore``, as an awaitable."""
    def read_file(self, backup: _BackupRef, path: str) -> bytes: ...
    def read_file_async(self, backup: _BackupRef, path: str) -> Awaitable[bytes]: ...
    def open_file(self, backup: _BackupRef, path: str) -> FileReader: ...
    def open_file_async(self, backup: _BackupRef, path: str) -> Awaitable[FileReader]: ...
    def verify(
        self,
        *,
        read_data: bool = False,
        read_data_subset: float | None = None,
        on_progress: _ProgressCallback | None = None,
    ) -> VerifyReport: ...
    def verify_async(
        self,
        *,
        read_data: bool = False,
        read_data_subset: float | None = None,
        on_progress: _ProgressCallback | None = None,
    ) -> Awaitable[VerifyReport]: ...
    def forget(
        self, policy: KeepPolicy, *, set: str | None = None, dry_run: bool = False
    ) -> builtins.list[ForgetDecision]: ...
    def forget_async(
        self, policy: KeepPolicy, *, set: str | None = None, dry_run: bool = False
    ) -> Awaitable[builtins.list[ForgetDecision]]: ...
    def prune(
        self,
        *,
        grace: timedelta | None = None,
        dry_run: bool = False,
        on_progress: _ProgressCallback | None = None,
    ) -> PruneReport: ...
    def prune_async(
        self,
        *,
        grace: timedelta | None = None,
        dry_run: bool = False,
        on_progress: _ProgressCallback | None = None,
    ) -> Awaitable[PruneReport]: ...

@final
class JobStatus:
    @property
    def name(self) -> str: ...
    @property
    def cron(self) -> str: ...
    @property
    def running_since(self) -> datetime | None: ...
    @property
    def last_run_started(self) -> datetime | None: ...
    @property
    def last_run_finished(self) -> datetime | None: ...
    @property
    def last_outcome(self) -> Literal["succeeded", "failed", "collision", "cancelled", "other"] | None: ...
    @property
    def last_message(self) -> str | None: ...
    @property
    def last_success(self) -> datetime | None: ...
    @property
    def next_run(self) -> datetime | None: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def runs(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def skipped_overlaps(self) -> int: ...
    @property
    def missed(self) -> int: ...
    @property
    def paused(self) -> str | None: ...
    @property
    def stale(self) -> bool: ...

@final
class ScheduleEvent:
    @property
    def kind(self) -> str: ...
    @property
    def job(self) -> str: ...
    @property
    def time(self) -> datetime | None: ...
    @property
    def message(self) -> str | None: ...

@final
class Scheduler:
    def __new__(cls) -> Scheduler: ...
    def add_backup(
        self,
        name: str,
        cron: str,
        repository: Repository,
        paths: _StrPath | Sequence[_StrPath] | None = None,
        *,
        source: Source | None = None,
        hooks: Hooks | None = None,
        set: str = "default",
        keep: KeepPolicy | None = None,
        prune: bool = False,
        time_zone: str = "UTC",
        jitter: timedelta | None = None,
        stale_after_grace: timedelta | None = None,
    ) -> None: ...
    def add_callable(
        self,
        name: str,
        cron: str,
        function: Callable[[], object],
        *,
        time_zone: str = "UTC",
        jitter: timedelta | None = None,
        stale_after_grace: timedelta | None = None,
    ) -> None: ...
    def start(self) -> None: ...
    def run(
        self,
        *,
        duration: timedelta | None = None,
        on_event: Callable[[ScheduleEvent], object] | None = None,
    ) -> None: ...
    def trigger(self, name: str) -> None: ...
    def pause(self, name: str) -> None: ...
    def resume(self, name: str) -> None: ...
    def status(self) -> list[JobStatus]: ...
    def stop(self, *, cancel: bool = False) -> None: ...
