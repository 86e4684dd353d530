"""Shipping the log to an object store, in the background: chunks, record objects, checkpoint.

Written once above `fabric.objectstore.ObjectStore` (put, put_if_absent, get, delete,
list), Litestream-style: nothing here knows boto3. See `fabric.s3_layout` for the names.

One cycle (a background thread runs them; writers never wait for it):

1. **Log lane.** Lines past the shipped position go out as chunks: raw bytes of whole
   batches of one local segment, at most ``chunk_bytes`` each, with ``put_if_absent``
   (If-None-Match: *). A chunk that already exists must hold the same bytes (a retry, or a
   crash before the checkpoint), else another store is shipping as this writer: a conflict.
   Then the checkpoint, so the log is durable in the bucket before the slower lane runs.
2. **Record lane.** Record objects for the ids touched by lines already shipped: one PUT or
   DELETE per id per pass however often it changed, with its state as of now, from the local
   view (``record_source``). A PUT costs ~1 ms of CPU under the GIL, so the lane waits for a
   burst of writes to pause (``record_idle``, at most ``record_max_delay``), which also lets it
   coalesce more, and runs a few PUTs in parallel (``record_workers``).
3. **Checkpoint** again, last, so it never claims what is not durable. Before overwriting it
   the shipper checks it still holds what it wrote last: moved by someone else is a conflict;
   gone (a wiped bucket) means reconciling from scratch and shipping again what is missing.

Outages: every failure is retried with backoff (doubling to ``max_backoff``, forever:
shipping resumes by itself when the store answers); the log keeps everything meanwhile.
Conflicts (writer id taken by another log, a bucket ahead of or diverged from the local
log) stop shipping until reopened: nothing is overwritten. One process per data_dir ships
(``.s3_ship.lock``); others stand by and take over if it exits. A sealed segment rewritten
in place (forget, compaction) is noticed (`fabric.ship_state.ShippedSegments`) and its
chunks are put again, so erased payloads leave the bucket too.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fabric.errors import (
    FabricError,
    InvalidInputError,
    LogClosedError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)
from fabric.log import EventLog
from fabric.log_chunks import Chunk, read_chunks
from fabric.objectstore import ObjectStore
from fabric.s3_layout import (
    Checkpoint,
    ChunkName,
    Owner,
    checkpoint_key,
    chunk_key,
    decode_checkpoint,
    decode_owner,
    encode_object,
    owner_key,
    parse_log_key,
    record_key,
    segment_prefix,
)
from fabric.ship_state import LOCK_NAME, ProgressFile, ShippedSegments, signature

log = logging.getLogger("fabric.shipping")

_CYCLE_BYTES: Final = 64 << 20  # checkpoint at least this often during a long catch-up

RecordSource = Callable[[str], "bytes | None"]


class _StartOver(Exception):
    """Internal: the bucket lost this stream's checkpoint (wiped, cleaned up): reconcile again from scratch."""


class _Interrupted(Exception):
    """Internal: the shipper is stopping; a record pass ends early (its progress is not claimed)."""


class StreamConflictError(StorageError):
    """The bucket disagrees with this log (writer id taken, lines differ, bucket ahead): nothing was overwritten."""


@dataclass
class ShipOptions:
    interval: float = 1.0  # at most one cycle per interval while writes trickle in
    poll: float = 1.0  # how often to look for other processes' appends when nobody pokes
    chunk_bytes: int = 8 << 20
    record_objects: bool = True
    record_batch: int = 1024  # ids between two checkpoints of the record lane
    record_scan: int = 1_000_000  # events one record pass looks at (ids are deduplicated across all of them)
    record_workers: int = 4  # parallel PUTs: more starve the application's threads of the GIL
    record_idle: float = 0.2  # record objects wait until writes pause this long...
    record_max_delay: float = 2.0  # ...but never longer than this once they fall behind
    min_backoff: float = 0.2
    max_backoff: float = 5.0


# --- the shipper ------------------------------------------------------------------------------


