"""Rebuilding logs from a bucket alone: every writer's stream, verified line by line.

`restore` lists ``<prefix>log/``, and for each writer picks a chain of chunks covering
lines 1, 2, ... with no gap (overlapping chunks, left by a crash between a chunk and its
checkpoint, hold the same lines and are trimmed), downloads them in parallel, checks
every line (dense seqs, each line's hash, each link to the line before, the segment it
belongs to) and writes the segment files exactly as the writer had them: for one writer
the restored log is byte-identical to the original, and `EventLog.verify` passes.

Where streams land in ``data_dir``:

- the *own* stream (``writer=``, or the only stream in the bucket unless ``replica``):
  the log of ``data_dir`` itself. The restored store *is* that writer from now on (same
  log id), and shipping resumes where the bucket's checkpoint says. Only one data_dir may
  do this per writer: if the original is still running, the first checkpoint either of
  them writes makes the other stop shipping with a conflict (nothing is overwritten).
- every other stream: ``data_dir/streams/<writer>/``, a read-only replica (its own
  segments and lock file). The s3 view folds replicas into the store's state by
  `fabric.state.merge_order`; nothing ever appends to them.

A checkpoint that promises more lines than the bucket holds is an error (`StorageError`,
naming the writer and the missing range); nothing is left behind in ``data_dir`` then.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from fabric.errors import ChainBrokenError, ConfigurationError, CorruptLogError, ObjectNotFoundError, StorageError
from fabric.events import StoreCreated
from fabric.log import GENESIS_HASH, Envelope, envelope_hash, segment_name
from fabric.objectstore import ObjectStore
from fabric.s3_layout import (
    LOG_DIR,
    Checkpoint,
    ChunkName,
    Owner,
    checkpoint_key,
    chunk_key,
    decode_checkpoint,
    decode_owner,
    owner_key,
    parse_log_key,
)
from fabric.ship_state import write_stream_state

STREAMS_DIR: Final = "streams"
_DECODER: Final = msgspec.json.Decoder(Envelope)
_CREATED_DECODER: Final = msgspec.json.Decoder(StoreCreated)

Progress = Callable[[int, int], None]  # (events restored, events expected)


@dataclass
class StreamInfo:
    """What the bucket holds for one writer."""

    writer: str
    owner: Owner | None = None
    checkpoint: Checkpoint | None = None
    chunks: list[ChunkName] = field(default_factory=list)

    @property
    def log_id(self) -> str | None:
        if self.owner is not None:
            return self.owner.log_id
        return self.checkpoint.log_id if self.checkpoint is not None else None


@dataclass
class StreamReport:
    writer: str
    log_id: str
    role: str  # "log" (the data_dir's own) or "replica"
    path: str
    events: int
    segments: int
    chunks: int
    bytes: int
    checkpoint_seq: int
    records_seq: int
    last_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RestoreReport:
    data_dir: str
    streams: list[StreamReport]
    seconds: float
    requests: dict[str, int]

    @property
    def events(self) -> int:
        return sum(s.events for s in self.streams)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, "events": self.events, "seconds": round(self.seconds, 3),
                "events_per_second": round(self.events_per_second), "requests": self.requests,
                "streams": [s.to_dict() for s in self.streams]}


def list_streams(store: ObjectStore, requests: dict[str, int] | None = None) -> dict[str, StreamInfo]:
    """Every writer under ``log/`` with its owner, checkpoint and chunk names (sorted)."""
    counts = requests if requests is not None else {}
    streams: dict[str, StreamInfo] = {}
    counts["list"] = counts.get("list", 0) + 1
    for key in store.list(LOG_DIR):
        name = parse_log_key(key)
        if name is None:
            continue
        info = streams.setdefault(name.writer, StreamInfo(name.writer))
        if isinstance(name, ChunkName):
            info.chunks.append(name)
    for info in streams.values():
        info.chunks.sort(key=lambda c: (c.first, -c.last))
        counts["get"] = counts.get("get", 0) + 2
        try:
            info.owner = decode_owner(store.get(owner_key(info.writer)), owner_key(info.writer))
        except ObjectNotFoundError:
            pass
        try:
            info.checkpoint = decode_checkpoint(store.get(checkpoint_key(info.writer)), checkpoint_key(info.writer))
        except ObjectNotFoundError:
            pass
    return streams


def plan_chunks(chunks: list[ChunkName]) -> list[tuple[ChunkName, int]]:
    """(chunk, lines to skip at its start): a gapless chain from line 1, as far as it goes."""
    ordered = sorted(chunks, key=lambda c: (c.first, -c.last))
    out: list[tuple[ChunkName, int]] = []
    expect = 1
    i = 0
    while True:
        best: ChunkName | None = None
        while i < len(ordered) and ordered[i].first <= expect:
            c = ordered[i]
            if c.last >= expect and (best is None or c.last > best.last):
                best = c
            i += 1
        if best is None:
            return out
        out.append((best, expect - best.first))
        expect = best.last + 1


def choose_own(streams: dict[str, StreamInfo], writer: str | None, replica: bool) -> str | None:
    """Which stream becomes the data_dir's own log (see the module docstring)."""
    if writer is not None:
        if writer not in streams:
            raise ConfigurationError(f"the bucket has no stream of writer {writer!r}; it has: "
                                     f"{', '.join(sorted(streams)) or 'none'}")
        return writer
    if replica or len(streams) != 1:
        return None
    return next(iter(streams))


