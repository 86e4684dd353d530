"""The s3 view (backend ``s3``): a local view serving reads, a shipper projecting the log to a bucket.

Reads, search included, are served by a *local* view caught up from the local log: the
in-memory view (default) or the SQLite view (``config["local_view"] = "sqlite"``), with the
same semantics as on the other backends. Nothing is ever listed or downloaded to answer a
read. Writes land in the local log (the seed's ``s3_fallback`` directory is that log) and
return without waiting for S3; `fabric.shipping.Shipper` ships the log in the background,
as chunks, record objects and a checkpoint (layout in `fabric.s3_layout`).

Other writers' streams restored into ``data_dir/streams/`` (`fabric.s3_restore`) are folded
in with the store's own events in merge order (`fabric.streams`). A foreign event later
than every own event so far is applied at once, so reads see it; should an own event
then come with an earlier time (clocks disagree), the records both touched are refolded
in merge order from the log, so the state never depends on arrival order. The SQLite
view keys its checkpoint to the store's own seqs, so a store with replicas is served by
the in-memory view.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from fabric.errors import ConfigurationError
from fabric.events import Deleted, StoreCreated
from fabric.model import to_public
from fabric.query import Hit, Query
from fabric.s3_layout import ENV_WRITER, S3Settings, check_writer, open_store, resolve_settings
from fabric.ship_state import read_stream_name, write_stream_name
from fabric.shipping import ShipOptions, Shipper
from fabric.state import SCHEMA_VERSION, Change, Record
from fabric.streams import MergeKey, Replica, load_replicas, merge_key
from projections.memory import MemoryView

log = logging.getLogger("fabric.s3")

LOCAL_VIEWS: Final = ("memory", "sqlite")
_ENCODER: Final = msgspec.json.Encoder()
_CATCH_UP: Final = 4096
_MAX_KEY: Final = (2**63, "\U0010ffff", 2**63, "\U0010ffff")


def record_body(rec: Record) -> bytes:
    """A record object's body: the seed's ``to_dict`` JSON (its keys, order and ISO timestamps)."""
    pub = to_public(rec)
    emb = None
    if pub.embedding is not None:
        emb = {"vector": pub.embedding.vector, "model": pub.embedding.model, "dimension": pub.embedding.dimension,
               "__schema_version__": SCHEMA_VERSION}
    return _ENCODER.encode({
        "id": pub.id,
        "content": pub.content,
        "metadata": msgspec.Raw(rec.metadata),
        "timestamp": pub.timestamp.isoformat(),
        "tags": pub.tags,
        "storage_tier": pub.storage_tier.value,
        "memory_type": pub.memory_type.value,
        "access_count": pub.access_count,
        "last_accessed": pub.last_accessed.isoformat() if pub.last_accessed is not None else None,
        "embedding": emb,
        "__schema_version__": SCHEMA_VERSION,
    })


def ship_options(config: Mapping[str, Any]) -> ShipOptions:
    o = ShipOptions()
    for key, attr, kind in (("ship_interval", "interval", float), ("poll_interval", "poll", float),
                            ("chunk_bytes", "chunk_bytes", int), ("record_objects", "record_objects", bool),
                            ("record_batch", "record_batch", int), ("record_workers", "record_workers", int),
                            ("record_scan", "record_scan", int), ("record_idle", "record_idle", float),
                            ("record_max_delay", "record_max_delay", float),
                            ("min_backoff", "min_backoff", float), ("max_backoff", "max_backoff", float)):
        if key in config and config[key] is not None:
            try:
                setattr(o, attr, kind(config[key]))
            except (TypeError, ValueError) as e:
                raise ConfigurationError(f"config[{key!r}] must be a {kind.__name__}: {e}") from e
    if min(o.chunk_bytes, o.record_batch, o.record_workers, o.record_scan) < 1 or o.interval < 0 or o.max_backoff <= 0:
        raise ConfigurationError("chunk_bytes, record_batch, record_workers, record_scan and max_backoff "
                                 "must be positive")
    return o


def store_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """`S3ObjectStore` keyword arguments from config (request_timeout, retries, max_elapsed)."""
    out: dict[str, Any] = {}
    for key, arg in (("request_timeout", "timeout"), ("retries", "retries"), ("max_elapsed", "max_elapsed"),
                     ("max_connections", "max_connections")):
        if config.get(key) is not None:
            out[arg] = config[key]
    out.setdefault("max_connections", 32)
    return out


class S3View:
    """`projections.base.Projection` for the s3 backend; see the module docstring."""

    name = "s3"

    def __init__(self, data_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> None:
        self.data_dir = Path(data_dir)
        self._config = dict(config)
        self.settings: S3Settings = resolve_settings(self._config)
        self._local_kind = str(self._config.get("local_view") or "memory")
        if self._local_kind not in LOCAL_VIEWS:
            raise ConfigurationError(f"unknown local_view {self._local_kind!r}; use one of {', '.join(LOCAL_VIEWS)}")
        self._local: Any = self._open_local(self._local_kind)
        self.eager = bool(self._local.eager)
        self._lock = threading.RLock()
        self._codec: Any = None
        self._log: Any = None
        self.shipper: Shipper | None = None
        self.stream = ""
        self.replicas: list[Replica] = []
        self._foreign: list[tuple[MergeKey, Change]] = []
        self._next_foreign = 0
        self._late: dict[str, MergeKey] = {}  # foreign events applied ahead of the store's own, by record
        self._late_max: MergeKey | None = None
        self._close_timeout = float(self._config.get("close_timeout", 5.0))
        self.options = ship_options(self._config)

    def _open_local(self, kind: str) -> Any:
        if kind == "sqlite":
            from projections.sqlite_fts import SqliteView  # noqa: PLC0415

            return SqliteView(self.data_dir, self._config)
        return MemoryView()

    # --- wiring (called by MemoryFabric right after opening the view) --------------------

    def attach_codec(self, codec: Any) -> None:
        self._codec = codec

    def attach_log(self, event_log: Any, passphrase: str | None) -> None:
        """Take the store's log: fold restored replicas in, and start shipping (unless ``ship`` is off)."""
        self._log = event_log
        first = next(iter(event_log.read(1, 1)), None)
        log_id = ""
        if first is not None and first.type == StoreCreated.TYPE:
            log_id = msgspec.json.decode(first.data, type=StoreCreated).log_id
        configured = self._config.get("writer") or os.environ.get(ENV_WRITER) or None
        known = read_stream_name(self.data_dir)
        if known and configured and known != configured:
            raise ConfigurationError(
                f"data_dir {str(self.data_dir)!r} ships as writer {known!r}, not {configured!r}",
                hint=f"open it with writer={known!r} (or IOA_FABRIC_WRITER={known}); a writer id is for good")
        self.stream = check_writer(known or configured or log_id or event_log.writer)
        if event_log.writer != self.stream:
            event_log.writer = self.stream  # new lines carry the stream's name (a restored writer keeps its own)
        target = f"{self.settings.bucket}/{self.settings.prefix}"
        if known is None:  # bind the name before anything is shipped under it
            write_stream_name(self.data_dir, stream=self.stream, log_id=log_id)
        self.replicas, self._foreign = load_replicas(self.data_dir, passphrase)
        if self._foreign and self._local_kind != "memory":
            log.warning("%s has replicas of other writers: serving reads from the in-memory view", self.data_dir)
            self._local.close()
            self._local_kind = "memory"
            self._local = MemoryView()
            self.eager = True
        if not self._config.get("ship", True):
            return
        store = self._config.get("object_store") or open_store(self.settings, **store_options(self._config))
        self.shipper = Shipper(event_log, store, stream=self.stream, log_id=log_id,
                               encrypted=bool(getattr(self._codec, "encrypted", False)), data_dir=self.data_dir,
                               target=target, options=self.options, record_source=self._record_object,
                               before_records=self._catch_up_to)
        self.shipper.start()

    # --- Projection -----------------------------------------------------------------------

    def position(self) -> int:
        return int(self._local.position())

    def apply(self, changes: Sequence[Change], position: int) -> None:
        with self._lock:
            self._apply_locked(changes, position)
        if self.shipper is not None:
            self.shipper.poke()

    def _apply_locked(self, changes: Sequence[Change], position: int) -> None:
        done = self._local.position()
        if changes and changes[0].seq <= done:  # the shipper's catch-up got there first
            changes = [c for c in changes if c.seq > done]
        if position <= done and not changes:
            return
        if not self._foreign:
            self._local.apply(changes, position)
            return
        writer, stream, foreign = self._log.writer, self.stream, self._foreign
        i = self._next_foreign
        out: list[Change] = []
        refold: dict[str, None] = {}
        key: MergeKey | None = None
        for c in changes:
            key = merge_key(c.ts, writer, c.seq, stream)
            while i < len(foreign) and foreign[i][0] < key:
                out.append(foreign[i][1])
                i += 1
            late = self._late.get(c.id)
            if late is not None and late > key:
                refold[c.id] = None
            out.append(c)
        if key is not None and self._late_max is not None and key > self._late_max:
            self._late.clear()
            self._late_max = None
        if position >= self._log.last_seq and i < len(foreign):  # caught up: show every foreign event now
            for k, ch in foreign[i:]:
                self._late[ch.id] = k
                out.append(ch)
            self._late_max = foreign[-1][0]
            i = len(foreign)
        self._next_foreign = i
        self._local.apply(out, position)
        for rid in refold:
            self._refold(rid, position)

    def _refold(self, rid: str, position: int) -> None:
        """Put one record back into merge order: its own and foreign events, sorted, applied afresh."""
        from fabric.forget import find_lines, id_needle  # noqa: PLC0415

        writer, stream = self._log.writer, self.stream
        keyed = [(merge_key(env.ts, writer, env.seq, stream), self._codec.decode(env))
                 for env in find_lines(self._log, id_needle(rid)) if env.id == rid and env.seq <= position]
        keyed += [(k, ch) for k, ch in self._foreign[:self._next_foreign] if ch.id == rid]
        keyed.sort(key=lambda item: item[0])
        self._local.apply([Change(rid, 0, 0, Deleted())] + [ch for _k, ch in keyed], position)

    def replay(self, changes: Iterable[Change], progress: Any = None) -> int:
        """Rebuild from empty out of the whole log (MemoryFabric's bulk path)."""
        with self._lock:
            self.reset()
            if not self._foreign and hasattr(self._local, "replay"):
                return int(self._local.replay(changes, progress))
            batch: list[Change] = []
            last = 0
            for ch in changes:
                batch.append(ch)
                if len(batch) >= _CATCH_UP:
                    last = batch[-1].seq
                    self._apply_locked(batch, last)
                    batch = []
            if batch:
                last = batch[-1].seq
            self._apply_locked(batch, max(last, self._log.last_seq if self._log is not None else last))
            return self.position()

    def reset(self) -> None:
        with self._lock:
            self._local.reset()
            self._next_foreign = 0
            self._late.clear()
            self._late_max = None

    def check_log(self, log_id: str | None, last_seq: int) -> None:
        check = getattr(self._local, "check_log", None)
        if callable(check):
            check(log_id, last_seq)

    def get(self, record_id: str) -> Record | None:
        rec: Record | None = self._local.get(record_id)
        return rec

    def search(self, query: Query) -> builtins.list[Hit]:
        hits: builtins.list[Hit] = self._local.search(query)
        return hits

    def list(self, limit: int | None, offset: int) -> builtins.list[Record]:
        recs: builtins.list[Record] = self._local.list(limit, offset)
        return recs

    def count(self) -> int:
        return int(self._local.count())

    def close(self) -> None:
        try:
            if self.shipper is not None:
                self.shipper.close(self._close_timeout)
        finally:
            self._local.close()

    # --- for the shipper (its thread) -------------------------------------------------------

    def _catch_up_to(self, end: int) -> None:
        """Record objects are made from the local view: bring it up to ``end`` first."""
        if self._local.position() >= end:
            return
        with self._lock:
            start = self._local.position() + 1
            batch: list[Change] = []
            for env in self._log.read(start, end):
                batch.append(self._codec.decode(env))
                if len(batch) >= _CATCH_UP:
                    self._apply_locked(batch, batch[-1].seq)
                    batch = []
            self._apply_locked(batch, end)

    def _record_object(self, rid: str) -> bytes | None:
        rec = self._local.get(rid)
        if rec is None:
            return None
        sealed: bytes = self._codec.seal_record_object(rid, record_body(rec))
        return sealed

    # --- stats ------------------------------------------------------------------------------

    def describe(self, last_seq: int) -> dict[str, Any]:
        """What `MemoryFabric.get_stats` shows under ``views["s3"]``; ``behind`` and ``healthy`` feed health_check."""
        local_behind = max(0, last_seq - self.position())
        out: dict[str, Any] = {
            "local_view": self._local_kind, "bucket": self.settings.bucket, "prefix": self.settings.prefix,
            "endpoint": self.settings.endpoint_url, "region": self.settings.region, "writer": self.stream,
            "replicas": [{"writer": r.stream, "log_id": r.log_id, "events": r.last_seq} for r in self.replicas],
        }
        if self.shipper is None:
            out.update(state="off", shipped_seq=None, lag_events=None, behind=local_behind, healthy=True)
            return out
        snap = self.shipper.snapshot(last_seq)
        out.update(snap)
        out["behind"] = max(local_behind, snap["lag_events"], snap["record_lag_events"])
        out["healthy"] = snap["state"] in ("ok", "standby") and out["behind"] == 0
        return out

    def fetch_record_object(self, record_id: str) -> dict[str, Any] | None:
        """The record's object as the bucket holds it, opened (decrypted) and parsed; None if there is none."""
        from fabric.errors import ObjectNotFoundError  # noqa: PLC0415
        from fabric.s3_layout import record_key  # noqa: PLC0415

        if self.shipper is None:
            return None
        try:
            blob = self.shipper.store.get(record_key(record_id))
        except ObjectNotFoundError:
            return None
        body: dict[str, Any] = msgspec.json.decode(self._codec.open_record_object(record_id, blob))
        return body

    def wait_shipped(self, timeout: float = 30.0, *, records: bool = True) -> bool:
        """Block until everything in the log is in the bucket (tests, doctor, tools). False on timeout."""
        if self.shipper is None:
            return False
        return self.shipper.wait(records=records, timeout=timeout)


def open_view(data_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> S3View:
    """Factory for the backend registry."""
    return S3View(data_dir, config)
