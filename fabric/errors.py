"""Every error Memory Fabric raises on purpose.

One root (`FabricError`) so callers can catch everything of ours at once; each error
names what it is about (path, byte offset, seq, record id) and, where there is one,
a hint. Errors from sqlite3, botocore or cryptography never cross the public API:
they are translated here, chained with ``from``. Some also subclass the builtin a
caller would naturally catch (``KeyError`` for a missing record, ``ValueError`` for
bad input), so existing ``except`` clauses keep working.
"""

from __future__ import annotations


class FabricError(Exception):
    """Root of every error Memory Fabric raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base


# --- bad input: nothing was written -------------------------------------------------


class InvalidInputError(FabricError, ValueError):
    """An argument is not acceptable; nothing was written."""


class InvalidRecordError(InvalidInputError):
    """Content, metadata, tags, embedding or id of a record is not acceptable."""


class InvalidQueryError(InvalidInputError):
    """A search query, filter or pagination argument is not acceptable."""


class DuplicateRecordError(InvalidInputError):
    """`store` was given a record_id that already names a live record."""

    def __init__(self, record_id: str) -> None:
        super().__init__(f"a record with id {record_id!r} already exists", hint="use update() to change it")
        self.record_id = record_id


class RecordNotFoundError(FabricError, KeyError):
    """An operation that needs an existing record was given an unknown id."""

    def __init__(self, record_id: str) -> None:
        super().__init__(f"no record with id {record_id!r}")
        self.record_id = record_id

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return FabricError.__str__(self)


class ConfigurationError(FabricError, ValueError):
    """Unknown backend, bad config value, unusable data_dir."""


class ReadOnlyError(FabricError):
    """A write was attempted on a read-only view (for example ``as_of``)."""


# --- the log ------------------------------------------------------------------------


class LogError(FabricError):
    """Something is wrong with the event log on disk."""


class CorruptLogError(LogError):
    """A line of the log cannot be trusted. Never skipped silently."""

    def __init__(self, message: str, *, segment: str | None = None, offset: int | None = None,
                 seq: int | None = None, hint: str | None = "run `fabric audit verify` to locate the damage") -> None:
        where = []
        if segment is not None:
            where.append(f"segment {segment}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        if seq is not None:
            where.append(f"seq {seq}")
        full = f"{message} ({', '.join(where)})" if where else message
        super().__init__(full, hint=hint)
        self.segment = segment
        self.offset = offset
        self.seq = seq


class ChainBrokenError(CorruptLogError):
    """The hash chain does not verify: a line was changed, removed or inserted."""


class UnknownEventTypeError(LogError):
    """The log holds an event type this version does not know (written by a newer one)."""

    def __init__(self, event_type: str, *, segment: str | None = None, offset: int | None = None) -> None:
        where = f" at {segment}:{offset}" if segment is not None else ""
        super().__init__(f"unknown event type {event_type!r}{where}",
                         hint="this log was written by a newer Memory Fabric; upgrade to read it")
        self.event_type = event_type


class LogWriteError(LogError, OSError):
    """An append could not be made durable (disk full, read-only, I/O error). Nothing was acknowledged."""


class LogClosedError(LogError):
    """The log (or the fabric holding it) was closed."""


# --- views --------------------------------------------------------------------------


class ViewError(FabricError):
    """A materialized view is unusable; it can always be rebuilt from the log."""


class ViewCorruptError(ViewError):
    """A view's storage is damaged or ahead of the log."""


# --- encryption ---------------------------------------------------------------------


class CryptoError(FabricError):
    """Encryption or decryption failed."""


class WrongKeyError(CryptoError):
    """The key given does not open this store."""


class MissingKeyError(CryptoError):
    """The store is encrypted and no key was given."""


class UnexpectedKeyError(CryptoError):
    """A key was given for a store that was created without encryption."""


class TamperedDataError(CryptoError):
    """A ciphertext failed authentication: changed, truncated or moved to another record."""


class ForgottenRecordError(FabricError, KeyError):
    """The record was forgotten (erased); its content cannot be returned."""

    def __str__(self) -> str:
        return FabricError.__str__(self)


# --- remote storage -----------------------------------------------------------------


class StorageError(FabricError):
    """The object store (S3) failed."""


class StorageUnavailableError(StorageError, ConnectionError):
    """The object store cannot be reached now; writes stay local and are shipped later."""


class StorageAuthError(StorageError, PermissionError):
    """The object store refused the credentials or the bucket does not exist."""


class PreconditionFailedError(StorageError):
    """A conditional put lost: the object already exists."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The object does not exist."""


__all__ = [name for name in dir() if name.endswith("Error")]
