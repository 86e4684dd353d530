"""Forgetting (right to erasure): finding a record's lines in the log and redacting them.

A redacted line keeps its envelope — seq, ts, writer, type, record id, prev, hash — and
loses its payload: ``data`` becomes `REDACTED` (``{}``) and ``dd`` keeps the digest of the
payload it replaced, so `EventLog.verify` still proves the chain (see `envelope_hash`).
History therefore still shows *that* events of the record happened, when, and a
`Forgotten` event saying when it was forgotten, but never what they held. With
encryption the payload held the record's wrapped data key and its ciphertext: removing
it destroys the only copy of the key (crypto-shredding). Without encryption it held the
plaintext. Either way the same code removes it.

How a redacted line folds: codecs decode it as ``Forgotten(reason="redacted")``, so a
record whose lines were redacted is *absent* from every state, ``as_of`` before the
forget included. Nothing is invented in its place (a placeholder would be data the
record never had), and nothing of it is resurrected.

Only sealed segments are rewritten (`EventLog.rewrite_sealed_segment`, under the log's
lock, temp + fsync + rename): callers seal the active segment first. Finding lines is a
byte search for the record id's exact envelope encoding, then a decode of the few
candidate lines, so forgetting costs a read of the log, not a decode of every line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

import msgspec

from fabric.events import STORE_ID, Forgotten
from fabric.log import Envelope, EventLog
from fabric.state import Change

#: The payload of a redacted line.
REDACTED: Final = b"{}"
#: The ``reason`` of the `Forgotten` a redacted line decodes to.
REDACTED_REASON: Final = "redacted"
#: How many record ids one rewrite pass pre-filters by byte search (beyond that: decode every line).
_MAX_NEEDLES: Final = 64

_ENVELOPE_DECODER: Final = msgspec.json.Decoder(Envelope)
_FORGOTTEN_TYPE: Final = Forgotten.TYPE


def is_redacted(env: Envelope) -> bool:
    """Was this line's payload erased (rather than, say, rewrapped by a compaction)?"""
    return env.dd is not None and bytes(env.data) == REDACTED


def redacted_change(env: Envelope) -> Change:
    """What a redacted line means to the fold: the record is gone (see the module docstring)."""
    return Change(env.id, env.seq, env.ts, Forgotten(reason=REDACTED_REASON))


def id_needle(record_id: str) -> bytes:
    """The exact bytes of ``record_id`` in an envelope line (``id`` is followed by ``data``)."""
    return b'"id":' + msgspec.json.encode(record_id) + b',"data":'


def type_needle(event_type: str) -> bytes:
    """The exact bytes of an event type in an envelope line (``type`` is followed by ``id``)."""
    return b'"type":' + msgspec.json.encode(event_type) + b',"id":'


def find_lines(log: EventLog, needle: bytes, *, segments: list[int] | None = None) -> Iterator[Envelope]:
    """Envelopes of the complete lines that contain ``needle``, in log order (a byte search).

    Lines a writer has not finished (no newline yet) are skipped; callers check the
    decoded envelope's fields, since the needle may also occur inside a payload.
    """
    for first in log.segments() if segments is None else segments:
        try:
            buf = log.segment_path(first).read_bytes()
        except FileNotFoundError:
            continue
        pos = buf.find(needle)
        while pos >= 0:
            start = buf.rfind(b"\n", 0, pos) + 1
            end = buf.find(b"\n", pos)
            if end < 0:
                break
            try:
                yield _ENVELOPE_DECODER.decode(buf[start:end])
            except (msgspec.DecodeError, UnicodeDecodeError):
                pass  # damage is reported by reads and `verify`, not by a search
            pos = buf.find(needle, end)


def _contains_any(path_bytes: bytes, needles: list[bytes]) -> bool:
    return any(n in path_bytes for n in needles)


def redact(log: EventLog, forgotten: Mapping[str, int]) -> int:
    """Redact every line of each forgotten record that precedes its `Forgotten` event.

    ``forgotten`` maps record id -> seq of its `Forgotten` event. Lines of the record
    before that seq (whatever their type, except `Forgotten` itself) lose their payload;
    lines after it (a record re-created under the same id) are kept. Only sealed
    segments are rewritten; the caller seals the active one first. Returns how many
    lines were redacted now (0 when all already were: it is idempotent).
    """
    if not forgotten:
        return 0
    ids = {rid: seq for rid, seq in forgotten.items() if rid != STORE_ID}
    needles = [id_needle(rid) for rid in ids] if len(ids) <= _MAX_NEEDLES else None
    match = needles[0] if needles is not None and len(needles) == 1 else None
    total = 0

    def erase(env: Envelope) -> bytes | None:
        until = ids.get(env.id)
        if until is None or env.seq >= until or env.type == _FORGOTTEN_TYPE:
            return None
        return None if bytes(env.data) == REDACTED else REDACTED

    for first in log.segments()[:-1]:  # the last one is active: never rewritten
        if needles is not None:
            try:
                if not _contains_any(log.segment_path(first).read_bytes(), needles):
                    continue
            except FileNotFoundError:
                continue
        total += log.rewrite_sealed_segment(first, erase, match=match)
    return total


def forgotten_ids(log: EventLog) -> dict[str, int]:
    """Record id -> seq of its latest `Forgotten` event, for every record ever forgotten."""
    out: dict[str, int] = {}
    for env in find_lines(log, type_needle(_FORGOTTEN_TYPE)):
        if env.type == _FORGOTTEN_TYPE and env.id != STORE_ID:
            out[env.id] = max(env.seq, out.get(env.id, 0))
    return out


__all__ = ["REDACTED", "REDACTED_REASON", "find_lines", "forgotten_ids", "id_needle", "is_redacted",
           "redact", "redacted_change", "type_needle"]
