"""Reading the stores IOA Core's memory fabric (the seed) left behind, so users move over in one command.

Formats are described in ``docs/seed-formats.md``. In short, every seed backend holds
whole records (``MemoryRecordV1`` as JSON), never events:

- local_jsonl: ``memory_run_<8 hex>.jsonl`` files, one per process run; a re-store of an
  id appends another full line, so one id can have many lines across files;
- sqlite: ``memory_run_<8 hex>.db`` (or any name) with a ``memory_records`` table; its
  FTS index is known to be stale and is never read;
- s3: one ``<prefix><id>.json`` object per record (here from a directory of downloaded
  objects, or listed in a bucket through `fabric.objectstore`).

Versions of one id are merged as the seed's readers would have wanted: the latest record
``timestamp`` wins; on a tie the later line (or rowid), then the newer file. Each
surviving record becomes one ``Stored`` event carrying the seed's ``timestamp``.

Nothing is dropped silently. A row that cannot be read (torn or bad JSON, a bad enum, a
bad id, ciphertext without the key) is a `Problem` naming its location (``file:line``
with the byte offset, ``db#rowid``, or the object key); if it was the newest version of
its record, the record is withheld rather than imported in an older version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from fabric.errors import FabricError, InvalidRecordError, StorageError
from fabric.log import SEGMENT_PREFIX, SEGMENT_SUFFIX, parse_segment_name
from fabric.model import (
    check_content,
    check_embedding,
    check_id,
    check_memory_type,
    check_storage_tier,
    check_tags,
    datetime_to_us,
    encode_metadata,
)

#: Metadata keys the seed's facade adds to every record (not the user's).
SEED_METADATA_KEYS: Final = ("tiering_4d", "encryption_mode")
SEED_SALT: Final = b"ioa_memory_fabric_salt"
SEED_KDF_ITERATIONS: Final = 100_000
_SEED_RUN: Final = re.compile(r"^memory_run_[0-9a-f]{8}\.jsonl$")
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_SQLITE_SUFFIXES: Final = (".db", ".sqlite", ".sqlite3")
_NONCE: Final = 12
_TAG: Final = 16
_FALLBACK_DIR: Final = "s3_fallback"


class SeedImportError(FabricError):
    """A seed row could not be read and ``strict`` was asked for: nothing was imported."""


@dataclass(frozen=True)
class Problem:
    """A row that was not imported, and why."""

    where: str
    reason: str
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "reason": self.reason, "id": self.id}


@dataclass
class SeedRecord:
    """One version of a record as the seed wrote it, checked and ready to store."""

    id: str
    content: str
    metadata: dict[str, Any]
    timestamp: int  # µs
    tags: list[str]
    memory_type: str
    storage_tier: str
    access_count: int
    last_accessed: int | None
    embedding: Any
    where: str
    order: tuple[int, int, int]  # (timestamp, file mtime, line/rowid): the merge order
    note: str | None = None

    def to_item(self) -> dict[str, Any]:
        """What `MemoryFabric.store_many` takes."""
        return {"record_id": self.id, "content": self.content, "metadata": self.metadata, "tags": self.tags,
                "memory_type": self.memory_type, "storage_tier": self.storage_tier, "embedding": self.embedding,
                "timestamp": self.timestamp / 1_000_000, "access_count": self.access_count,
                "last_accessed": None if self.last_accessed is None else self.last_accessed / 1_000_000}


@dataclass
class Source:
    where: str
    kind: str  # local_jsonl, sqlite, s3
    rows: int = 0


class _RowError(Exception):
    def __init__(self, reason: str, record_id: str | None = None, ts: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record_id = record_id
        self.ts = ts


def seed_key(passphrase: str) -> bytes:
    """The seed's AES key: PBKDF2-HMAC-SHA256 with its fixed salt (the same for every store)."""
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode("utf-8"), SEED_SALT, SEED_KDF_ITERATIONS, 32)