def restore(store: ObjectStore, data_dir: str | os.PathLike[str], *, writer: str | None = None,
            replica: bool = False, target: str = "", workers: int = 8, progress: Progress | None = None,
            streams: dict[str, StreamInfo] | None = None) -> RestoreReport:
    """Rebuild every stream of the bucket into an empty ``data_dir``; see the module docstring.

    ``target`` ("bucket/prefix") is written into the own stream's local state, so the s3
    backend knows the data_dir already ships there.
    """
    began = time.perf_counter()
    root = Path(data_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigurationError(f"data_dir {str(root)!r} is not empty; restore needs an empty or new directory")
    requests: dict[str, int] = {}
    if streams is None:
        streams = list_streams(store, requests)
    if not streams:
        raise StorageError("the bucket holds no log streams to restore (nothing under log/)",
                           hint="check the bucket and prefix (IOA_FABRIC_S3_BUCKET, IOA_FABRIC_S3_PREFIX)")
    own = choose_own(streams, writer, replica)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".restore-{os.getpid()}"
    reports: list[StreamReport] = []
    try:
        total = sum(max((c.last for c in s.chunks), default=0) for s in streams.values())
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        for name in sorted(streams):
            info = streams[name]
            dest = work / ("own" if name == own else f"{STREAMS_DIR}/{name}")
            dest.mkdir(parents=True)
            report = _restore_stream(store, info, dest, workers, requests, tick)
            report.role = "log" if name == own else "replica"
            report.path = str(root if name == own else root / STREAMS_DIR / name)
            reports.append(report)
        # everything verified: move into place
        for report in reports:
            src = work / ("own" if report.role == "log" else f"{STREAMS_DIR}/{report.writer}")
            dst = Path(report.path)
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted(src.iterdir()):
                os.replace(f, dst / f.name)
            _fsync_dir(dst)
            if report.role == "log":
                ckpt = streams[report.writer].checkpoint
                write_stream_state(dst, stream=report.writer, log_id=report.log_id, target=target,
                                   log_seq=report.events, log_hash=report.last_hash,
                                   records_seq=min(ckpt.records_seq, report.events) if ckpt else 0)
        shutil.rmtree(work)
        _fsync_dir(root)
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        else:  # it was empty: leave it so
            for p in root.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        raise
    return RestoreReport(data_dir=str(root), streams=reports, seconds=time.perf_counter() - began,
                         requests=requests)


def _restore_stream(store: ObjectStore, info: StreamInfo, dest: Path, workers: int, requests: dict[str, int],
                    tick: Callable[[int], None]) -> StreamReport:
    plan = plan_chunks(info.chunks)
    ckpt = info.checkpoint
    expect = 1
    prev = GENESIS_HASH
    log_id: str | None = None
    segments = 0
    size = 0
    fd = -1
    current_segment = 0
    try:
        for (chunk, skip), data in _fetch(store, plan, workers, requests):
            if chunk.segment != current_segment:
                if expect != chunk.segment:
                    raise CorruptLogError(f"writer {info.writer!r}: segment {chunk.segment} does not start at "
                                          f"line {expect}", segment=segment_name(chunk.segment))
                if fd >= 0:
                    _close_file(fd)
                fd = os.open(dest / segment_name(chunk.segment), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                current_segment = chunk.segment
                segments += 1
            body, prev, count, log_id = _verify(info.writer, chunk, skip, data, expect, prev, log_id)
            _write_all(fd, body)
            size += len(body)
            expect += count
            tick(count)
        if fd >= 0:
            _close_file(fd)
            fd = -1
    finally:
        if fd >= 0:
            os.close(fd)
    last = expect - 1
    if ckpt is not None and last < ckpt.log_seq:
        missing_from = last + 1
        raise StorageError(f"writer {info.writer!r}: the bucket's checkpoint says lines up to {ckpt.log_seq} were "
                           f"shipped, but chunks for lines {missing_from}..{ckpt.log_seq} are missing",
                           hint="nothing was restored; check the bucket's lifecycle rules")
    if last == 0:
        raise StorageError(f"writer {info.writer!r} has no chunk starting at line 1")
    owner_id = info.log_id
    if owner_id is not None and log_id is not None and owner_id != log_id:
        raise CorruptLogError(f"writer {info.writer!r}: the chunks hold log {log_id}, the owner object says "
                              f"{owner_id}")
    return StreamReport(writer=info.writer, log_id=log_id or owner_id or "", role="", path="", events=last,
                        segments=segments, chunks=len(plan), bytes=size,
                        checkpoint_seq=ckpt.log_seq if ckpt else 0, records_seq=ckpt.records_seq if ckpt else 0,
                        last_hash=prev)


def _fetch(store: ObjectStore, plan: list[tuple[ChunkName, int]], workers: int,
           requests: dict[str, int]) -> Iterator[tuple[tuple[ChunkName, int], bytes]]:
    """Chunks in order, downloaded ``workers`` at a time (a bounded window ahead)."""
    window = max(1, workers) * 2
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="fabric-s3-get") as pool:
        pending: list[tuple[tuple[ChunkName, int], Future[bytes]]] = []
        it = iter(plan)
        for item in it:
            pending.append((item, pool.submit(store.get, chunk_key(*item[0]))))
            if len(pending) >= window:
                break
        while pending:
            item, fut = pending.pop(0)
            requests["get"] = requests.get("get", 0) + 1
            yield item, fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(store.get, chunk_key(*nxt[0]))))


