"""`MemoryFabric`: the seed's API over an event log and one view.

Every write validates its input, then appends events to the log (the only thing ever
written first) and returns once the log's durability mode is satisfied. Reads first let
the view catch up with the log, so they see every acknowledged write, this process's and
other processes' alike. Which view serves reads is the backend; what a read returns never
depends on it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fabric import backends
from fabric.errors import (
    ConfigurationError,
    DuplicateRecordError,
    FabricError,
    InvalidInputError,
    InvalidRecordError,
    LogClosedError,
    RecordNotFoundError,
)
from fabric.events import Accessed, Deleted, Event, Forgotten, Stored, Updated
from fabric.log import DURABILITY_MODES, Envelope, EventLog
from fabric.model import (
    MemoryRecord,
    check_content,
    check_embedding,
    check_id,
    check_memory_type,
    check_storage_tier,
    check_tags,
    encode_metadata,
    new_id,
    parse_when,
    to_public,
    us_to_datetime,
)
from fabric.query import Hit, check_page, make_query
from fabric.state import Change, Record

if TYPE_CHECKING:
    from fabric.compaction import CompactionReport
    from fabric.crypto_codec import StoreCodec

_UNSET: Final = msgspec.UNSET
_CATCH_UP_BATCH: Final = 4096
_BULK_REPLAY_MIN: Final = 20_000  # events: below this an empty view catches up batch by batch
ACCESS_FLUSH_COUNT: Final = 1024
ACCESS_FLUSH_SECONDS: Final = 1.0


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


class _Reader:
    """Reads shared by the live fabric and its read-only `as_of` snapshots."""

    _view: Any

    def _sync(self) -> None:
        """Bring the view up to date before a read (nothing to do for a snapshot)."""

    def _public(self, rec: Record) -> MemoryRecord:
        return to_public(rec)

    def retrieve(self, record_id: str) -> MemoryRecord | None:
        """The record, or None if there is none with this id."""
        if not isinstance(record_id, str):
            raise InvalidInputError(f"record_id must be a string, not {type(record_id).__name__}")
        self._sync()
        rec = self._view.get(record_id)
        return None if rec is None else self._public(rec)

    def search(
        self,
        query: str,
        limit: int = 10,
        memory_type: str | None = None,
        storage_tier: str | None = None,
        *,
        offset: int = 0,
        tags: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[MemoryRecord]:
        """Records matching every word of ``query``, best BM25 first (see `fabric.query`)."""
        return [self._public(h.record) for h in self.search_hits(
            query, limit, memory_type, storage_tier, offset=offset, tags=tags, where=where)]

    def search_hits(
        self,
        query: str,
        limit: int = 10,
        memory_type: str | None = None,
        storage_tier: str | None = None,
        *,
        offset: int = 0,
        tags: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """Like `search`, with the internal records and their BM25 scores."""
        q = make_query(
            query, limit=limit, offset=offset,
            memory_type=None if memory_type is None else check_memory_type(memory_type),
            storage_tier=None if storage_tier is None else check_storage_tier(storage_tier),
            tags=tags, where=where,
        )
        self._sync()
        return self._view.search(q)  # type: ignore[no-any-return]

    def list_all(self, limit: int | None = None, offset: int = 0) -> list[MemoryRecord]:
        """Live records in the order they were created."""
        lim, off = check_page(limit, offset, default_limit=None)
        self._sync()
        return [self._public(r) for r in self._view.list(lim, off)]

    def count(self) -> int:
        self._sync()
        return int(self._view.count())


class MemoryFabric(_Reader):
    """The seed-compatible memory store. Thread-safe; any number of processes may share a data_dir.

    ``config`` keys: ``data_dir`` (else ``IOA_FABRIC_ROOT``, else the seed's
    ``./artifacts/memory``), ``durability`` (``always``/``batch``/``none``, else
    ``IOA_FABRIC_DURABILITY``, default ``batch``), ``segment_bytes``, ``sync_interval``,
    ``writer`` (else ``IOA_FABRIC_WRITER``, else the log's id); the s3 backend adds ``bucket_name``,
    ``region``, ``prefix``, ``endpoint_url`` (else ``IOA_FABRIC_S3_*``, see `fabric.s3_layout`) and
    the options of `projections.s3`.
    """

    def __init__(
        self,
        backend: str | None = None,
        config: Mapping[str, Any] | None = None,
        encryption_key: str | None = None,
        enable_metrics: bool = True,
    ) -> None:
        self.backend_name = backends.check_backend(backend or _env("IOA_FABRIC_BACKEND") or "local_jsonl")
        if config is not None and not isinstance(config, Mapping):
            raise ConfigurationError(f"config must be a dict, not {type(config).__name__}")
        self.config: dict[str, Any] = dict(config or {})
        data_dir = self.config.get("data_dir") or _env("IOA_FABRIC_ROOT") or backends.DEFAULT_DATA_DIRS[self.backend_name]
        self.data_dir = Path(data_dir)
        self.config["data_dir"] = str(self.data_dir)
        durability: Any = self.config.get("durability") or _env("IOA_FABRIC_DURABILITY") or "batch"
        if durability not in DURABILITY_MODES:
            raise ConfigurationError(f"unknown durability {durability!r}; choose one of {', '.join(DURABILITY_MODES)}")
        if self.backend_name == "s3":  # bucket, prefix, region, endpoint from config or env; no bucket: an error now
            from fabric.s3_layout import resolve_settings  # noqa: PLC0415

            self.config.update(resolve_settings(self.config).as_config())
        options: dict[str, Any] = {}
        for option in ("segment_bytes", "sync_interval"):
            if option in self.config:
                options[option] = self.config[option]
        self.enable_metrics = enable_metrics
        from fabric.crypto_codec import StoreOpener  # noqa: PLC0415 - keeps crypto out of plain imports

        # the key is derived once: by the genesis factory if the log is new, else by open()
        passphrase = encryption_key or _env("IOA_FABRIC_KEY")
        opener = StoreOpener(passphrase)
        self._log = EventLog(self.data_dir, durability=durability,
                             writer=self.config.get("writer") or _env("IOA_FABRIC_WRITER"),
                             genesis=opener.genesis, **options)
        self._closed = False
        try:
            self._codec: StoreCodec = opener.open(self._log)
            self._view = backends.open_view(self.backend_name, self.data_dir, self.config)
            attach = getattr(self._view, "attach_codec", None)
            if callable(attach):  # a view that ships records elsewhere (S3) seals them with the codec
                attach(self._codec)
            ship = getattr(self._view, "attach_log", None)
            if callable(ship):  # ... and ships the log itself (the passphrase opens restored replicas)
                ship(self._log, passphrase)
        except BaseException:
            self._log.close()
            raise
        self._view_lock = threading.RLock()
        self._access_lock = threading.Lock()
        self._pending_access: dict[str, tuple[int, int]] = {}
        self._access_since = time.monotonic()
        self._check_view()
        self._sync()

    # --- plumbing -----------------------------------------------------------------------

    @property
    def log(self) -> EventLog:
        return self._log

    @property
    def view(self) -> Any:
        return self._view

    @property
    def encrypted(self) -> bool:
        return self._codec.encrypted

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("this MemoryFabric is closed")

    def _sync(self) -> None:
        self._check_open()
        last = self._log.refresh()
        if self._view.position() < last:
            self.catch_up()

    def _check_view(self) -> None:
        """A persistent view ahead of the log or built from another log must not serve reads: it rebuilds itself."""
        check = getattr(self._view, "check_log", None)
        if not callable(check):
            return
        first = next(iter(self._log.read(1, 1)), None)
        log_id = getattr(self._codec.decode(first).event, "log_id", None) if first is not None else None
        check(log_id or None, self._log.refresh())

    def catch_up(self) -> int:
        """Apply what the log has beyond the view's position; return how many events were applied."""
        applied = 0
        with self._view_lock:
            start = self._view.position() + 1
            replay = getattr(self._view, "replay", None)  # a view with a bulk path rebuilds from empty with it
            if start == 1 and callable(replay) and self._log.last_seq >= _BULK_REPLAY_MIN:
                return int(replay(self._codec.decode(env) for env in self._log.read(1)))
            batch: list[Change] = []
            for env in self._log.read(start):
                batch.append(self._codec.decode(env))
                if len(batch) >= _CATCH_UP_BATCH:
                    self._view.apply(batch, batch[-1].seq)
                    applied += len(batch)
                    batch = []
            if batch:
                self._view.apply(batch, batch[-1].seq)
                applied += len(batch)
        return applied

    def _append(self, items: Sequence[tuple[str, Event]], check: Any = None) -> list[Envelope]:
        """Append ``(record id, event)`` pairs as one batch and feed an eager view at once."""
        self._check_open()
        codec = self._codec
        entries = [(ev.TYPE, rid, codec.encode(rid, ev)) for rid, ev in items]
        guard = codec.append_guard()  # encrypted: refuse a key another process rotated away from
        if guard is not None:
            check = _both(guard, check)
        envs = self._log.append(entries, check=check)
        codec.appended(envs)
        if self._view.eager:
            with self._view_lock:
                if self._view.position() == envs[0].seq - 1:
                    changes = [Change(rid, env.seq, env.ts, ev) for (rid, ev), env in zip(items, envs)]
                    self._view.apply(changes, envs[-1].seq)
                else:
                    self.catch_up()
        return envs

    def _exists_now(self, record_id: str) -> bool:
        """Is the id live as of the log's tail? Called under the log lock."""
        if self._view.position() < self._log.last_seq:
            self.catch_up()
        return self._view.get(record_id) is not None

    # --- writes -------------------------------------------------------------------------

    def store(
        self,
        content: str,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        memory_type: Any = "conversation",
        storage_tier: Any = "hot",
        record_id: str | None = None,
        embedding: Any = None,
    ) -> str:
        """Store a new record and return its id (a time-ordered UUID unless ``record_id`` is given).

        A ``record_id`` that names a live record is a `DuplicateRecordError`; use `update`.
        """
        rid, event = self._stored_event(content, metadata, tags, memory_type, storage_tier, record_id, embedding)
        check = None
        if record_id is not None:
            def check() -> None:
                if self._exists_now(rid):
                    raise DuplicateRecordError(rid)
        self._append([(rid, event)], check)
        return rid

    def _stored_event(self, content: Any, metadata: Any, tags: Any, memory_type: Any, storage_tier: Any,
                      record_id: Any, embedding: Any, timestamp: Any = None) -> tuple[str, Stored]:
        rid = new_id() if record_id is None else check_id(record_id)
        event = Stored(
            content=check_content(content),
            metadata=msgspec.Raw(encode_metadata(metadata)),
            tags=check_tags(tags),
            memory_type=check_memory_type(memory_type),
            storage_tier=check_storage_tier(storage_tier),
            embedding=check_embedding(embedding),
            timestamp=None if timestamp is None else parse_when(timestamp),
        )
        return rid, event

    def store_many(self, records: Iterable[Mapping[str, Any] | MemoryRecord]) -> list[str]:
        """Store many records as one batch: all are stored, or (on any error) none is.

        Each item is a dict with the arguments of `store` (``content`` required; the id as
        ``record_id`` or ``id``; imports may add ``timestamp``, ``access_count`` and
        ``last_accessed``) or a `MemoryRecord`.
        """
        items: list[tuple[str, Event]] = []
        explicit: list[str] = []
        seen: set[str] = set()
        for i, item in enumerate(records):
            if isinstance(item, MemoryRecord):
                item = {"content": item.content, "metadata": item.metadata, "tags": item.tags,
                        "memory_type": item.memory_type, "storage_tier": item.storage_tier,
                        "record_id": item.id, "embedding": item.embedding, "timestamp": item.timestamp}
            if not isinstance(item, Mapping):
                raise InvalidRecordError(f"item {i} of store_many is a {type(item).__name__}, not a dict")
            unknown = set(item) - {"content", "metadata", "tags", "memory_type", "storage_tier", "record_id",
                                   "id", "embedding", "timestamp", "access_count", "last_accessed"}
            if unknown:
                raise InvalidRecordError(f"item {i} of store_many has unknown fields: {', '.join(sorted(unknown))}")
            if "content" not in item:
                raise InvalidRecordError(f"item {i} of store_many has no content")
            given = item.get("record_id", item.get("id"))
            try:
                rid, event = self._stored_event(
                    item["content"], item.get("metadata"), item.get("tags"),
                    item.get("memory_type", "conversation"), item.get("storage_tier", "hot"),
                    given, item.get("embedding"), item.get("timestamp"))
                if item.get("access_count") or item.get("last_accessed") is not None:  # imports keep their counters
                    event = _with_access(event, item.get("access_count") or 0, item.get("last_accessed"))
            except InvalidRecordError as e:
                raise InvalidRecordError(f"item {i} of store_many: {e}") from e
            if given is not None:
                if rid in seen:
                    raise DuplicateRecordError(rid)
                seen.add(rid)
                explicit.append(rid)
            items.append((rid, event))
        if not items:
            return []

        def check() -> None:
            for rid in explicit:
                if self._exists_now(rid):
                    raise DuplicateRecordError(rid)

        self._append(items, check if explicit else None)
        return [rid for rid, _ in items]

    def update(
        self,
        record_id: str,
        content: Any = _UNSET,
        metadata: Any = _UNSET,
        tags: Any = _UNSET,
        memory_type: Any = _UNSET,
        storage_tier: Any = _UNSET,
        embedding: Any = _UNSET,
    ) -> None:
        """Change the given fields of a live record (a missing id is a `RecordNotFoundError`)."""
        rid = check_id(record_id)
        if all(v is _UNSET for v in (content, metadata, tags, memory_type, storage_tier, embedding)):
            raise InvalidInputError("update() needs at least one field to change")
        event = Updated(
            content=_UNSET if content is _UNSET else check_content(content),
            metadata=_UNSET if metadata is _UNSET else msgspec.Raw(encode_metadata(metadata)),
            tags=_UNSET if tags is _UNSET else check_tags(tags),
            memory_type=_UNSET if memory_type is _UNSET else check_memory_type(memory_type),
            storage_tier=_UNSET if storage_tier is _UNSET else check_storage_tier(storage_tier),
            embedding=_UNSET if embedding is _UNSET else check_embedding(embedding),
        )

        def check() -> None:
            if not self._exists_now(rid):
                raise RecordNotFoundError(rid)

        self._append([(rid, event)], check)

    def delete(self, record_id: str) -> bool:
        """Delete a record; False if there was none. History stays in the log (`as_of`, audit)."""
        rid = check_id(record_id)
        found = True

        def check() -> None:
            nonlocal found
            found = self._exists_now(rid)
            if not found:
                raise _Nothing

        try:
            self._append([(rid, Deleted())], check)
        except _Nothing:
            return False
        with self._access_lock:
            self._pending_access.pop(rid, None)
        return found

    def forget(self, record_id: str, reason: str = "") -> bool:
        """Erase a record (right to erasure); False if the id never named a record.

        Appends a `Forgotten` event (views drop the record), then seals the log's active
        segment and rewrites every sealed segment holding an event of the record so that its
        payload is gone (`fabric.forget`): the plaintext, or with encryption the wrapped data
        key and the ciphertext. The chain still verifies; history keeps that the record's
        events and its forgetting happened, and when. Unlike `delete`, ``as_of`` cannot bring
        it back. A record forgotten before is not forgotten again (False), but the erasure of
        its lines is completed if a crash interrupted it. Live or deleted records alike.
        """
        from fabric import forget as forgetting  # noqa: PLC0415

        rid = check_id(record_id)
        if not isinstance(reason, str):
            raise InvalidInputError(f"reason must be a string, not {type(reason).__name__}")
        self._check_open()
        index = self._codec.index
        index.refresh()  # a first use builds it: outside the lock, so writers are not held up

        def check() -> None:
            if index.stored_seq(rid) <= index.forgotten_seq(rid):
                raise _Nothing

        with self._access_lock:
            self._pending_access.pop(rid, None)
        forgotten = True
        try:
            seq = self._append([(rid, Forgotten(reason=reason))], check)[0].seq
        except _Nothing:
            forgotten = False
            seq = index.forgotten_seq(rid)
            if seq == 0:
                return False
        self._codec.drop_record(rid)
        if seq >= self._log.segments()[-1]:
            self._log.seal_segment()
        forgetting.redact(self._log, {rid: seq})
        self._sync()  # views that are not eager drop it now too
        return forgotten

    def rotate_key(self, new_passphrase: str) -> str:
        """Rotate the store key; return the new key id.

        Appends `KeyRotated` (new scrypt parameters and salt; every older key escrowed under
        the new one), so new records use the new key and the new passphrase alone opens the
        store, old records included. Old passphrases stop opening it. `compact(reencrypt=True)`
        then rewraps every data key under the new key and retires the old ones.
        """
        from fabric.crypto_codec import EncryptedCodec  # noqa: PLC0415

        self._check_open()
        if not isinstance(self._codec, EncryptedCodec):
            raise ConfigurationError("this store is not encrypted: there is no key to rotate",
                                     hint="migrate it into a new store opened with encryption_key=")
        params = self._codec.rotate(new_passphrase)
        self._sync()
        return params.key_id

    def compact(self, *, reencrypt: bool = False, dry_run: bool = False) -> CompactionReport:
        """Rewrite sealed log segments: finish erasing forgotten records and, with ``reencrypt``,
        rewrap every data key under the current store key and retire the old keys (`fabric.compaction`)."""
        from fabric import compaction  # noqa: PLC0415

        self._check_open()
        report = compaction.compact(self._log, self._codec, reencrypt=reencrypt, dry_run=dry_run)
        self._sync()
        return report

    def history(self, record_id: str) -> list[dict[str, Any]]:
        """What happened to a record, from the log: one dict per event (``seq``, ``time``,
        ``type``, ``writer``, ``erased``; ``reason`` for a forget), oldest first. Holds no
        content, so it is the same before and after a forget, except ``erased``."""
        from fabric.forget import find_lines, id_needle, is_redacted  # noqa: PLC0415

        rid = check_id(record_id)
        self._check_open()
        out: list[dict[str, Any]] = []
        for env in find_lines(self._log, id_needle(rid)):
            if env.id != rid:
                continue
            entry: dict[str, Any] = {"seq": env.seq, "time": us_to_datetime(env.ts), "type": env.type,
                                     "writer": env.writer, "erased": is_redacted(env)}
            if env.type == Forgotten.TYPE:
                entry["reason"] = msgspec.json.decode(env.data, type=Forgotten).reason
            out.append(entry)
        return out

    # --- reads --------------------------------------------------------------------------

    def _public(self, rec: Record) -> MemoryRecord:
        return to_public(rec, extra_access=self._pending_access.get(rec.id))

    def retrieve(self, record_id: str) -> MemoryRecord | None:
        """The record, or None. Counts as an access (``access_count``, ``last_accessed``)."""
        rec = super().retrieve(record_id)
        if rec is None:
            return None
        now = time.time_ns() // 1000
        with self._access_lock:
            count, _ = self._pending_access.get(record_id, (0, 0))
            self._pending_access[record_id] = (count + 1, now)
            due = (len(self._pending_access) >= ACCESS_FLUSH_COUNT
                   or time.monotonic() - self._access_since >= ACCESS_FLUSH_SECONDS)
        rec.access_count += 1
        rec.last_accessed = us_to_datetime(now)
        if due:
            self._flush_access()
        return rec

    def _flush_access(self) -> None:
        """Write pending accesses as one batch of `Accessed` events (reads never fsync one by one)."""
        with self._access_lock:
            pending, self._pending_access = self._pending_access, {}
            self._access_since = time.monotonic()
        if not pending:
            return
        events: list[tuple[str, Event]] = [(rid, Accessed(count=c, at=at)) for rid, (c, at) in pending.items()]
        try:
            self._append(events)  # an access to a record deleted meanwhile folds to nothing
        except FabricError:
            with self._access_lock:  # keep them for the next try
                for rid, (c, at) in pending.items():
                    c2, at2 = self._pending_access.get(rid, (0, 0))
                    self._pending_access[rid] = (c + c2, max(at, at2))
            raise

    def as_of(self, point: int | str | datetime) -> Snapshot:
        """A read-only view of the store as it was at log seq ``point`` (int) or at a time."""
        from projections.memory import MemoryView  # noqa: PLC0415 - as_of folds in memory, whatever the backend

        self._sync()
        if isinstance(point, bool):
            raise InvalidInputError("as_of takes a seq (int) or a time")
        view = MemoryView()
        batch: list[Change] = []
        if isinstance(point, int):
            if point < 0:
                raise InvalidInputError(f"as_of seq must be >= 0, not {point}")
            stop_seq: int | None = point
            stop_ts: int | None = None
        else:
            stop_seq, stop_ts = None, parse_when(point)
        for env in self._log.read(1, stop_seq):
            if stop_ts is not None and env.ts > stop_ts:
                break
            batch.append(self._codec.decode(env))
        view.apply(batch, batch[-1].seq if batch else 0)
        return Snapshot(view)

    # --- housekeeping -------------------------------------------------------------------

    def flush(self) -> None:
        """Write pending access counts and fsync the log."""
        self._check_open()
        self._flush_access()
        self._log.flush()

    def get_stats(self) -> dict[str, Any]:
        self._sync()
        last = self._log.last_seq
        pos = self._view.position()
        views: dict[str, Any] = {"position": pos, "behind": last - pos}
        describe = getattr(self._view, "describe", None)
        if callable(describe):  # the s3 view adds how far the bucket is behind, and why
            views.update(describe(last))
        return {
            "backend": self.backend_name,
            "data_dir": str(self.data_dir),
            "total_records": self._view.count(),
            "events": last,
            "segments": len(self._log.segments()),
            "log_bytes": self._log.size_bytes(),
            "durability": self._log.durability,
            "synced_seq": self._log.synced_seq,
            "encryption": "aes-256-gcm" if self.encrypted else "none",
            "views": {self._view.name: views},
            "recovered": [r.__dict__ for r in self._log.recovered],
        }

    def health_check(self) -> dict[str, Any]:
        """Checks the log's tail and the view without writing anything (the seed wrote a test record)."""
        health: dict[str, Any] = {"backend": self.backend_name, "encryption": "aes-256-gcm" if self.encrypted else "none",
                                  "timestamp": datetime.now().astimezone().isoformat()}
        try:
            stats = self.get_stats()
            behind = max(v["behind"] for v in stats["views"].values())
            healthy = behind == 0 and all(v.get("healthy", True) for v in stats["views"].values())
            health.update(status="healthy" if healthy else "degraded", operations="working",
                          records=stats["total_records"], events=stats["events"], views=stats["views"])
        except FabricError as e:
            health.update(status="unhealthy", error=str(e))
        return health

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._flush_access()
        finally:
            self._closed = True
            try:
                self._view.close()
            finally:
                self._log.close()

    def __enter__(self) -> MemoryFabric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryFabric(backend={self.backend_name!r}, data_dir={str(self.data_dir)!r})"


def _with_access(event: Stored, count: Any, last: Any) -> Stored:
    """A Stored event carrying an imported record's access counter (``last``: a time, or None)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidRecordError(f"access_count must be a count (an int >= 0), not {count!r}")
    return msgspec.structs.replace(event, access_count=count,
                                   last_accessed=None if last is None else parse_when(last))


class _Nothing(Exception):
    """Internal: a conditional append found nothing to do."""


def _both(first: Any, second: Any) -> Any:
    """One append check running ``first`` then ``second`` (either may be None)."""
    if second is None:
        return first

    def check() -> None:
        first()
        second()
    return check


class Snapshot(_Reader):
    """The store as it was at one point of the log. Read-only; reads record no access."""

    def __init__(self, view: Any) -> None:
        self._view = view

    @property
    def position(self) -> int:
        return int(self._view.position())

    def __getattr__(self, name: str) -> Any:
        if name in ("store", "store_many", "update", "delete", "forget"):
            from fabric.errors import ReadOnlyError  # noqa: PLC0415

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise ReadOnlyError(f"{name}() on an as_of snapshot: it is read-only")
            return refuse
        raise AttributeError(name)