def _parse_iso(value: Any, what: str) -> int:
    if not isinstance(value, str):
        raise _RowError(f"{what} is {type(value).__name__}, not an ISO time")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _RowError(f"{what} {value!r} is not an ISO time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return datetime_to_us(dt)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


class SeedReader:
    """Reads seed stores into checked `SeedRecord` versions, collecting `Problem` s as it goes."""

    def __init__(self, *, key: str | None = None, keep_seed_metadata: bool = False, strict: bool = False) -> None:
        self._aes: Any = None
        if key:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

            self._aes = AESGCM(seed_key(key))
        self.keep_seed_metadata = keep_seed_metadata
        self.strict = strict
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.sources: list[Source] = []
        self.decrypted = 0
        self.plaintext_under_marker = 0
        #: ids with an unreadable version -> that version's timestamp (None: unknown)
        self.bad_versions: dict[str, list[int | None]] = {}

    # --- reporting --------------------------------------------------------------------------

    def _problem(self, where: str, reason: str, record_id: str | None = None) -> None:
        problem = Problem(where, reason, record_id)
        if self.strict:
            raise SeedImportError(f"{where}: {reason}", hint="fix or remove that row, or run without --strict "
                                                            "to import the rest and list every bad row")
        self.problems.append(problem)

    # --- finding inputs ---------------------------------------------------------------------

    def read_path(self, path: str | os.PathLike[str]) -> Iterator[SeedRecord]:
        """Every record version under ``path``: a run file, a database, an object file, or a directory of them."""
        p = Path(path)
        if not p.exists():
            from fabric.errors import ConfigurationError  # noqa: PLC0415

            raise ConfigurationError(f"seed path {str(p)!r} does not exist")
        if p.is_file():
            yield from self._read_file(p, explicit=True)
            return
        yield from self._read_dir(p)

    def _read_dir(self, root: Path) -> Iterator[SeedRecord]:
        for child in sorted(root.iterdir()):
            if child.is_file():
                yield from self._read_file(child, explicit=False)
        fallback = root / _FALLBACK_DIR
        if fallback.is_dir():
            for child in sorted(fallback.iterdir()):
                if child.is_file() and child.suffix == ".jsonl":
                    yield from self._read_file(child, explicit=False)
        for obj in sorted(root.rglob("*.json")):
            if obj.is_file():
                rel = obj.relative_to(root).as_posix()
                yield from self.read_object(f"{root.as_posix().rstrip('/')}/{rel}", obj.read_bytes(),
                                            mtime=obj.stat().st_mtime_ns)

    def _read_file(self, p: Path, *, explicit: bool) -> Iterator[SeedRecord]:
        name = p.name
        if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX) and parse_segment_name(name) is not None:
            self.notes.append(f"{p}: a Memory Fabric log segment, not a seed store: not imported")
            return
        if _SEED_RUN.match(name) or (explicit and name.endswith(".jsonl")):
            yield from self.read_jsonl(p)
        elif name.endswith(_SQLITE_SUFFIXES) or (explicit and _is_sqlite(p)):
            yield from self.read_sqlite(p)
        elif explicit and name.endswith(".json"):
            yield from self.read_object(str(p), p.read_bytes(), mtime=p.stat().st_mtime_ns)
        elif explicit:
            self._problem(str(p), "not a seed store file (.jsonl run file, .db database or .json object)")

    # --- local_jsonl ------------------------------------------------------------------------

    def read_jsonl(self, path: Path) -> Iterator[SeedRecord]:
        """Lines of a run file; a bad line is reported with its line number and byte offset."""
        source = Source(str(path), "local_jsonl")
        self.sources.append(source)
        data = path.read_bytes()
        mtime = path.stat().st_mtime_ns
        offset = 0
        number = 0
        while offset < len(data):
            nl = data.find(b"\n", offset)
            end = len(data) if nl < 0 else nl
            line = data[offset:end]
            number += 1
            where = f"{path}:{number} (byte {offset})"
            if line.strip():
                source.rows += 1
                torn = nl < 0
                try:
                    obj = json.loads(line.decode("utf-8"))
                except (ValueError, UnicodeDecodeError) as e:
                    reason = "torn last line (no newline, incomplete JSON)" if torn else f"not valid JSON: {e}"
                    self._problem(where, reason)
                else:
                    rec = self._row(obj, where, (mtime, number))
                    if rec is not None:
                        yield rec
            offset = end + 1

    # --- sqlite -----------------------------------------------------------------------------

    def read_sqlite(self, path: Path) -> Iterator[SeedRecord]:
        """Rows of ``memory_records`` (never the FTS index, which the seed leaves stale)."""
        try:
            conn = _connect_ro(path)
        except sqlite3.Error as e:
            self._problem(str(path), f"cannot open as SQLite: {e}")
            return
        try:
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            except sqlite3.Error as e:
                self._problem(str(path), f"not a readable SQLite database: {e}")
                return
            if "memory_records" not in tables:
                self.notes.append(f"{path}: no memory_records table (not a seed database): not imported")
                return
            source = Source(str(path), "sqlite")
            self.sources.append(source)
            mtime = path.stat().st_mtime_ns
            cur = conn.execute("SELECT rowid AS _rowid, * FROM memory_records ORDER BY rowid")
            names = [d[0] for d in cur.description]
            for row in cur:
                source.rows += 1
                cells = dict(zip(names, row, strict=True))
                rowid = int(cells.pop("_rowid"))
                where = f"{path}#rowid {rowid}"
                try:
                    obj = _sqlite_row(cells)
                except _RowError as e:
                    self._problem(where, e.reason, cells.get("id") if isinstance(cells.get("id"), str) else None)
                    continue
                rec = self._row(obj, where, (mtime, rowid))
                if rec is not None:
                    yield rec
        finally:
            conn.close()

    # --- s3 ---------------------------------------------------------------------------------

    def read_object(self, where: str, body: bytes, *, mtime: int = 0) -> Iterator[SeedRecord]:
        """One S3 object body (the record's JSON)."""
        self.sources.append(Source(where, "s3", 1))
        try:
            obj = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            self._problem(where, f"not valid JSON: {e}")
            return
        rec = self._row(obj, where, (mtime, 0))
        if rec is not None:
            yield rec

    def read_bucket(self, bucket: str, prefix: str = "", region: str | None = None) -> Iterator[SeedRecord]:
        """Every ``<prefix>*.json`` object of a bucket (all pages, not the seed's first 1,000)."""
        from fabric.objectstore import S3ObjectStore  # noqa: PLC0415 - boto3 only when asked

        store = S3ObjectStore(bucket, "", region=region)
        try:
            for key in store.list(prefix):
                if not key.endswith(".json"):
                    continue
                where = f"s3://{bucket}/{key}"
                try:
                    body = store.get(key)
                except StorageError as e:
                    self._problem(where, f"cannot read the object: {e}")
                    continue
                yield from self.read_object(where, body)
        finally:
            store.close()

    # --- one row ----------------------------------------------------------------------------

    def _row(self, obj: Any, where: str, order: tuple[int, int]) -> SeedRecord | None:
        try:
            return self._check(obj, where, order)
        except _RowError as e:
            rid = e.record_id
            self._problem(where, e.reason, rid)
            if rid is not None:
                self.bad_versions.setdefault(rid, []).append(e.ts)
            return None

    def _check(self, obj: Any, where: str, order: tuple[int, int]) -> SeedRecord:
        if not isinstance(obj, dict):
            raise _RowError(f"a record must be a JSON object, not {type(obj).__name__}")
        raw_id = obj.get("id")
        rid_hint = raw_id if isinstance(raw_id, str) else None
        ts: int | None = None
        try:
            ts = _parse_iso(obj.get("timestamp"), "timestamp")
            try:
                rid = check_id(raw_id)
            except InvalidRecordError as e:
                raise _RowError(f"id {raw_id!r} cannot be used: {e}") from None
            if "content" not in obj:
                raise _RowError("no content")
            content = obj["content"]
            note = None
            metadata = obj.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise _RowError(f"metadata is {type(metadata).__name__}, not a JSON object")
            if metadata.get("encryption_mode") == "aes-gcm" and isinstance(content, str):
                content, note = self._decrypt(content, rid)
            last = obj.get("last_accessed")
            access = obj.get("access_count") or 0
            if isinstance(access, bool) or not isinstance(access, int) or access < 0:
                raise _RowError(f"access_count {access!r} is not a count")
            embedding = obj.get("embedding")
            if isinstance(embedding, dict):
                vector = embedding.get("vector")
                dim = embedding.get("dimension")
                if isinstance(vector, list) and isinstance(dim, int) and dim != len(vector):
                    note = f"embedding dimension {dim} did not match its {len(vector)} values: set to {len(vector)}"
                embedding = {"vector": vector, "model": embedding.get("model") or ""}
            if not _finite(metadata):
                raise _RowError("metadata holds NaN or Infinity, which JSON (and Memory Fabric) cannot store")
            rec = SeedRecord(
                id=rid, content=check_content(content),
                metadata=self._user_metadata(metadata, ts, obj.get("memory_type")),
                timestamp=ts, tags=check_tags(obj.get("tags") or []),
                memory_type=check_memory_type(obj.get("memory_type", "conversation")),
                storage_tier=check_storage_tier(obj.get("storage_tier", "hot")),
                access_count=access, last_accessed=None if last is None else _parse_iso(last, "last_accessed"),
                embedding=check_embedding(embedding), where=where, order=(ts, order[0], order[1]), note=note)
            encode_metadata(rec.metadata)
            return rec
        except InvalidRecordError as e:
            raise _RowError(str(e), rid_hint, ts) from None
        except _RowError as e:
            e.record_id = e.record_id or rid_hint
            e.ts = e.ts if e.ts is not None else ts
            raise

    def _decrypt(self, content: str, rid: str) -> tuple[str, str | None]:
        """Content marked ``aes-gcm``: ciphertext to decrypt, or plaintext the seed wrote under the marker."""
        try:
            blob = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            blob = b""
        if len(blob) < _NONCE + _TAG:
            self.plaintext_under_marker += 1
            return content, "marked aes-gcm but stored as plaintext by the seed: imported as is"
        if self._aes is None:
            raise _RowError("content is encrypted by the seed; pass its passphrase with --key", rid)
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415

        try:
            text = self._aes.decrypt(blob[:_NONCE], blob[_NONCE:], None).decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise _RowError("content does not decrypt with the given --key (wrong key or damaged)", rid) from None
        self.decrypted += 1
        return text, None

    def _user_metadata(self, metadata: dict[str, Any], ts: int, memory_type: Any) -> dict[str, Any]:
        """The caller's metadata: without the keys the seed's facade put there (unless asked to keep them)."""
        if self.keep_seed_metadata:
            return dict(metadata)
        out = {k: v for k, v in metadata.items() if k not in SEED_METADATA_KEYS}
        stamp = out.get("timestamp")
        if isinstance(stamp, str):
            try:
                if abs(_parse_iso(stamp, "metadata.timestamp") - ts) <= 1_000_000:
                    del out["timestamp"]
            except _RowError:
                pass
        if "memory_type" in out and out["memory_type"] == memory_type:
            del out["memory_type"]
        return out


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _connect_ro(path: Path) -> sqlite3.Connection:
    """Read-only, so an import never changes the seed's files (a WAL is still read)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)


def _sqlite_row(cells: dict[str, Any]) -> dict[str, Any]:
    """A ``memory_records`` row as the record object the other backends hold (JSON text columns decoded)."""
    obj = dict(cells)
    for column in ("metadata", "tags", "embedding"):
        value = obj.get(column)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _RowError(f"column {column} holds {type(value).__name__}, not JSON text")
        try:
            obj[column] = json.loads(value)
        except ValueError as e:
            raise _RowError(f"column {column} is not valid JSON: {e}") from None
    return obj


def merge(versions: Iterable[SeedRecord], bad: dict[str, list[int | None]] | None = None
          ) -> tuple[dict[str, SeedRecord], list[Problem]]:
    """One record per id: the latest ``timestamp``, then the newer file, then the later line.

    A record whose newest version is unreadable (in ``bad``) is withheld, with a `Problem`:
    importing an older version would present stale data as current.
    """
    best: dict[str, SeedRecord] = {}
    for rec in versions:
        have = best.get(rec.id)
        if have is None or rec.order >= have.order:
            best[rec.id] = rec
    withheld: list[Problem] = []
    for rid, stamps in (bad or {}).items():
        winner = best.get(rid)
        if winner is None:
            continue
        if any(ts is None or ts >= winner.timestamp for ts in stamps):
            del best[rid]
            withheld.append(Problem(winner.where, "not imported: a newer version of this record is unreadable "
                                                  "(listed above)", rid))
    return best, withheld


@dataclass
class ImportReport:
    data_dir: str
    sources: list[Source] = field(default_factory=list)
    rows: int = 0
    records: int = 0
    imported: int = 0
    already_present: int = 0
    decrypted: int = 0
    plaintext_under_marker: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "data_dir": self.data_dir, "dry_run": self.dry_run,
                "sources": [{"where": s.where, "kind": s.kind, "rows": s.rows} for s in self.sources],
                "rows": self.rows, "records": self.records, "imported": self.imported,
                "already_present": self.already_present, "decrypted": self.decrypted,
                "plaintext_under_marker": self.plaintext_under_marker,
                "skipped": [p.to_dict() for p in self.problems], "notes": self.notes}


def import_seed(fabric: Any, paths: Iterable[str | os.PathLike[str]] = (), *, bucket: str | None = None,
                prefix: str = "", region: str | None = None, key: str | None = None, strict: bool = False,
                keep_seed_metadata: bool = False, dry_run: bool = False, batch: int = 1000,
                progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Read seed stores and store their records in ``fabric`` (a `MemoryFabric`), oldest first, in batches.

    Ids already live in ``fabric`` are left alone (so a re-run resumes). With ``strict`` the
    first unreadable row raises `SeedImportError` before anything is written.
    """
    reader = SeedReader(key=key, keep_seed_metadata=keep_seed_metadata, strict=strict)
    versions: list[SeedRecord] = []
    for path in paths:
        versions.extend(reader.read_path(path))
    if bucket:
        versions.extend(reader.read_bucket(bucket, prefix, region))
    best, withheld = merge(versions, reader.bad_versions)
    if withheld and strict:
        raise SeedImportError(f"{withheld[0].where}: {withheld[0].reason}")
    report = ImportReport(data_dir=str(getattr(fabric, "data_dir", "")), sources=reader.sources,
                          rows=sum(s.rows for s in reader.sources), records=len(best), decrypted=reader.decrypted,
                          plaintext_under_marker=reader.plaintext_under_marker,
                          problems=reader.problems + withheld, notes=list(reader.notes), dry_run=dry_run)
    report.notes += [f"{r.where}: {r.note}" for r in best.values() if r.note]
    todo = sorted(best.values(), key=lambda r: (r.timestamp, r.id))
    fabric.count()  # catch the view up, so what is already there is known
    pending: list[dict[str, Any]] = []
    done = 0
    for rec in todo:
        done += 1
        if fabric.view.get(rec.id) is not None:
            report.already_present += 1
        else:
            pending.append(rec.to_item())
        if len(pending) >= batch:
            if not dry_run:
                fabric.store_many(pending)
            report.imported += len(pending)
            pending = []
        if progress is not None:
            progress(done, len(todo))
    if pending:
        if not dry_run:
            fabric.store_many(pending)
        report.imported += len(pending)
    if not dry_run:
        fabric.flush()
    return report