def _verify(writer: str, chunk: ChunkName, skip: int, data: bytes, expect: int, prev: str,
            log_id: str | None) -> tuple[bytes, str, int, str | None]:
    """Check a chunk's lines; return (bytes to write, last hash, line count, log id)."""
    where = f"writer {writer!r}, chunk {chunk.first}-{chunk.last}"
    if not data.endswith(b"\n"):
        raise CorruptLogError(f"{where}: does not end with a whole line", segment=segment_name(chunk.segment))
    lines = data.split(b"\n")
    lines.pop()
    if len(lines) != chunk.last - chunk.first + 1:
        raise CorruptLogError(f"{where}: holds {len(lines)} lines", segment=segment_name(chunk.segment))
    keep = lines[skip:]
    last_b = 0
    for line in keep:
        try:
            env = _DECODER.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError) as e:
            raise CorruptLogError(f"{where}: unreadable line {expect}: {e}", seq=expect) from e
        if env.seq != expect:
            raise CorruptLogError(f"{where}: expected line {expect}, found {env.seq}", seq=expect)
        if env.prev != prev:
            raise ChainBrokenError(f"{where}: line {expect} does not chain to the line before", seq=expect)
        if envelope_hash(env) != env.hash:
            raise ChainBrokenError(f"{where}: line {expect} was altered (its hash does not match)", seq=expect)
        if expect == 1 and env.type == StoreCreated.TYPE:
            log_id = _CREATED_DECODER.decode(env.data).log_id or None
        prev = env.hash
        last_b = env.b
        expect += 1
    if last_b != 0:
        raise CorruptLogError(f"{where}: ends in the middle of a batch", seq=expect - 1)
    body = data if skip == 0 else b"".join(line + b"\n" for line in keep)
    return body, prev, len(keep), log_id


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close_file(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replica_dirs(data_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(writer, directory) of every replica restored into ``data_dir``, sorted by writer."""
    root = Path(data_dir) / STREAMS_DIR
    if not root.is_dir():
        return []
    return sorted((p.name, p) for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


__all__ = ["STREAMS_DIR", "RestoreReport", "StreamInfo", "StreamReport",
           "choose_own", "list_streams", "plan_chunks", "replica_dirs", "restore"]
