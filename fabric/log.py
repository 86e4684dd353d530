"""The append-only, segmented, hash-chained JSONL event log: the source of truth.

One line per event, an `Envelope`. Lines of one `append` call form a *batch*: every line
but the last carries ``b`` = how many lines of the batch follow it, so a batch cut short
by a crash is recognised and dropped as a whole (all or nothing), and readers never hand
out part of a batch that is still being written.

Concurrency: an in-process lock orders threads, an ``flock`` on ``.fabric.lock`` orders
processes. Under both, the writer first catches up with whatever other processes
appended (and repairs a tail they left torn), so sequence numbers stay dense and the
chain unbroken whoever writes.

Durability, as databases name it:
``always``  fsync before `append` returns; concurrent appenders share one fsync (group commit).
``batch``   (default) the bytes are handed to the OS before `append` returns, so they survive
            ``kill -9``; a background fsync follows within ``sync_interval`` seconds, which
            is the most a power cut can take.
``none``    no fsync until `flush` or `close`; lines still reach the OS on every append (so
            other processes see them and ``kill -9`` loses nothing), only a power cut can.

Recovery on open: a torn last line or an incomplete last batch is cut off and reported in
`EventLog.recovered`; damage anywhere else is a `CorruptLogError` naming segment and
byte offset. Nothing is skipped silently.

Every line read is checked against its own hash (`envelope_hash`) by default, so a flipped
byte inside a payload that still parses as JSON is a `ChainBrokenError` naming segment and
offset when a view catches up or rebuilds, not data served as good until `verify` runs
(about 1.3 µs a line; ``read(verify=False)`` skips it). So a view never applies a line that
does not match its hash; opening for append checks seqs and links of the newest segment only.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import msgspec

from fabric.errors import (
    ChainBrokenError,
    ConfigurationError,
    CorruptLogError,
    LogClosedError,
    LogError,
    LogWriteError,
    ReadOnlyError,
)
from fabric.events import ENVELOPE_VERSION, STORE_ID, SegmentSealed, StoreCreated, encode_payload

log = logging.getLogger("fabric.log")

Durability = Literal["always", "batch", "none"]
DURABILITY_MODES: Final = ("always", "batch", "none")

SEGMENT_PREFIX: Final = "memory_run_"
SEGMENT_SUFFIX: Final = ".jsonl"
LOCK_NAME: Final = ".fabric.lock"
GENESIS_HASH: Final = "0" * 64
DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
DEFAULT_SYNC_INTERVAL: Final = 0.005
_READ_CHUNK: Final = 1 << 22
_ALTERED: Final = "line was altered: its hash does not match its content"


def segment_name(first_seq: int) -> str:
    """Fixed-width name, so a plain sort is log order."""
    return f"{SEGMENT_PREFIX}{first_seq:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """First seq of a segment file name, or None for any other file (the seed's run files included)."""
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    digits = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
    if len(digits) != 20 or not (digits.isascii() and digits.isdigit()):  # isdigit() alone takes '²', '١'
        return None
    return int(digits)


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of the log. ``data`` stays raw bytes: hashed and shipped without decoding.

    ``dd`` is present only on a redacted line: the digest of the payload it replaced,
    which keeps the chain verifiable after a payload is erased.
    """

    v: int = ENVELOPE_VERSION
    seq: int
    ts: int
    writer: str
    type: str
    id: str
    data: msgspec.Raw
    b: int = 0
    dd: str | None = None
    prev: str
    hash: str


_ENVELOPE_ENCODER: Final = msgspec.json.Encoder()
_ENVELOPE_DECODER: Final = msgspec.json.Decoder(Envelope)
_HASH_ENCODER: Final = msgspec.json.Encoder()


def data_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chain_hash(v: int, seq: int, ts: int, writer: str, type_: str, id_: str, b: int, digest: str, prev: str) -> str:
    """Hash of a line: the envelope with the *digest* of its payload, chained to ``prev``.

    Fields are JSON-array encoded (unambiguous whatever the strings hold).
    """
    return hashlib.sha256(_HASH_ENCODER.encode([v, seq, ts, writer, type_, id_, b, digest, prev])).hexdigest()


def envelope_hash(env: Envelope) -> str:
    digest = env.dd if env.dd is not None else data_digest(env.data)
    return chain_hash(env.v, env.seq, env.ts, env.writer, env.type, env.id, env.b, digest, env.prev)


@dataclass(frozen=True)
class Recovery:
    """What opening the log had to repair."""

    segment: str
    offset: int
    dropped_bytes: int
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    events: int
    segments: int
    last_seq: int
    last_hash: str
    bytes: int


@dataclass
class _Tail:
    seq: int = 0
    hash: str = GENESIS_HASH
    ts: int = 0


class _Locked:
    __slots__ = ("lock", "fd")

    def __init__(self, lock: threading.RLock, fd: int) -> None:
        self.lock = lock
        self.fd = fd

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.lock.release()


def _now_us() -> int:
    return time.time_ns() // 1000


class EventLog:
    """A directory of segments. Thread-safe; many processes may open the same directory."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        durability: Durability = "batch",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        writer: str | None = None,
        genesis: StoreCreated | Callable[[], StoreCreated] | None = None,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        """Open (or create) the log in ``data_dir``.

        ``read_only`` opens an existing log for inspection (audits, replicas): nothing on
        disk is changed, not even a torn tail, which is reported in `recovered` instead.

        ``genesis`` is the first event of a new log, or a function making it: called only
        when the log is new (under the lock), so costly set-up (deriving a key) is paid once.
        """
        if durability not in DURABILITY_MODES:
            raise ConfigurationError(f"unknown durability {durability!r}; choose one of {', '.join(DURABILITY_MODES)}")
        if segment_bytes < 1024:
            raise ConfigurationError("segment_bytes must be at least 1024")
        self.path = Path(data_dir)
        self._sealed = False  # the current segment ends with a SegmentSealed event: a newer one exists
        self.durability: Durability = durability
        self.segment_bytes = segment_bytes
        self.sync_interval = sync_interval
        self.recovered: list[Recovery] = []
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._closed = False
        self._fd = -1
        self._seg_first = 0
        self._end = 0
        self._tail = _Tail()
        self._synced_seq = 0
        self._flusher: threading.Thread | None = None
        self._flush_wanted = threading.Event()
        self._stop = threading.Event()
        self._flush_error: BaseException | None = None
        self._hints: dict[int, tuple[int, int]] = {}
        self.read_only = read_only
        if read_only:
            create = False

        try:
            if create:
                self.path.mkdir(parents=True, exist_ok=True)
            elif not self.path.is_dir():
                raise ConfigurationError(f"data_dir {str(self.path)!r} does not exist")
            if not self.path.is_dir():
                raise ConfigurationError(f"data_dir {str(self.path)!r} is not a directory")
            if read_only:  # lock only among read-only openers: the directory itself, never written
                self._lock_fd = os.open(self.path, os.O_RDONLY)
            else:
                self._lock_fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except ConfigurationError:
            raise
        except OSError as e:
            raise ConfigurationError(f"cannot use data_dir {str(self.path)!r}: {e.strerror or e}") from e

        self.writer = writer or ""
        with self._locked():
            segments = self.segments()
            if segments:
                self._open_segment(segments[-1], self.path / segment_name(segments[-1]))
                self._repair_tail()
            elif create:
                self._open_segment(1, self.path / segment_name(1))
            else:
                raise ConfigurationError(f"no event log in {str(self.path)!r}")
            self._synced_seq = self._tail.seq
            if self._tail.seq == 0 and create:
                created = (genesis() if callable(genesis) else genesis) or StoreCreated(log_id=uuid.uuid4().hex[:16])
                self.writer = writer or created.log_id or "w0"
                self._write_locked([(StoreCreated.TYPE, STORE_ID, encode_payload(created))])
                self._sync_now()
                self._fsync_dir()  # a new segment's name must survive a power cut, as its bytes do
        if not self.writer:
            self.writer = self._log_id()

    # --- locking ---------------------------------------------------------------------

    def _locked(self) -> _Locked:
        """In-process lock, then the OS lock: threads and processes alike are ordered."""
        return _Locked(self._lock, self._lock_fd)

    # --- segments --------------------------------------------------------------------

    def segments(self) -> list[int]:
        """First seqs of the segments on disk, in log order."""
        firsts = [f for f in (parse_segment_name(n) for n in os.listdir(self.path)) if f is not None]
        firsts.sort()
        return firsts

    def segment_path(self, first_seq: int) -> Path:
        return self.path / segment_name(first_seq)

    def _open_segment(self, first: int, path: Path) -> None:
        self._sealed = False
        flags = os.O_RDONLY if self.read_only else os.O_RDWR | os.O_CREAT | os.O_APPEND
        fd = os.open(path, flags, 0o644)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._seg_first = first
        self._end = os.fstat(fd).st_size

    def _log_id(self) -> str:
        for env in self.read(1, 1):
            if env.type == StoreCreated.TYPE:
                created = msgspec.json.decode(env.data, type=StoreCreated)
                return created.log_id or "w0"
        return "w0"

    # --- tail maintenance (always under the lock) -------------------------------------

    def _repair_tail(self) -> None:
        """Bring our idea of the tail up to date with the files; cut a torn or half-written tail.

        Called on open and before every append, so it also takes in what other processes wrote.
        """
        while True:
            size = os.fstat(self._fd).st_size
            if size != self._end and self._tail.seq and self._replaced():
                # `rewrite_sealed_segment` (another handle) renamed a new file over this segment:
                # our fd is the old file and our offsets are stale. Take the new one from its start.
                self._open_segment(self._seg_first, self._fd_path())
                self._end = 0
                size = os.fstat(self._fd).st_size
            changed = size != self._end or self._tail.seq == 0 or size == 0
            if changed:
                self._scan_current(size)
            # Another process may have rolled: it wrote to this segment first (so it changed), and
            # its segment_bytes may differ from ours. A lone writer never pays for this listdir.
            if changed or self._end >= self.segment_bytes or self._sealed:
                newer = [f for f in self.segments() if f > self._seg_first]
                if newer:
                    nxt = newer[0]
                    if self._tail.seq and nxt != self._tail.seq + 1:
                        raise CorruptLogError(
                            f"segment starts at seq {nxt} but the previous one ends at {self._tail.seq}",
                            segment=segment_name(nxt), offset=0)
                    self._open_segment(nxt, self.segment_path(nxt))
                    self._end = 0  # not scanned yet: take in what others wrote there, from its start
                    continue
                if self._sealed and not self.read_only:  # sealed, but the next segment was never made
                    self._roll()
            return

    def _scan_current(self, size: int) -> None:
        """Read the current segment from the last known good end, validating and cutting a bad tail."""
        name = segment_name(self._seg_first)
        start = self._end if (self._tail.seq and self._end <= size) else 0
        if start == 0:
            self._tail = self._tail_before(self._seg_first)
        with open(self._fd_path(), "rb") as f:
            f.seek(start)
            buf = f.read(size - start)
        pos = 0
        good_end = start
        pending: list[Envelope] = []
        sealed = self._sealed if start else False
        tail = _Tail(self._tail.seq, self._tail.hash, self._tail.ts)
        committed = _Tail(tail.seq, tail.hash, tail.ts)
        while pos < len(buf):
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            env = self._decode_line(buf[pos:nl], name, start + pos)
            if env.seq != tail.seq + 1:
                raise CorruptLogError(f"expected seq {tail.seq + 1}, found {env.seq}", segment=name, offset=start + pos)
            if env.prev != tail.hash:
                raise ChainBrokenError(f"line does not chain to the one before (seq {env.seq})",
                                       segment=name, offset=start + pos, seq=env.seq)
            tail = _Tail(env.seq, env.hash, env.ts)
            pending.append(env)
            pos = nl + 1
            if env.b == 0:
                committed = _Tail(tail.seq, tail.hash, tail.ts)
                good_end = start + pos
                pending.clear()
                sealed = env.type == SegmentSealed.TYPE
        if good_end != size:
            dropped = size - good_end
            reason = "incomplete batch" if pending else "torn last line"
            if self.read_only:
                reason += " (left in place: opened read-only)"
            else:
                os.ftruncate(self._fd, good_end)
                if self.durability != "none":
                    os.fsync(self._fd)
            rec = Recovery(name, good_end, dropped, reason)
            if rec not in self.recovered:
                self.recovered.append(rec)
                log.warning("log recovery: %s, %d bytes at %s:%d", reason, dropped, name, good_end)
        self._end = good_end
        self._tail = committed
        self._sealed = sealed

    def _fd_path(self) -> Path:
        return self.segment_path(self._seg_first)

    def _tail_before(self, first: int) -> _Tail:
        """The last line of the segment before ``first`` (or genesis)."""
        if first <= 1:
            return _Tail()
        prev = [f for f in self.segments() if f < first]
        if not prev:
            raise CorruptLogError(f"segments before seq {first} are missing", segment=segment_name(first), offset=0)
        last = self._last_line(prev[-1])
        if last is None or last.seq != first - 1:
            raise CorruptLogError(f"segment before seq {first} does not end at seq {first - 1}",
                                  segment=segment_name(prev[-1]))
        return _Tail(last.seq, last.hash, last.ts)

    def _last_line(self, first: int) -> Envelope | None:
        path = self.segment_path(first)
        size = path.stat().st_size
        if size == 0:
            return None
        with open(path, "rb") as f:
            back = 4096
            while True:
                f.seek(max(0, size - back))
                buf = f.read()
                body = buf[:-1] if buf.endswith(b"\n") else buf
                cut = body.rfind(b"\n")
                if cut >= 0 or back >= size:
                    line = body[cut + 1:]
                    return self._decode_line(line, segment_name(first), size - len(buf) + cut + 1)
                back *= 4

    @staticmethod
    def _decode_line(line: bytes, segment: str, offset: int) -> Envelope:
        try:
            return _ENVELOPE_DECODER.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError) as e:  # msgspec raises the latter for bad UTF-8
            raise CorruptLogError(f"unreadable line: {e}", segment=segment, offset=offset) from e

    # --- appending -------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Last seq this handle knows of (call `refresh` to see other processes' appends)."""
        return self._tail.seq

    def refresh(self) -> int:
        """Take in what other processes appended; return the last seq."""
        self._check_open()
        with self._lock:
            size = os.fstat(self._fd).st_size
            if size == self._end and self._end < self.segment_bytes and not self._sealed:
                return self._tail.seq
        with self._locked():
            self._repair_tail()
            return self._tail.seq

    def append(self, entries: Sequence[tuple[str, str, bytes]],
               check: Callable[[], None] | None = None) -> list[Envelope]:
        """Append ``(type, id, data)`` entries as one all-or-nothing batch; return their envelopes.

        ``check``, if given, is called under the lock after the tail is current and before
        anything is written: it may raise to refuse the batch (e.g. a duplicate id).
        When this returns, the batch is as durable as the log's durability mode promises.
        """
        if not entries:
            return []
        self._check_writable()
        with self._locked():
            self._repair_tail()
            if check is not None:
                check()
            envs = self._write_locked(entries)
        self._after_write(envs[-1].seq)
        return envs

    def _write_locked(self, entries: Sequence[tuple[str, str, bytes]], roll: bool = True) -> list[Envelope]:
        tail = self._tail
        seq, prev, ts = tail.seq, tail.hash, tail.ts
        writer = self.writer
        remaining = len(entries) - 1
        envs: list[Envelope] = []
        parts: list[bytes] = []
        now = _now_us()
        for type_, id_, data in entries:
            seq += 1
            ts = now if now > ts else ts + 1
            h = chain_hash(ENVELOPE_VERSION, seq, ts, writer, type_, id_, remaining, data_digest(data), prev)
            env = Envelope(seq=seq, ts=ts, writer=writer, type=type_, id=id_, data=msgspec.Raw(data),
                           b=remaining, prev=prev, hash=h)
            parts.append(_ENVELOPE_ENCODER.encode(env))
            envs.append(env)
            prev = h
            remaining -= 1
        parts.append(b"")
        blob = b"\n".join(parts)
        start = self._end
        try:
            view = memoryview(blob)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:
            self._undo_partial(start)
            hint = "free disk space" if e.errno == errno.ENOSPC else "check permissions of data_dir"
            raise LogWriteError(f"append failed, nothing written: {e.strerror or e}", hint=hint) from e
        self._hints[envs[0].seq] = (self._seg_first, start)
        self._end = start + len(blob)
        self._tail = _Tail(seq, prev, ts)
        self._remember(seq + 1, self._seg_first, self._end)
        if roll and self._end >= self.segment_bytes:
            self._roll()
        return envs

    def _undo_partial(self, start: int) -> None:
        try:
            os.ftruncate(self._fd, start)
        except OSError:
            log.error("could not cut a partial append at %s:%d; it is cut on next open", self._fd_path(), start)

    def _remember(self, seq: int, seg: int, offset: int) -> None:
        hints = self._hints
        hints[seq] = (seg, offset)
        if len(hints) > 256:
            for k in list(hints)[:128]:
                hints.pop(k, None)  # readers evict concurrently (the read path takes no lock)

    def _roll(self) -> None:
        nxt = self._tail.seq + 1
        # In every mode: `flush` syncs only the current segment, so the one left behind must be
        # durable now (one fsync per segment, cheap even for ``none``).
        self._fsync(self._fd)
        self._open_segment(nxt, self.segment_path(nxt))
        self._fsync_dir()
        self._synced_seq = max(self._synced_seq, self._tail.seq)

    def _replaced(self) -> bool:
        """Is the file at our segment's name no longer the one our fd has open?"""
        try:
            on_disk = os.stat(self._fd_path())
        except FileNotFoundError:
            return False
        own = os.fstat(self._fd)
        return (on_disk.st_ino, on_disk.st_dev) != (own.st_ino, own.st_dev)

    def seal_segment(self) -> int:
        """End the current segment now and start a new one; return the first seq of the new one.

        The old segment's last event is a `SegmentSealed`, which is how other processes
        learn (from the size change they watch anyway) that they must move on. Sealed
        segments are never appended to again, so they can be rewritten (compaction).
        """
        self._check_writable()
        with self._locked():
            self._repair_tail()
            self._write_locked([(SegmentSealed.TYPE, STORE_ID, encode_payload(SegmentSealed()))], roll=False)
            self._roll()
            first = self._seg_first
        self._after_write(self._tail.seq)
        return first

    def rewrite_sealed_segment(self, first: int, fn: Callable[[Envelope], bytes | None], *,
                               match: bytes | None = None) -> int:
        """Replace the payload of some lines of a sealed segment; return how many lines changed.

        ``fn`` sees each line's envelope (only lines containing the bytes ``match``, if given)
        and returns new ``data`` for it, or None to keep it. A changed line keeps every other
        field and gets ``dd`` = the digest of its original payload (kept from an earlier
        rewrite), so its hash and the chain verify as before; a line whose hash did not verify
        is a `ChainBrokenError` and nothing is written. Under the log's lock (no writer or other
        rewriter interleaves): temp file, fsync, rename over the segment, fsync the directory,
        so a crash leaves the old segment or the new one. Only a sealed segment (a newer one
        follows it; writers never append to it again) can be rewritten: the active one is a
        `LogError` (`seal_segment` first). Other handles keep working: readers reopen segments
        by name and check remembered positions; a writer whose file was replaced rescans it.
        """
        self._check_writable()
        name = segment_name(first)
        with self._locked():
            self._repair_tail()
            segments = self.segments()
            if first not in segments:
                raise LogError(f"there is no segment {name} in {str(self.path)!r}")
            if first == self._seg_first or first == segments[-1]:
                raise LogError(f"segment {name} is the active one and cannot be rewritten",
                               hint="seal it first (EventLog.seal_segment)")
            path = self.segment_path(first)
            with open(path, "rb") as f:
                old = f.read()
            if old and not old.endswith(b"\n"):
                raise CorruptLogError("a sealed segment ends in the middle of a line", segment=name,
                                      offset=old.rfind(b"\n") + 1)
            out: list[bytes] = []
            changed = 0
            offset = 0
            for line in old.split(b"\n")[:-1]:
                line_off, offset = offset, offset + len(line) + 1
                if match is not None and match not in line:
                    out.append(line)
                    continue
                env = self._decode_line(line, name, line_off)
                data = fn(env)
                if data is None or data == bytes(env.data):
                    out.append(line)
                    continue
                dd = env.dd if env.dd is not None else data_digest(env.data)
                new = msgspec.structs.replace(env, data=msgspec.Raw(data), dd=dd)
                if envelope_hash(new) != env.hash:
                    raise ChainBrokenError("line was altered before this rewrite: its hash does not match",
                                           segment=name, offset=line_off, seq=env.seq)
                out.append(_ENVELOPE_ENCODER.encode(new))
                changed += 1
            if changed:
                out.append(b"")
                self._replace_file(path, b"\n".join(out))
        return changed

    def _replace_file(self, path: Path, blob: bytes) -> None:
        """Temp, fsync, rename, fsync dir: the file at ``path`` is the old one or ``blob``, never a mix."""
        tmp = path.with_name(f".{path.name}.rewrite")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.stat(path).st_mode & 0o777)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            self._fsync_dir()
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise LogWriteError(f"could not rewrite {path.name}, it is unchanged: {e.strerror or e}") from e

    def _after_write(self, seq: int) -> None:
        if self.durability == "always":
            self._sync_upto(seq)
        elif self.durability == "batch":
            self._ensure_flusher()
            self._flush_wanted.set()

    # --- durability ------------------------------------------------------------------

    @staticmethod
    def _fsync(fd: int) -> None:
        try:
            os.fdatasync(fd)
        except OSError as e:
            raise LogWriteError(f"fsync failed: {e.strerror or e}") from e

    def _fsync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_upto(self, seq: int) -> None:
        """Group commit: whoever gets the sync lock fsyncs for everybody written so far."""
        with self._sync_lock:
            if self._synced_seq >= seq:
                return
            self._sync_now_unlocked()

    def _sync_now_unlocked(self) -> None:
        with self._lock:
            target = self._tail.seq
            fd = os.dup(self._fd)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)
        if target > self._synced_seq:
            self._synced_seq = target

    def _sync_now(self) -> None:
        with self._sync_lock:
            self._sync_now_unlocked()

    def _ensure_flusher(self) -> None:
        if self._flusher is not None:
            return
        with self._lock:
            if self._flusher is None:
                ref = weakref.ref(self)
                t = threading.Thread(target=_flusher_loop, args=(ref, self._flush_wanted, self._stop),
                                     name=f"fabric-fsync-{self.path.name}", daemon=True)
                self._flusher = t
                t.start()

    def flush(self) -> None:
        """Make everything appended so far durable (fsync), whatever the mode."""
        self._check_open()
        if self._synced_seq < self._tail.seq:
            self._sync_now()
        if self._flush_error is not None:
            err, self._flush_error = self._flush_error, None
            raise LogWriteError(f"background fsync failed: {err}") from err

    @property
    def synced_seq(self) -> int:
        return self._synced_seq

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._fd >= 0 and self._synced_seq < self._tail.seq and not self.read_only:
                self._sync_now()
        finally:
            self._closed = True
            self._stop.set()
            self._flush_wanted.set()
            if self._flusher is not None and self._flusher is not threading.current_thread():
                self._flusher.join(timeout=5)
            with self._lock:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                os.close(self._lock_fd)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"the log at {str(self.path)!r} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"the log at {str(self.path)!r} was opened read-only")

    # --- reading ---------------------------------------------------------------------

    def read(self, start: int = 1, stop: int | None = None, *, verify: bool = True) -> Iterator[Envelope]:
        """Stream envelopes with ``start <= seq <= stop`` in order, holding one chunk at a time.

        Only whole batches are returned: a batch another process is still writing (or
        left torn) ends the stream without error. Damage before the end is an error, and
        so (``verify``, the default) is a line whose own hash does not match its content:
        a `ChainBrokenError` naming segment and offset. Links between lines are `verify`'s.
        """
        for env, _seg, _off in self.read_located(start, stop, verify=verify):
            yield env

    def read_located(self, start: int = 1, stop: int | None = None, *,
                     verify: bool = True) -> Iterator[tuple[Envelope, int, int]]:
        """Like `read`, with each line's segment (first seq) and byte offset."""
        start = max(start, 1)
        segments = self.segments()
        if not segments:
            return
        if segments[0] > start:  # the log begins at seq 1: its first segment(s) are gone
            raise CorruptLogError(f"segment {segment_name(1)} is missing: the oldest segment on disk starts at "
                                  f"seq {segments[0]}", segment=segment_name(segments[0]), offset=0)
        hint = self._hints.get(start)
        if hint is not None and hint[0] in segments and self._hint_ok(hint[0], hint[1], start, segments):
            idx = segments.index(hint[0])
            offset = hint[1]
        else:
            idx = 0
            for i, first in enumerate(segments):
                if first <= start:
                    idx = i
            offset = 0
        expect: int | None = None
        mark: tuple[int, int, int] | None = None  # (next seq, segment, offset) after the last whole batch
        try:
            for i in range(idx, len(segments)):
                first = segments[i]
                is_last = i == len(segments) - 1
                name = segment_name(first)
                if expect is not None and first != expect:
                    raise CorruptLogError(f"segment {segment_name(expect)} is missing: the one before ends at seq "
                                          f"{expect - 1}, the next on disk starts at seq {first}",
                                          segment=name, offset=0)
                last_seq: int | None = None
                for env, off, batch_end in self._scan_segment(first, offset, is_last, verify):
                    last_seq = env.seq
                    if env.b == 0:
                        mark = (env.seq + 1, first, batch_end)
                    if env.seq >= start and (stop is None or env.seq <= stop):
                        yield env, first, off
                    if stop is not None and env.seq >= stop:
                        return
                if offset == 0 and last_seq is None and not is_last:
                    raise CorruptLogError("empty segment in the middle of the log", segment=name, offset=0)
                expect = last_seq + 1 if last_seq is not None else None
                offset = 0
        finally:
            if mark is not None:
                self._remember(*mark)

    def _hint_ok(self, first: int, offset: int, seq: int, segments: list[int]) -> bool:
        """A remembered position is used only if the line there still is ``seq`` (segments can be rewritten)."""
        if offset == 0:
            return True
        try:
            with open(self.segment_path(first), "rb") as f:
                f.seek(offset)
                line = f.readline()
        except OSError:
            return False
        if not line.endswith(b"\n"):
            if line != b"":
                return False
            # the end of the file: right only at the log's tail, or where the next segment begins
            # (a rewritten, shorter segment puts old positions past its end: not the right place)
            later = [f for f in segments if f > first]
            return not later or later[0] == seq
        try:
            return _ENVELOPE_DECODER.decode(line).seq == seq
        except (msgspec.DecodeError, UnicodeDecodeError):
            return False

    def _scan_segment(self, first: int, offset: int, is_last: bool,
                      verify: bool = True) -> Iterator[tuple[Envelope, int, int]]:
        """Yield (envelope, offset, end of its batch) for whole batches from ``offset``."""
        name = segment_name(first)
        expect = first if offset == 0 else None
        pending: list[tuple[Envelope, int]] = []
        try:
            f = open(self.segment_path(first), "rb")
        except FileNotFoundError as e:
            raise CorruptLogError("segment vanished while reading", segment=name) from e
        with f:
            f.seek(offset)
            base = offset
            carry = b""
            while True:
                chunk = f.read(_READ_CHUNK)
                if not chunk:
                    break
                buf = carry + chunk
                pos = 0
                while True:
                    nl = buf.find(b"\n", pos)
                    if nl < 0:
                        break
                    line_off = base + pos
                    env = self._decode_line(buf[pos:nl], name, line_off)
                    if expect is not None and env.seq != expect:
                        raise CorruptLogError(f"expected seq {expect}, found {env.seq}", segment=name,
                                              offset=line_off)
                    if verify and envelope_hash(env) != env.hash:
                        raise ChainBrokenError(_ALTERED, segment=name, offset=line_off, seq=env.seq)
                    expect = env.seq + 1
                    pos = nl + 1
                    if env.b == 0 and not pending:
                        yield env, line_off, base + pos
                    else:
                        pending.append((env, line_off))
                        if env.b == 0:
                            end = base + pos
                            for p_env, p_off in pending:
                                yield p_env, p_off, end
                            pending.clear()
                base += pos
                carry = buf[pos:]
            if (carry or pending) and not is_last:
                off = pending[0][1] if pending else base
                raise CorruptLogError("segment ends in the middle of a line or batch", segment=name, offset=off)

    def verify(self) -> VerifyReport:
        """Check the whole chain: every hash, every link, dense seqs, segment names. Raises on the first fault."""
        prev = GENESIS_HASH
        count = 0
        last = 0
        total = 0
        segments = self.segments()
        for env, seg, off in self.read_located(1, verify=False):
            name = segment_name(seg)
            if env.seq != last + 1:
                raise ChainBrokenError(f"seq {last + 1} is missing", segment=name, offset=off, seq=last + 1)
            if env.prev != prev:
                raise ChainBrokenError("line does not chain to the one before", segment=name, offset=off, seq=env.seq)
            if envelope_hash(env) != env.hash:
                raise ChainBrokenError(_ALTERED, segment=name, offset=off, seq=env.seq)
            prev = env.hash
            last = env.seq
            count += 1
        for first in segments:
            total += self.segment_path(first).stat().st_size
        return VerifyReport(events=count, segments=len(segments), last_seq=last, last_hash=prev, bytes=total)

    def size_bytes(self) -> int:
        return sum(self.segment_path(f).stat().st_size for f in self.segments())


def _flusher_loop(ref: weakref.ReferenceType[EventLog], wanted: threading.Event, stop: threading.Event) -> None:
    """Background fsync for ``batch`` mode: at most one fsync per interval, as long as writes come."""
    while not stop.is_set():
        wanted.wait(1.0)
        if stop.is_set():
            return
        owner = ref()
        if owner is None:
            return
        interval = owner.sync_interval
        if wanted.is_set():
            wanted.clear()
            try:
                if owner._synced_seq < owner._tail.seq:
                    owner._sync_now()
            except BaseException as e:  # surfaced by the next flush()/close()
                owner._flush_error = e
        del owner
        if stop.wait(interval):
            return
