"""What happened to the store, as msgspec Structs.

Each payload struct carries a stable ``tag`` (its name in the log), so renaming a class
never changes the log. The tag travels in the envelope's ``type`` field and the payload in
its ``data`` field: a tagged union whose tag sits one level up, so the log layer can hash,
verify, ship and redact lines without decoding payloads at all.

Evolution rules (msgspec's): new fields get defaults, field types never change, unknown
fields are ignored. A new meaning is a new event type. An event type this version does
not know is an explicit `UnknownEventTypeError`, never a silent skip: a newer writer's
``forgotten`` skipped by an older reader would resurrect erased data.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec

from fabric.errors import CorruptLogError, UnknownEventTypeError

#: Version of the envelope written by this release (the ``v`` field of every line).
ENVELOPE_VERSION: Final = 1

#: ``id`` of events about the store itself rather than a record.
STORE_ID: Final = ""


class Embedding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An embedding vector, shaped like the seed's ``EmbeddingV1``."""

    vector: list[float]
    model: str = ""
    dimension: int = 0


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every payload. ``TYPE`` is its stable name in the log's ``type`` field."""

    TYPE: ClassVar[str] = ""


class StoreCreated(Event, frozen=True, kw_only=True, omit_defaults=True):
    """First event of every log: format, identity and (optional) encryption parameters."""

    TYPE: ClassVar[str] = "store_created"

    format: int = ENVELOPE_VERSION
    log_id: str = ""
    encryption: Any = None  # fabric.crypto.KeyParams as a plain dict, or None


class Stored(Event, frozen=True, kw_only=True, omit_defaults=True):
    """A record came into being. ``timestamp`` (µs) is set only when it differs from the event's ts (imports)."""

    TYPE: ClassVar[str] = "stored"

    content: str = ""
    metadata: msgspec.Raw = msgspec.Raw(b"{}")
    tags: list[str] = []
    memory_type: str = "conversation"
    storage_tier: str = "hot"
    embedding: Embedding | None = None
    timestamp: int | None = None
    access_count: int = 0
    last_accessed: int | None = None
    # encrypted stores: content/metadata/tags/embedding live in ``sealed`` under the record's data key
    sealed: bytes | None = None
    dek: bytes | None = None
    kid: str | None = None


class Updated(Event, frozen=True, kw_only=True, omit_defaults=True):
    """Some fields of a record changed; a field left unset is unchanged."""

    TYPE: ClassVar[str] = "updated"

    content: str | msgspec.UnsetType = msgspec.UNSET
    metadata: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    memory_type: str | msgspec.UnsetType = msgspec.UNSET
    storage_tier: str | msgspec.UnsetType = msgspec.UNSET
    embedding: Embedding | None | msgspec.UnsetType = msgspec.UNSET
    sealed: bytes | None = None
    kid: str | None = None
    dek: bytes | None = None  # encrypted stores: the record's data key, wrapped (as in its Stored event)


class Deleted(Event, frozen=True, kw_only=True, omit_defaults=True):
    """A record was deleted. History stays in the log (see `as_of`); `Forgotten` erases it."""

    TYPE: ClassVar[str] = "deleted"


class Accessed(Event, frozen=True, kw_only=True, omit_defaults=True):
    """A record was read ``count`` times since the last such event; ``at`` is the last read (µs)."""

    TYPE: ClassVar[str] = "accessed"

    count: int = 1
    at: int = 0


class Forgotten(Event, frozen=True, kw_only=True, omit_defaults=True):
    """A record was erased on request: its data key is destroyed and views drop it."""

    TYPE: ClassVar[str] = "forgotten"

    reason: str = ""


class KeyRotated(Event, frozen=True, kw_only=True, omit_defaults=True):
    """New events use a new store key from here on; old ones stay readable by their key id."""

    TYPE: ClassVar[str] = "key_rotated"

    encryption: Any = None
    # older store keys escrowed under the new one (`Keyring.export_key`), so its passphrase alone reads them
    wrapped_keys: list[bytes] = []
    # key ids retired by a re-encrypting compaction: nothing in the log needs them any more
    retired: list[str] = []


class SegmentSealed(Event, frozen=True, kw_only=True, omit_defaults=True):
    """The segment holding this event ends here, before its size bound (e.g. ahead of a compaction)."""

    TYPE: ClassVar[str] = "segment_sealed"


PAYLOAD_TYPES: Final[tuple[type[Event], ...]] = (
    StoreCreated, Stored, Updated, Deleted, Accessed, Forgotten, KeyRotated, SegmentSealed,
)


#: type tag -> payload class, derived from the classes so the two can never disagree.
EVENT_TYPES: Final[dict[str, type[Event]]] = {c.TYPE: c for c in PAYLOAD_TYPES}

_ENCODER: Final = msgspec.json.Encoder()
_DECODERS: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    tag: msgspec.json.Decoder(cls) for tag, cls in EVENT_TYPES.items()
}


def encode_payload(event: Event) -> bytes:
    """The ``data`` bytes of an event's log line."""
    return _ENCODER.encode(event)


def event_type(event: Event) -> str:
    return event.TYPE


def decode_payload(type_: str, data: bytes, *, segment: str | None = None, offset: int | None = None) -> Event:
    """Decode ``data`` as the payload of ``type_``; unknown types and bad payloads are loud."""
    decoder = _DECODERS.get(type_)
    if decoder is None:
        raise UnknownEventTypeError(type_, segment=segment, offset=offset)
    try:
        return decoder.decode(data)  # type: ignore[no-any-return]
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # msgspec raises the latter for bad UTF-8
        raise CorruptLogError(f"bad {type_!r} payload: {e}", segment=segment, offset=offset) from e
