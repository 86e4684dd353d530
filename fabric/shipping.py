"""Shipping the log to an object store, in the background: chunks, record objects, checkpoint.

Written once above `fabric.objectstore.ObjectStore` (put, put_if_absent, get, delete,
list), Litestream-style: nothing here knows boto3. See `fabric.s3_layout` for the names.

One cycle (a background thread runs them; writers never wait for it):

1. **Log lane.** Lines past the shipped position go out as chunks: raw bytes of whole
   batches of one local segment, at most ``chunk_bytes`` each, with ``put_if_absent``
   (If-None-Match: *). A chunk that already exists must hold the same bytes (a retry, or a
   crash before the checkpoint), else another store is shipping as this writer: a conflict.
2. **Record lane.** Record objects for the ids touched by lines already shipped, the latest
   state of each (coalesced: one PUT or DELETE per id per slice, however often it changed),
   from the local view through ``record_source``. PUTs run in parallel.
3. **Checkpoint**, last, so it never claims what is not durable; before overwriting it the
   shipper checks it still holds what it wrote last (someone else moving it is a conflict).

Outages: every failure is retried with backoff (doubling to ``max_backoff``, forever:
shipping resumes by itself when the store answers); the log keeps everything meanwhile.
Conflicts (writer id taken by another log, a bucket ahead of or diverged from the local
log) stop shipping until reopened: nothing is overwritten. One process per data_dir ships
(``.s3_ship.lock``); others stand by and take over if it exits. A sealed segment rewritten
in place (forget, compaction) is noticed by its inode and its chunks are put again, so
erased payloads leave the bucket too.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from fabric.errors import (
    FabricError,
    InvalidInputError,
    LogClosedError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)
from fabric.log import Envelope, EventLog
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

log = logging.getLogger("fabric.shipping")

STATE_NAME: Final = ".s3_shipper.json"
LOCK_NAME: Final = ".s3_ship.lock"
_READ_BLOCK: Final = 4 << 20
_CYCLE_BYTES: Final = 64 << 20  # checkpoint at least this often during a long catch-up
_DECODER: Final = msgspec.json.Decoder(Envelope)

RecordSource = Callable[[str], "bytes | None"]


class StreamConflictError(StorageError):
    """The bucket disagrees with this log (writer id taken, lines differ, bucket ahead): nothing was overwritten."""


@dataclass
class ShipOptions:
    interval: float = 1.0  # at most one cycle per interval while writes trickle in
    poll: float = 1.0  # how often to look for other processes' appends when nobody pokes
    chunk_bytes: int = 8 << 20
    record_objects: bool = True
    record_batch: int = 2048  # ids per record slice (checkpointed after each)
    record_workers: int = 16
    min_backoff: float = 0.2
    max_backoff: float = 5.0


# --- reading raw lines ------------------------------------------------------------------------


@dataclass
class Chunk:
    segment: int
    first: int
    last: int
    data: bytes
    last_hash: str
    inode: int


def read_chunks(log: EventLog, start: int, stop: int, *, max_bytes: int) -> Iterator[Chunk]:
    """Lines ``start..stop`` as chunks of whole batches, raw bytes as on disk, never across segments.

    ``stop`` must end a batch (as `EventLog.refresh` returns). Each segment file is read
    through one descriptor, so a file renamed over meanwhile cannot mix old and new bytes;
    `Chunk.inode` says which file the bytes came from.
    """
    seq = start
    while seq <= stop:
        located = next(iter(log.read_located(seq, seq)), None)
        if located is None:
            raise StorageError(f"log line {seq} is not readable (the log ends at {log.last_seq})")
        _env, segment, offset = located
        before = seq
        for chunk in _read_segment(log, segment, offset, seq, stop, max_bytes):
            seq = chunk.last + 1
            yield chunk
        if seq == before:
            raise StorageError(f"log line {seq} vanished while shipping (segment {segment})")


def _decode(line: bytes) -> Envelope | None:
    try:
        return _DECODER.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def _lines(f: Any, offset: int) -> Iterator[tuple[Envelope | None, bytes]]:
    """(envelope, raw line with its newline) from ``offset``; a trailing partial line is left out."""
    f.seek(offset)
    carry = b""
    while True:
        block = f.read(_READ_BLOCK)
        if not block:
            return
        buf = carry + block
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line = buf[pos:nl + 1]
            pos = nl + 1
            yield _decode(line), line
        carry = buf[pos:]


def _read_segment(log: EventLog, segment: int, offset: int, seq: int, stop: int, max_bytes: int) -> Iterator[Chunk]:
    with open(log.segment_path(segment), "rb") as f:
        inode = os.fstat(f.fileno()).st_ino
        if offset:
            f.seek(offset)
            head = _decode(f.readline())
            if head is None or head.seq != seq:  # a stale position (the segment was rewritten): scan it
                offset = 0
        pending = bytearray()
        first = expect = seq
        cut_at = cut_seq = 0
        last_hash = ""
        for env, line in _lines(f, offset):
            if env is None:
                raise StorageError(f"segment {segment}: an unreadable line after line {expect - 1} while shipping")
            if env.seq < expect:
                continue
            if env.seq != expect:
                raise StorageError(f"segment {segment}: expected line {expect}, found {env.seq} while shipping")
            if env.seq > stop:
                break
            pending += line
            expect += 1
            if env.b == 0:
                cut_at, cut_seq, last_hash = len(pending), env.seq, env.hash
                if env.seq >= stop:
                    break
                if cut_at >= max_bytes:
                    yield Chunk(segment, first, cut_seq, bytes(pending), last_hash, inode)
                    pending.clear()
                    first, cut_at = cut_seq + 1, 0
        if cut_at:
            yield Chunk(segment, first, cut_seq, bytes(pending[:cut_at]), last_hash, inode)


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
        self._state_path = Path(data_dir) / STATE_NAME
        self._lock_path = Path(data_dir) / LOCK_NAME
        self._lock_fd = -1
        self.status = ShipStatus()
        self.counters = _Counters()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._stop = threading.Event()
        self._started = False
        self._last_checkpoint: bytes | None = None
        self._chunks = 0
        self._inodes: dict[int, int] = {}
        self._state_written = 0.0
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # --- control ------------------------------------------------------------------

    def start(self) -> None:
        t = threading.Thread(target=self._run, name=f"fabric-s3-shipper-{self.stream}", daemon=True)
        self._thread = t
        t.start()

    def poke(self) -> None:
        """Something was appended: ship it (within ``interval``)."""
        self._wake.set()

    def wait(self, seq: int | None = None, *, records: bool = True, timeout: float = 30.0) -> bool:
        """Wait until the log up to ``seq`` (default: its current end) is shipped, and with
        ``records`` its record objects too. False on timeout or when shipping stopped."""
        target = self.log.refresh() if seq is None else seq
        deadline = time.monotonic() + timeout
        self._urgent.set()
        self._wake.set()
        with self._cond:
            while True:
                st = self.status
                if st.log_seq >= target and (not records or not self.options.record_objects
                                             or st.records_seq >= target):
                    return True
                if st.state in ("conflict", "stopped", "off") or self._stop.is_set():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))

    def close(self, timeout: float = 5.0) -> None:
        """Ship what the log holds (if the store answers, for at most ``timeout`` s), then stop."""
        if self._thread is None:
            return
        if self.status.state == "ok" and timeout > 0:
            self.wait(records=False, timeout=timeout)
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
                if self._lock_fd < 0 and not self._take_lock():
                    self._set_state("standby")
                    self._stop.wait(self.options.poll)
                    continue
                more = False
                try:
                    if not self._started:
                        self._startup()
                        self._started = True
                    last_cycle = time.monotonic()
                    more = self._cycle()
                    self._succeeded()
                    backoff = self.options.min_backoff
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
                except Exception as e:  # a bug must not kill shipping silently
                    log.exception("s3 shipper for %s failed", self.stream)
                    self._failed("error", e)
                if self.status.state != "ok":
                    self._stop.wait(backoff)
                    backoff = min(self.options.max_backoff, backoff * 2)
                    continue
                if more:
                    continue
                self._wake.wait(self.options.poll)
                self._wake.clear()
                gap = self.options.interval - (time.monotonic() - last_cycle)
                if gap > 0 and not self._urgent.is_set():
                    self._urgent.wait(gap)  # coalesce: at most one cycle per interval
                self._urgent.clear()
        finally:
            if self.status.state not in ("conflict",):
                self._set_state("stopped")
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
            with self._cond:
                self._cond.notify_all()

    def _take_lock(self) -> bool:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
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
        self._reship_rewritten()
        st = self.status
        start_log, start_records = st.log_seq, st.records_seq
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
        more_records = False
        if not self.options.record_objects:
            st.records_seq = st.log_seq
        elif st.records_seq < st.log_seq:
            more_records = self._ship_records()
        if (st.log_seq, st.records_seq) != (start_log, start_records):
            self._put_checkpoint()
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
        known = self._inodes.get(chunk.segment)
        if known is None:
            self._inodes[chunk.segment] = chunk.inode
        elif known != chunk.inode:
            self._inodes[chunk.segment] = -1  # part of it was shipped from the old file: put it again

    def _ship_records(self) -> bool:
        st = self.status
        limit = st.log_seq
        ids: dict[str, None] = {}
        end = st.records_seq
        for env in self.log.read(st.records_seq + 1, limit):
            if env.id:
                ids[env.id] = None
            end = env.seq
            if len(ids) >= self.options.record_batch:
                break
        if self._before_records is not None:
            self._before_records(end)
        if ids:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.options.record_workers, thread_name_prefix="fabric-s3-put")
            for _ in self._pool.map(self._ship_record, ids):
                pass
        with self._cond:
            st.records_seq = end
            self._cond.notify_all()
        return end < limit

    def _ship_record(self, rid: str) -> None:
        assert self._record_source is not None
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
        if current != self._last_checkpoint:
            moved = "removed" if current is None else "moved"
            raise StreamConflictError(f"{key} was {moved} by someone else: another store ships as writer "
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
        self._write_state(force=True)

    # --- segments rewritten in place (forget, compaction) -----------------------------

    def _reship_rewritten(self) -> None:
        if not self._inodes:
            return
        segments = self.log.segments()
        active = segments[-1] if segments else 0
        for seg, ino in list(self._inodes.items()):
            if seg == active and ino != -1:
                continue
            try:
                now = os.stat(self.log.segment_path(seg)).st_ino
            except FileNotFoundError:
                del self._inodes[seg]
                continue
            if now != ino:
                self._reship_segment(seg)

    def _reship_segment(self, seg: int) -> None:
        prefix = segment_prefix(self.stream, seg)
        self.counters.lists += 1
        shipped = self.status.log_seq
        inode = self._inodes.get(seg, -1)
        for key in list(self.store.list(prefix)):
            name = parse_log_key(key)
            if not isinstance(name, ChunkName):
                continue
            first, last = name.first, name.last
            if last > shipped:
                continue
            for chunk in read_chunks(self.log, first, last, max_bytes=1 << 62):
                self.counters.puts += 1
                self.counters.chunks_reshipped += 1
                self.store.put(key, chunk.data)  # our own stream: overwriting is the point
                inode = chunk.inode
        self._inodes[seg] = inode
        log.info("re-shipped segment %d of %s (rewritten in place)", seg, self.stream)

    # --- local state (a cache for standby processes and restarts) ---------------------

    def _write_state(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._state_written < 1.0:
            return
        self._state_written = now
        st = self.status
        state = {"format": 1, "stream": self.stream, "log_id": self.log_id, "target": self.target,
                 "log_seq": st.log_seq, "log_hash": st.log_hash, "records_seq": st.records_seq,
                 "state": st.state, "error": st.error, "updated": time.time_ns() // 1000, "pid": os.getpid(),
                 "inodes": {str(k): v for k, v in self._inodes.items()}}
        tmp = self._state_path.with_name(f".{self._state_path.name}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_bytes(msgspec.json.encode(state))
            os.replace(tmp, self._state_path)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = msgspec.json.decode(self._state_path.read_bytes())
        except (OSError, msgspec.DecodeError):
            return None
        if not isinstance(state, dict) or state.get("target") != self.target or state.get("stream") != self.stream \
                or state.get("log_id") != self.log_id:
            return None
        return state

    def _load_state(self) -> None:
        state = self._read_state()
        if state is not None:
            self._inodes = {int(k): int(v) for k, v in (state.get("inodes") or {}).items()}


def read_stream_name(data_dir: Path) -> str | None:
    """The writer id a data_dir last shipped as (from its local state file), if any."""
    try:
        state = msgspec.json.decode((Path(data_dir) / STATE_NAME).read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    name = state.get("stream") if isinstance(state, dict) else None
    return name if isinstance(name, str) else None


def write_stream_state(data_dir: Path, *, stream: str, log_id: str, target: str, log_seq: int, log_hash: str,
                       records_seq: int) -> None:
    """Record in a (restored) data_dir which stream it is and how far the bucket has it."""
    state = {"format": 1, "stream": stream, "log_id": log_id, "target": target, "log_seq": log_seq,
             "log_hash": log_hash, "records_seq": records_seq, "state": "restored", "error": None,
             "updated": time.time_ns() // 1000, "pid": os.getpid(), "inodes": {}}
    path = Path(data_dir) / STATE_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(msgspec.json.encode(state))
    os.replace(tmp, path)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"
