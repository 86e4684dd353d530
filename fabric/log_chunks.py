"""The log as raw bytes, in chunks of whole batches: what the s3 backend ships.

A chunk is lines ``first..last`` of ONE segment, exactly as they are on disk (so a restore
can rebuild the segment files byte for byte), ending at the end of a batch (so a chunk
never holds part of an all-or-nothing batch). Reading goes through one file descriptor per
segment, so a segment renamed over meanwhile (a forget or a compaction rewriting it) cannot
mix old and new bytes within a read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from fabric.errors import StorageError
from fabric.log import Envelope, EventLog

_READ_BLOCK: Final = 4 << 20
_DECODER: Final = msgspec.json.Decoder(Envelope)


@dataclass
class Chunk:
    segment: int
    first: int
    last: int
    data: bytes
    last_hash: str


def read_chunks(log: EventLog, start: int, stop: int, *, max_bytes: int) -> Iterator[Chunk]:
    """Lines ``start..stop`` as chunks of whole batches, raw bytes as on disk, never across segments.

    ``stop`` must end a batch (as `EventLog.refresh` returns). Each segment file is read
    through one descriptor, so a file renamed over meanwhile cannot mix old and new bytes.
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
                    yield Chunk(segment, first, cut_seq, bytes(pending), last_hash)
                    pending.clear()
                    first, cut_at = cut_seq + 1, 0
        if cut_at:
            yield Chunk(segment, first, cut_seq, bytes(pending[:cut_at]), last_hash)
