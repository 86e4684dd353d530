"""The fold: events -> record state. One pure function, used by every view and by `as_of`.

`evolve` is the only place that says what an event means. Views differ in where they
keep the result, never in what it is. Concurrent writers are merged before folding (by
`merge_order`: hybrid-logical time, then writer), so any interleaving of the same events
yields the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

import msgspec

from fabric.events import Accessed, Deleted, Embedding, Event, Forgotten, Stored, Updated

SCHEMA_VERSION: Final = "1.0"


class Change(NamedTuple):
    """One decoded (and, for encrypted stores, decrypted) event, ready to fold."""

    id: str
    seq: int
    ts: int
    event: Event


class Record(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A record as views hold it: immutable, metadata kept as its JSON bytes (compact, never shared mutably)."""

    id: str
    content: str
    metadata: bytes
    tags: tuple[str, ...]
    memory_type: str
    storage_tier: str
    timestamp: int  # µs since the epoch, when it was stored
    access_count: int = 0
    last_accessed: int | None = None
    embedding: Embedding | None = None
    created_seq: int = 0
    seq: int = 0  # last event that changed it
    updated: int = 0  # µs, when it last changed


def evolve(current: Record | None, event: Event, *, id: str, seq: int, ts: int) -> Record | None:
    """The record after ``event`` (``None``: it does not exist). Pure; never mutates ``current``.

    - ``Stored`` creates the record (replacing a live one: last writer wins after a merge).
    - ``Updated`` changes the fields it sets; on a missing record it is a no-op.
    - ``Accessed`` adds to the access count and moves ``last_accessed`` forward.
    - ``Deleted`` and ``Forgotten`` end it.
    Events about the store itself (``id == ""``) leave records alone.
    """
    if isinstance(event, Stored):
        return Record(
            id=id,
            content=event.content,
            metadata=bytes(event.metadata),
            tags=tuple(event.tags),
            memory_type=event.memory_type,
            storage_tier=event.storage_tier,
            timestamp=event.timestamp if event.timestamp is not None else ts,
            access_count=event.access_count,
            last_accessed=event.last_accessed,
            embedding=event.embedding,
            created_seq=seq,
            seq=seq,
            updated=ts,
        )
    if current is None:
        return None
    if isinstance(event, Updated):
        changes: dict[str, object] = {"seq": seq, "updated": ts}
        if event.content is not msgspec.UNSET:
            changes["content"] = event.content
        if event.metadata is not msgspec.UNSET:
            changes["metadata"] = bytes(event.metadata)
        if event.tags is not msgspec.UNSET:
            changes["tags"] = tuple(event.tags)
        if event.memory_type is not msgspec.UNSET:
            changes["memory_type"] = event.memory_type
        if event.storage_tier is not msgspec.UNSET:
            changes["storage_tier"] = event.storage_tier
        if event.embedding is not msgspec.UNSET:
            changes["embedding"] = event.embedding
        return msgspec.structs.replace(current, **changes)
    if isinstance(event, Accessed):
        last = current.last_accessed
        at = event.at if last is None or event.at > last else last
        return msgspec.structs.replace(current, access_count=current.access_count + event.count, last_accessed=at)
    if isinstance(event, (Deleted, Forgotten)):
        return None
    return current


def fold(events: Iterable[tuple[str, int, int, Event]], state: dict[str, Record] | None = None) -> dict[str, Record]:
    """Apply ``(id, seq, ts, event)`` in order to ``state`` (a new dict if none) and return it."""
    records: dict[str, Record] = {} if state is None else state
    for id_, seq, ts, event in events:
        if not id_:
            continue
        new = evolve(records.get(id_), event, id=id_, seq=seq, ts=ts)
        if new is None:
            records.pop(id_, None)
        else:
            records[id_] = new
    return records


def merge_order(ts: int, writer: str, seq: int) -> tuple[int, str, int]:
    """Sort key that merges several writers' streams deterministically."""
    return (ts, writer, seq)
