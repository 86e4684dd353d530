"""What a data_dir remembers about shipping: its writer id, for good, and a progress cache.

- ``.s3_stream.json``: the writer id the data_dir ships as, and its log id. Written once,
  durably (temp, fsync, rename, fsync dir), before anything is shipped under the name: a
  later open that forgot it could ship the same log again as another writer.
- ``.s3_shipper.json``: the active shipper's progress (positions, state, last error, and
  what it shipped from each segment (`ShippedSegments`), so a segment rewritten while no
  shipper ran is still noticed). A cache: the bucket's checkpoint is the truth. It is created when shipping
  starts and then rewritten in place, never created by the shipper's thread (a data_dir being
  deleted under an open store must not see files reappear); readers tolerate a torn one.
- ``.s3_ship.lock``: the flock the one shipping process of a data_dir holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any, Final

import msgspec

STREAM_NAME: Final = ".s3_stream.json"
STATE_NAME: Final = ".s3_shipper.json"
LOCK_NAME: Final = ".s3_ship.lock"


def read_stream_name(data_dir: str | os.PathLike[str]) -> str | None:
    """The writer id a data_dir ships as (see `write_stream_name`), if it has shipped or been restored."""
    try:
        ident = msgspec.json.decode((Path(data_dir) / STREAM_NAME).read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    name = ident.get("stream") if isinstance(ident, dict) else None
    return name if isinstance(name, str) else None


def write_stream_name(data_dir: str | os.PathLike[str], *, stream: str, log_id: str) -> None:
    """Bind a data_dir to a writer id for good: temp, fsync, rename, fsync dir (it must survive a crash,
    or a later open could ship the same log again under another name)."""
    path = Path(data_dir) / STREAM_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, msgspec.json.encode({"format": 1, "stream": stream, "log_id": log_id}))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_stream_state(data_dir: str | os.PathLike[str], *, stream: str, log_id: str, target: str, log_seq: int,
                       log_hash: str, records_seq: int) -> None:
    """A restored data_dir: bound to its writer, with the progress the bucket's checkpoint had."""
    write_stream_name(data_dir, stream=stream, log_id=log_id)
    state = {"format": 1, "stream": stream, "log_id": log_id, "target": target, "log_seq": log_seq,
             "log_hash": log_hash, "records_seq": records_seq, "state": "restored", "error": None,
             "updated": time.time_ns() // 1000, "pid": os.getpid(), "inodes": {}}
    (Path(data_dir) / STATE_NAME).write_bytes(msgspec.json.encode(state))


class ProgressFile:
    """``.s3_shipper.json`` of one data_dir, for one stream, log and destination ("bucket/prefix")."""

    def __init__(self, data_dir: str | os.PathLike[str], *, stream: str, log_id: str, target: str) -> None:
        self.path = Path(data_dir) / STATE_NAME
        self.stream, self.log_id, self.target = stream, log_id, target

    def create(self) -> None:
        if not self.path.exists():
            self.path.touch()

    def write(self, fields: dict[str, Any]) -> None:
        state = {"format": 1, "stream": self.stream, "log_id": self.log_id, "target": self.target,
                 "updated": time.time_ns() // 1000, "pid": os.getpid(), **fields}
        with contextlib.suppress(OSError):  # in place, never created here
            fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, msgspec.json.encode(state))
            finally:
                os.close(fd)

    def read(self) -> dict[str, Any] | None:
        """The progress, if the file is whole and about this stream, log and destination."""
        try:
            state = msgspec.json.decode(self.path.read_bytes())
        except (OSError, msgspec.DecodeError):
            return None
        if not isinstance(state, dict) or (state.get("target"), state.get("stream"), state.get("log_id")) != (
                self.target, self.stream, self.log_id):
            return None
        return state


Signature = tuple[int, int, int]  # (inode, size, mtime_ns) of a segment file


def signature(fd: int) -> Signature:
    st = os.fstat(fd)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _Shipped:
    """What was shipped from one segment: its first ``length`` bytes and their running SHA-256
    (``length`` -1: unknown, e.g. after a restart whose cache was lost); ``final`` once the whole
    sealed segment was verified to be what was shipped."""

    __slots__ = ("length", "digest", "hexdigest", "final")

    def __init__(self, length: int = 0, digest: Any = None, final: Signature | None = None,
                 hexdigest: str = "") -> None:
        self.length = length
        self.digest = digest if digest is not None else hashlib.sha256()
        self.hexdigest = hexdigest  # of a final segment (its running hash is no longer needed)
        self.final = final


class ShippedSegments:
    """Which bytes of which segment went to the bucket, to notice segments rewritten in place.

    A sealed segment is rewritten only by a forget or a compaction, and only as a whole file
    renamed over the old one (possibly twice, so an inode number alone can come back). So:
    while a segment is shipped, the shipped bytes are hashed; once it is sealed and fully
    shipped, the file is hashed once and compared (different: ship it again); from then on its
    (inode, size, mtime_ns) is watched. Verification reads each segment once.
    """

    def __init__(self) -> None:
        self._segs: dict[int, _Shipped] = {}

    def note(self, segment: int, first: int, data: bytes) -> None:
        track = self._segs.get(segment)
        if track is None:
            track = self._segs[segment] = _Shipped(0 if first == segment else -1)
        if track.length >= 0:
            track.digest.update(data)
            track.length += len(data)

    def check(self, segments: list[int], shipped_seq: int, path_of: Any) -> list[int]:
        """Sealed, fully shipped segments whose file is not (or no longer) what was shipped."""
        stale: list[int] = []
        for i, seg in enumerate(segments[:-1]):
            track = self._segs.get(seg)
            if track is None or shipped_seq < segments[i + 1] - 1:
                continue
            try:
                fd = os.open(path_of(seg), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                sig = signature(fd)
                if track.final is not None:
                    if sig != track.final:
                        stale.append(seg)
                    continue
                if track.length == sig[1] and _hash_fd(fd) == track.digest.hexdigest():
                    track.final, track.hexdigest = sig, track.digest.hexdigest()
                else:
                    stale.append(seg)
            finally:
                os.close(fd)
        return stale

    def reshipped(self, segment: int, data: bytes, sig: Signature) -> None:
        digest = hashlib.sha256(data)
        self._segs[segment] = _Shipped(len(data), digest, sig, digest.hexdigest())

    def forget(self, segment: int) -> None:
        self._segs.pop(segment, None)

    def to_json(self) -> dict[str, Any]:
        return {str(seg): [t.length, t.hexdigest or t.digest.hexdigest(), list(t.final) if t.final else None]
                for seg, t in self._segs.items()}

    def load(self, saved: Any, path_of: Any) -> None:
        """Take in a saved state; an unfinished segment's running hash is rebuilt from the file
        (if the file no longer starts with what was shipped, it is marked unknown: shipped again)."""
        self._segs.clear()
        if not isinstance(saved, dict):
            return
        for key, value in saved.items():
            try:
                seg, (length, hexdigest, final) = int(key), value
            except (TypeError, ValueError):
                continue
            if final is not None:
                self._segs[seg] = _Shipped(int(length), final=tuple(final), hexdigest=str(hexdigest))  # type: ignore[arg-type]
                continue
            digest = hashlib.sha256()
            try:
                with open(path_of(seg), "rb") as f:
                    left = int(length)
                    while left > 0:
                        block = f.read(min(left, 4 << 20))
                        if not block:
                            break
                        digest.update(block)
                        left -= len(block)
            except OSError:
                continue
            ok = left == 0 and digest.hexdigest() == hexdigest
            self._segs[seg] = _Shipped(int(length), digest) if ok else _Shipped(-1)


def _hash_fd(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while True:
        block = os.pread(fd, 4 << 20, offset)
        if not block:
            return digest.hexdigest()
        digest.update(block)
        offset += len(block)
