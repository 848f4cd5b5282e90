"""The exceptions of backup_toolkit: one tree, rooted at :class:`BackupError`.

Every error the library raises is one of these, carrying the library's own
message (with its context: the object key, the path, the store's words) and,
where it helps a program decide, the facts as attributes.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AlreadyExistsError",
    "BackupError",
    "CancelledError",
    "CollisionError",
    "CorruptionError",
    "InvalidArgumentError",
    "NotFoundError",
    "RestoreFailedError",
    "RestoreRefusedError",
    "SnapshotError",
    "StorageError",
    "UnsafePathError",
    "UnsupportedVersionError",
    "WrongPasswordError",
]


class BackupError(Exception):
    """Anything that went wrong in the library.

    ``str(error)`` is the library's message; the facts named in ``facts``
    become attributes of the exception.
    """

    #: The library's message, with its context.
    message: str

    def __init__(self, message: str = "", facts: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        for name, value in (facts or {}).items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return self.message


class NotFoundError(BackupError, FileNotFoundError):
    """A repository, backup, object or file that does not exist."""

    #: The object key, backup selector, location or path not found.
    name: str | None = None


class AlreadyExistsError(BackupError, FileExistsError):
    """A repository (or object) already exists where one was to be created."""

    #: The location or key found.
    name: str | None = None


class WrongPasswordError(BackupError):
    """The password opens no key of the repository, or a password is missing
    (the repository is encrypted) or superfluous (it is not)."""


class CorruptionError(BackupError):
    """A stored object failed its integrity check or could not be decoded."""

    #: The key of the damaged object.
    object: str | None = None
    #: The byte offset in it where the damage starts.
    offset: int | None = None


class UnsupportedVersionError(BackupError):
    """The repository's format version is one this build does not read."""

    #: The version found.
    found: int | None = None


class CollisionError(BackupError):
    """The newest backup of the set was written by another writer."""

    #: The backup set.
    set: str | None = None
    #: This writer.
    writer: str | None = None
    #: The writer of the newest backup.
    other_writer: str | None = None
    #: The id of that backup.
    backup: str | None = None


class StorageError(BackupError):
    """The storage could not be reached or refused an operation."""

    #: Whether retrying the same call may succeed (a timeout, a dropped
    #: connection) or not (wrong credentials, no permission).
    temporary: bool = False
    #: The operation (``put``, ``get``, ``list``, ...), when one failed.
    operation: str | None = None
    #: The object key, prefix or local path involved.
    key: str | None = None


class SnapshotError(BackupError):
    """A data store could not give a consistent snapshot; the message is the
    store's own."""

    #: The source (an etcd endpoint, a Redis URL, a command).
    source: str | None = None
    #: What the store said.
    detail: str | None = None


class RestoreFailedError(BackupError):
    """A store's own program failed while a backup was restored into the
    store (``pg_restore``, ``mariadb``, ``mariadb-backup --prepare``); the
    message ends with the program's own."""

    #: The target: a data directory, a server.
    target: str | None = None
    #: The program's exit status and the end of its standard error.
    detail: str | None = None


class RestoreRefusedError(BackupError):
    """A restore into a store was refused before anything was written (a
    backup of another kind, a version the store cannot take, a target that
    is not empty)."""

    #: The target: a data directory, a server.
    target: str | None = None
    #: Why, and what to do.
    reason: str | None = None


class UnsafePathError(BackupError):
    """A path in a backup or a restore request that would leave its tree."""

    #: The path refused.
    path: str | None = None


class CancelledError(BackupError):
    """The operation was cancelled; it stopped and cleaned up."""


class InvalidArgumentError(BackupError, ValueError):
    """An argument the library cannot use."""