@dataclass
class _Counters:
    puts: int = 0
    chunk_puts: int = 0
    record_puts: int = 0
    record_deletes: int = 0
    checkpoint_puts: int = 0
    gets: int = 0
    lists: int = 0
    records_skipped: int = 0
    chunks_reshipped: int = 0
    shipped_bytes: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ShipStatus:
    state: str = "starting"  # starting, ok, unreachable, denied, conflict, error, standby, stopped, off
    log_seq: int = 0
    log_hash: str = ""
    records_seq: int = 0
    checkpoint: tuple[int, int] = (0, 0)  # (log_seq, records_seq) the bucket's checkpoint says
    error: str | None = None
    since: float = field(default_factory=time.time)  # when the state began
    last_ok: float | None = None
    failures: int = 0  # consecutive


class Shipper:
    """Ships one log as one stream (``writer``) to ``store``; see the module docstring."""

    def __init__(self, log: EventLog, store: ObjectStore, *, stream: str, log_id: str, encrypted: bool,
                 data_dir: Path, target: str, options: ShipOptions | None = None,
                 record_source: RecordSource | None = None,
                 before_records: Callable[[int], None] | None = None) -> None:
        self.log = log
        self.store = store
        self.stream = stream
        self.log_id = log_id
        self.encrypted = encrypted
        self.target = target  # "bucket/prefix", to tell whether a local state file is about this destination
        self.options = options or ShipOptions()
        self._record_source = record_source
        self._before_records = before_records
        self._progress = ProgressFile(data_dir, stream=stream, log_id=log_id, target=target)
        self._lock_path = Path(data_dir) / LOCK_NAME
        self._lock_fd = -1
        self._locked = False
        self.status = ShipStatus()
        self.counters = _Counters()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._records_wanted = threading.Event()
        self._seen_last = 0
        self._grew_at = 0.0
        self._behind_since: float | None = None
        self._next_due: float | None = None  # when deferred record objects become due
        self._stop = threading.Event()
        self._started = False
        self._last_checkpoint: bytes | None = None
        self._chunks = 0
        self._segments = ShippedSegments()
        self._state_written = 0.0
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # --- control ------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread. Files are created here, never by the thread: a data_dir being deleted
        under an open store (tests do) must not see files reappear."""
        self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._progress.create()
        t = threading.Thread(target=self._run, name=f"fabric-s3-shipper-{self.stream}", daemon=True)
        self._thread = t
        t.start()

    def poke(self) -> None:
        """Something was appended: ship it (within ``interval``)."""
        self._wake.set()

    def wait(self, seq: int | None = None, *, records: bool = True, timeout: float = 30.0,
             give_up_on_failure: bool = False) -> bool:
        """Wait until the log up to ``seq`` (default: its current end) is shipped, and with
        ``records`` its record objects too. False on timeout, when shipping stopped, or (with
        ``give_up_on_failure``) as soon as the store fails."""
        target = self.log.refresh() if seq is None else seq
        deadline = time.monotonic() + timeout
        if records:
            self._records_wanted.set()
        self._urgent.set()
        self._wake.set()
        with self._cond:
            while True:
                log_seq, records_seq = self.status.checkpoint
                if log_seq >= target and (not records or records_seq >= target):
                    return True
                st = self.status
                if st.state in ("conflict", "stopped", "off") or self._stop.is_set():
                    return False
                if give_up_on_failure and st.failures:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))

    def close(self, timeout: float = 5.0) -> None:
        """Ship what the log holds, record objects included (if the store answers, for at most
        ``timeout`` s), then stop. Whatever is left ships on the next open."""
        if self._thread is None:
            return
        if self.status.state == "ok" and timeout > 0:
            self.wait(records=True, timeout=timeout, give_up_on_failure=True)  # a record pass still running stops
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(timeout, 0.5))
        if self._thread.is_alive():
            log.warning("s3 shipper for %s did not stop in time (store not answering); it is abandoned", self.stream)
        self._thread = None

    def snapshot(self, last_seq: int) -> dict[str, Any]:
        """Where shipping stands, for `get_stats` (a standby process reports the active one's file)."""
        st = self.status
        log_seq, records_seq, state, error = st.log_seq, st.records_seq, st.state, st.error
        if state == "standby":
            other = self._read_state()
            if other is not None:
                log_seq = int(other.get("log_seq", 0))
                records_seq = int(other.get("records_seq", 0))
                error = other.get("error")
        if not self.options.record_objects:
            records_seq = log_seq
        return {
            "state": state,
            "writer": self.stream,
            "shipped_seq": log_seq,
            "records_seq": records_seq,
            "lag_events": max(0, last_seq - log_seq),
            "record_lag_events": max(0, last_seq - records_seq),
            "error": error,
            "state_since": _iso(st.since),
            "last_success": _iso(st.last_ok) if st.last_ok else None,
            "failures": st.failures,
            "requests": self.counters.as_dict(),
        }

    # --- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.options.min_backoff
        last_cycle = 0.0
        try:
            while not self._stop.is_set():
                if not self._locked and not self._take_lock():
                    self._set_state("standby")
                    self._stop.wait(self.options.poll)
                    continue
                more = False
                try:
                    if not self._started:
                        self._startup()
                        self._started = True
                        self._succeeded()
                    last_cycle = time.monotonic()
                    more = self._cycle()
                    self._succeeded()
                    backoff = self.options.min_backoff
                except _StartOver:
                    self._started = False
                    with self._cond:
                        self.status.log_seq = self.status.records_seq = 0
                        self.status.checkpoint = (0, 0)
                    continue
                except StreamConflictError as e:
                    self._set_state("conflict", e)
                    log.error("s3 shipping stopped: %s", e)
                    return
                except LogClosedError:
                    return
                except StorageUnavailableError as e:
                    self._failed("unreachable", e)
                except StorageAuthError as e:
                    self._failed("denied", e)
                except FabricError as e:
                    self._failed("error", e)
                except OSError as e:  # (after our errors: several of them are OSErrors too)
                    if not self._lock_path.parent.is_dir():  # the data_dir is gone: nothing left to ship
                        self._set_state("stopped", e)
                        return
                    self._failed("error", e)
                except Exception as e:  # a bug must not kill shipping silently
                    log.exception("s3 shipper for %s failed", self.stream)
                    self._failed("error", e)
                if self.status.state != "ok":
                    self._stop.wait(backoff)
                    backoff = min(self.options.max_backoff, backoff * 2)
                    continue
                if more:
                    continue
                due = self._next_due
                wait = self.options.poll if due is None else min(self.options.poll, max(0.0, due - time.monotonic()))
                self._wake.wait(wait)
                self._wake.clear()
                gap = self.options.interval - (time.monotonic() - last_cycle)
                if gap > 0 and not self._urgent.is_set():
                    self._urgent.wait(gap)  # coalesce: at most one cycle per interval
                self._urgent.clear()
        finally:
            if self.status.state not in ("conflict", "stopped"):
                self._set_state("stopped")
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1
            with self._cond:
                self._cond.notify_all()

    def _take_lock(self) -> bool:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        self._locked = True
        self._started = False  # (re)read the bucket's view of things: another process shipped meanwhile
        return True

    def _set_state(self, state: str, error: BaseException | None = None) -> None:
        with self._cond:
            st = self.status
            if st.state != state:
                st.state = state
                st.since = time.time()
            st.error = None if error is None else str(error)
            self._cond.notify_all()

    def _succeeded(self) -> None:
        self.status.failures = 0
        self.status.last_ok = time.time()
        self._set_state("ok")

    def _failed(self, state: str, error: BaseException) -> None:
        self.status.failures += 1
        self.counters.errors += 1
        if self.status.failures == 1 or self.status.state != state:
            log.warning("s3 shipping %s: %s (retrying; writes stay local)", state, error)
        self._set_state(state, error)
        self._write_state(force=False)

    # --- startup: claim the writer id, read the checkpoint, adopt what is already there ---

    def _startup(self) -> None:
        self._load_state()
        store = self.store
        okey = owner_key(self.stream)
        owner = Owner(writer=self.stream, log_id=self.log_id, created=time.time_ns() // 1000)
        self.counters.puts += 1
        if not store.put_if_absent(okey, encode_object(owner)):
            self.counters.gets += 1
            existing = decode_owner(store.get(okey), okey)
            if existing.log_id != self.log_id:
                raise StreamConflictError(
                    f"writer id {self.stream!r} is already used by another store (log {existing.log_id}; "
                    f"this one is {self.log_id}) in {self.target}",
                    hint="give each data_dir its own writer id (config 'writer' or IOA_FABRIC_WRITER)")
        ckpt = self._get_checkpoint()
        last = self.log.refresh()
        shipped, digest, records = 0, "", 0
        if ckpt is not None:
            if ckpt.log_id != self.log_id:
                raise StreamConflictError(f"the checkpoint of writer {self.stream!r} belongs to log {ckpt.log_id}, "
                                          f"not {self.log_id}")
            if ckpt.log_seq > last:
                raise StreamConflictError(
                    f"the bucket holds lines up to {ckpt.log_seq} of this log, but the local log ends at {last}",
                    hint="the local log is older than the bucket: restore it with `fabric restore --from s3`")
            if ckpt.log_seq and self._local_hash(ckpt.log_seq) != ckpt.log_hash:
                raise StreamConflictError(f"line {ckpt.log_seq} in the bucket differs from the local log's: "
                                          "the two have diverged")
            shipped, digest = ckpt.log_seq, ckpt.log_hash
            records = min(ckpt.records_seq, shipped) if ckpt.record_objects == self.options.record_objects else 0
            self._chunks = ckpt.chunks
        with self._cond:
            self.status.log_seq, self.status.log_hash, self.status.records_seq = shipped, digest, records
            self.status.checkpoint = (shipped, records)
        self._adopt()

    def _get_checkpoint(self) -> Checkpoint | None:
        key = checkpoint_key(self.stream)
        self.counters.gets += 1
        try:
            raw = self.store.get(key)
        except ObjectNotFoundError:
            self._last_checkpoint = None
            return None
        self._last_checkpoint = raw
        return decode_checkpoint(raw, key)

    def _local_hash(self, seq: int) -> str:
        env = next(iter(self.log.read(seq, seq)), None)
        return "" if env is None else env.hash

    def _adopt(self) -> None:
        """Chunks put after the last checkpoint (a crash in between) are taken as shipped if they
        hold exactly the local lines; otherwise new chunks would overlap them."""
        shipped = self.status.log_seq
        segments = self.log.segments()
        here = max((s for s in segments if s <= shipped + 1), default=1)
        for seg in (s for s in segments if s >= here):
            prefix = segment_prefix(self.stream, seg)
            after = prefix + f"{shipped:020d}" if seg == here else None
            self.counters.lists += 1
            for key in list(self.store.list(prefix, start_after=after)):
                name = parse_log_key(key)
                if not isinstance(name, ChunkName):
                    continue
                first, last_ = name.first, name.last
                if last_ <= shipped:
                    continue
                if first > shipped + 1:
                    return
                if last_ > self.log.refresh():
                    raise StreamConflictError(f"the bucket holds lines up to {last_} of this log "
                                              f"({key}), past the local log's end")
                self.counters.gets += 1
                remote = self.store.get(key)
                local = b"".join(c.data for c in read_chunks(self.log, first, last_, max_bytes=1 << 62))
                if remote != local:
                    raise StreamConflictError(f"{key} holds other lines than the local log: the two diverged "
                                              f"or another store ships as writer {self.stream!r}")
                env = next(iter(self.log.read(last_, last_)))
                shipped = last_
                with self._cond:
                    self.status.log_seq, self.status.log_hash = last_, env.hash

    # --- one cycle ---------------------------------------------------------------

    def _cycle(self) -> bool:
        """Ship what there is (bounded); True if more is waiting."""
        last = self.log.refresh()
        now = time.monotonic()
        if last > self._seen_last:
            self._seen_last, self._grew_at = last, now
        self._reship_rewritten()
        st = self.status
        start_log = st.log_seq
        shipped_bytes = 0
        if st.log_seq < last:
            for chunk in read_chunks(self.log, st.log_seq + 1, last, max_bytes=self.options.chunk_bytes):
                self._put_chunk(chunk)
                with self._cond:
                    st.log_seq, st.log_hash = chunk.last, chunk.last_hash
                    self._cond.notify_all()
                shipped_bytes += len(chunk.data)
                if shipped_bytes >= _CYCLE_BYTES:
                    break
        if not self.options.record_objects:
            st.records_seq = st.log_seq
        if st.log_seq != start_log or st.checkpoint[0] != st.log_seq:  # the log first: durable before records
            self._put_checkpoint()
        more_records = False
        self._next_due = None
        if st.records_seq < st.log_seq:
            if self._behind_since is None:
                self._behind_since = now
            # Record objects cost one PUT each (GIL-heavy): let a burst of writes finish first (it
            # also coalesces more), but never let them lag more than record_max_delay.
            due = min(self._grew_at + self.options.record_idle, self._behind_since + self.options.record_max_delay)
            if due <= now or self._records_wanted.is_set() or self._stop.is_set():
                if st.log_seq != start_log:
                    self._succeeded()  # the log is in: say so while the (slower) record pass runs
                start_records = st.records_seq
                more_records = self._ship_records()
                if st.records_seq != start_records:
                    self._put_checkpoint()
            else:
                self._next_due = due
        if st.records_seq >= st.log_seq:
            self._behind_since = None
            self._records_wanted.clear()
        self._write_state(force=False)
        return st.log_seq < last or more_records

    def _put_chunk(self, chunk: Chunk) -> None:
        key = chunk_key(self.stream, chunk.segment, chunk.first, chunk.last)
        self.counters.puts += 1
        self.counters.chunk_puts += 1
        self.counters.shipped_bytes += len(chunk.data)
        if not self.store.put_if_absent(key, chunk.data):
            self.counters.gets += 1
            if self.store.get(key) != chunk.data:
                raise StreamConflictError(f"{key} already holds other lines: another store ships as writer "
                                          f"{self.stream!r}, or this log diverged from what was shipped")
        self._chunks += 1
        self._segments.note(chunk.segment, chunk.first, chunk.data)

    def _ship_records(self) -> bool:
        """One pass over the record backlog (at most ``record_scan`` events): every id touched gets ONE
        request, with its state as of now, in order of first appearance, however often it changed
        in the backlog. ``records_seq`` advances after each ``record_batch`` ids to just before the
        first id not done yet (every event before it belongs to an id already put). True if more remain."""
        st = self.status
        limit = min(st.log_seq, st.records_seq + self.options.record_scan)
        first_seen: dict[str, int] = {}
        for env in self.log.read(st.records_seq + 1, limit):
            if env.id and env.id not in first_seen:
                first_seen[env.id] = env.seq
        if self._before_records is not None:
            self._before_records(limit)
        ids = list(first_seen)
        step = self.options.record_batch
        if ids and self._pool is None:
            self._pool = ThreadPoolExecutor(self.options.record_workers, thread_name_prefix="fabric-s3-put")
        for i in range(0, len(ids), step):
            if self._stop.is_set():
                return True
            try:
                for _ in self._pool.map(self._ship_record, ids[i:i + step]):  # type: ignore[union-attr]
                    pass
            except _Interrupted:
                return True
            done = first_seen[ids[i + step]] - 1 if i + step < len(ids) else limit
            with self._cond:
                st.records_seq = done
                self._cond.notify_all()
            if done < limit:
                self._put_checkpoint()
        with self._cond:
            st.records_seq = limit
            self._cond.notify_all()
        return limit < st.log_seq

    def _ship_record(self, rid: str) -> None:
        assert self._record_source is not None
        if self._stop.is_set():
            raise _Interrupted
        try:
            blob = self._record_source(rid)
        except (StorageError, LogClosedError):
            raise
        except FabricError as e:  # e.g. no data key here for a record another writer stored
            self.counters.records_skipped += 1
            log.warning("record object of %r not shipped: %s", rid, e)
            return
        key = record_key(rid)
        try:
            if blob is None:
                self.counters.record_deletes += 1
                self.store.delete(key)
            else:
                self.counters.puts += 1
                self.counters.record_puts += 1
                self.store.put(key, blob)
        except InvalidInputError as e:  # an id no S3 key can hold (too long with the prefix)
            self.counters.records_skipped += 1
            log.warning("record object of %r not shipped: %s", rid, e)

    def _put_checkpoint(self) -> None:
        key = checkpoint_key(self.stream)
        self.counters.gets += 1
        try:
            current: bytes | None = self.store.get(key)
        except ObjectNotFoundError:
            current = None
        if current is None and self._last_checkpoint is not None:
            log.warning("%s vanished from the bucket (wiped or cleaned up?): shipping %s again from the start",
                        key, self.stream)
            raise _StartOver
        if current != self._last_checkpoint:
            raise StreamConflictError(f"{key} was moved by someone else: another store ships as writer "
                                      f"{self.stream!r}", hint="give each data_dir its own writer id")
        st = self.status
        ckpt = Checkpoint(writer=self.stream, log_id=self.log_id, log_seq=st.log_seq, log_hash=st.log_hash,
                          records_seq=st.records_seq, record_objects=self.options.record_objects,
                          encrypted=self.encrypted, updated=time.time_ns() // 1000, chunks=self._chunks)
        data = encode_object(ckpt)
        self.counters.puts += 1
        self.counters.checkpoint_puts += 1
        self.store.put(key, data)
        self._last_checkpoint = data
        with self._cond:
            st.checkpoint = (ckpt.log_seq, ckpt.records_seq)
            self._cond.notify_all()
        self._write_state(force=True)

    # --- segments rewritten in place (forget, compaction) -----------------------------

    def _reship_rewritten(self) -> None:
        segments = self.log.segments()
        for seg in self._segments.check(segments, self.status.log_seq, self.log.segment_path):
            self._reship_segment(seg, segments)

    def _reship_segment(self, seg: int, segments: list[int]) -> None:
        """Put every chunk of a sealed segment again, from one read of the file as it is now."""
        nxt = next((s for s in segments if s > seg), None)
        if nxt is None:
            return
        try:
            fd = os.open(self.log.segment_path(seg), os.O_RDONLY)
        except FileNotFoundError:
            self._segments.forget(seg)
            return
        try:
            sig = signature(fd)
            data = b"".join(iter(lambda: os.read(fd, 4 << 20), b""))
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        if lines.pop() != b"" or len(lines) != nxt - seg:
            raise StorageError(f"segment {seg} does not hold lines {seg}..{nxt - 1} whole: not re-shipped")
        prefix = segment_prefix(self.stream, seg)
        self.counters.lists += 1
        for key in list(self.store.list(prefix)):
            name = parse_log_key(key)
            if not isinstance(name, ChunkName) or name.last >= nxt:
                continue
            body = b"".join(line + b"\n" for line in lines[name.first - seg:name.last - seg + 1])
            self.counters.puts += 1
            self.counters.chunks_reshipped += 1
            self.store.put(key, body)  # our own stream: overwriting is the point
        self._segments.reshipped(seg, data, sig)
        log.info("re-shipped segment %d of %s (rewritten in place)", seg, self.stream)

    # --- local progress (a cache for standby processes and restarts) ---------------------

    def _write_state(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._state_written < 1.0:
            return
        self._state_written = now
        st = self.status
        self._progress.write({"log_seq": st.log_seq, "log_hash": st.log_hash, "records_seq": st.records_seq,
                              "state": st.state, "error": st.error,
                              "segments": self._segments.to_json()})

    def _read_state(self) -> dict[str, Any] | None:
        return self._progress.read()

    def _load_state(self) -> None:
        state = self._progress.read()
        if state is not None:
            self._segments.load(state.get("segments"), self.log.segment_path)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"
