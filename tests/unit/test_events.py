"""fabric.events: stable tags, encode/decode round trips, loud failures on unknown types and bad payloads."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.errors import CorruptLogError, LogError, UnknownEventTypeError
from fabric.events import (
    EVENT_TYPES,
    PAYLOAD_TYPES,
    Accessed,
    Deleted,
    Embedding,
    Event,
    Forgotten,
    KeyRotated,
    StoreCreated,
    Stored,
    Updated,
    decode_payload,
    encode_payload,
    event_type,
)

#: The on-disk names. Renaming a class must never change them (old logs would stop reading).
STABLE_TAGS: dict[str, type[Event]] = {
    "store_created": StoreCreated,
    "stored": Stored,
    "updated": Updated,
    "deleted": Deleted,
    "accessed": Accessed,
    "forgotten": Forgotten,
    "key_rotated": KeyRotated,
}

EMB = Embedding(vector=[0.5, -1.0, 3.25], model="m", dimension=3)

SAMPLES: list[Event] = [
    StoreCreated(log_id="abc123", encryption={"kdf": "scrypt", "salt": "00ff"}),
    StoreCreated(),
    Stored(content="héllo wörld \u2603", metadata=msgspec.Raw(b'{"a":[1,2.5,null,true],"b":{"c":"d"}}'),
           tags=["x", "y"], memory_type="knowledge", storage_tier="cold", embedding=EMB,
           timestamp=1_700_000_000_000_001, access_count=3, last_accessed=1_700_000_000_000_002),
    Stored(),
    Stored(content="sealed", sealed=b"\x00\x01\xff", dek=b"\x10" * 40, kid="k1"),
    Updated(content="new"),
    Updated(metadata=msgspec.Raw(b'{"k":1}'), tags=[], memory_type="context", storage_tier="auto"),
    Updated(embedding=None),  # clear the embedding: not the same as leaving it alone
    Updated(embedding=EMB),
    Updated(),
    Deleted(),
    Accessed(count=7, at=1_700_000_000_123_456),
    Accessed(),
    Forgotten(reason="user request"),
    Forgotten(),
    KeyRotated(encryption={"kid": "k2"}),
]


def _fields(ev: Event) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ev.__struct_fields__:
        value = getattr(ev, name)
        out[name] = bytes(value) if isinstance(value, msgspec.Raw) else value
    return out


def test_tags_are_stable() -> None:
    for tag, cls in STABLE_TAGS.items():
        assert cls.TYPE == tag
        assert EVENT_TYPES[tag] is cls


def test_every_payload_type_is_registered_under_its_tag() -> None:
    assert set(EVENT_TYPES.values()) == set(PAYLOAD_TYPES)
    assert len(EVENT_TYPES) == len(PAYLOAD_TYPES), "two payload types share a tag"
    for cls in PAYLOAD_TYPES:
        assert cls.TYPE and EVENT_TYPES[cls.TYPE] is cls


@pytest.mark.parametrize("event", SAMPLES + [cls() for cls in PAYLOAD_TYPES], ids=lambda e: type(e).__name__)
def test_round_trip(event: Event) -> None:
    data = encode_payload(event)
    assert isinstance(data, bytes)
    back = decode_payload(event_type(event), data)
    assert type(back) is type(event)
    assert _fields(back) == _fields(event)
    assert encode_payload(back) == data


def test_updated_distinguishes_unset_from_none() -> None:
    left_alone = decode_payload("updated", encode_payload(Updated(content="x")))
    cleared = decode_payload("updated", encode_payload(Updated(embedding=None)))
    assert isinstance(left_alone, Updated) and isinstance(cleared, Updated)
    assert left_alone.embedding is msgspec.UNSET
    assert cleared.embedding is None


def test_defaults_are_left_out_of_the_line() -> None:
    assert encode_payload(Deleted()) == b"{}"
    assert encode_payload(Stored(content="x")) == b'{"content":"x"}'
    assert encode_payload(Updated(content="x")) == b'{"content":"x"}'


def test_metadata_stays_raw_json() -> None:
    raw = b'{"z":1,"a":{"nested":[1,2]}}'
    data = encode_payload(Stored(metadata=msgspec.Raw(raw)))
    assert raw in data  # not re-encoded: key order and bytes kept
    back = decode_payload("stored", data)
    assert isinstance(back, Stored) and bytes(back.metadata) == raw


def test_unknown_fields_are_ignored() -> None:
    """Schema evolution: a newer writer's extra field does not stop an older reader."""
    back = decode_payload("stored", b'{"content":"x","added_in_v9":{"deep":[1]}}')
    assert isinstance(back, Stored) and back.content == "x"


def test_unknown_type_is_loud() -> None:
    with pytest.raises(UnknownEventTypeError) as info:
        decode_payload("teleported", b"{}", segment="memory_run_00000000000000000001.jsonl", offset=123)
    err = info.value
    assert isinstance(err, LogError)
    assert err.event_type == "teleported"
    assert "teleported" in str(err) and "memory_run_00000000000000000001.jsonl:123" in str(err)
    assert err.hint and "newer" in err.hint


@pytest.mark.parametrize("type_, data", [
    ("stored", b'{"content": 5}'),
    ("stored", b'{"tags": "not a list"}'),
    ("stored", b'{"metadata": {"a": }'),
    ("stored", b"[1, 2]"),
    ("stored", b""),
    ("stored", b'{"content": "x"'),
    ("stored", b'{"embedding": {"vector": "no"}}'),
    ("updated", b'{"memory_type": 3}'),
    ("accessed", b'{"count": "many"}'),
    ("accessed", b'{"at": 1.5}'),
    ("deleted", b"null"),
    ("store_created", b'{"format": "one"}'),
    ("stored", b'{"content": "\xff\xfe"}'),  # not UTF-8: msgspec raises UnicodeDecodeError, not DecodeError
    ("stored", b'{"tags": ["ok", "\xc3"]}'),
    ("forgotten", b'{"reason": "\xed\xa0\x80"}'),  # an encoded surrogate
])
def test_bad_payload_is_corrupt_log_error(type_: str, data: bytes) -> None:
    with pytest.raises(CorruptLogError) as info:
        decode_payload(type_, data, segment="memory_run_00000000000000000007.jsonl", offset=42)
    err = info.value
    assert err.segment == "memory_run_00000000000000000007.jsonl" and err.offset == 42
    assert "memory_run_00000000000000000007.jsonl" in str(err) and "42" in str(err)
    assert type_ in str(err)


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=50)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    content=_text,
    metadata=st.dictionaries(_text, _json, max_size=5),
    tags=st.lists(_text, max_size=5),
    vector=st.none() | st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=8),
    count=st.integers(0, 2**40),
)
def test_stored_round_trips_any_valid_record(content: str, metadata: dict, tags: list[str],  # type: ignore[type-arg]
                                              vector: list[float] | None, count: int) -> None:
    emb = None if vector is None else Embedding(vector=vector, dimension=len(vector))
    ev = Stored(content=content, metadata=msgspec.Raw(msgspec.json.encode(metadata)), tags=tags,
                embedding=emb, access_count=count)
    back = decode_payload("stored", encode_payload(ev))
    assert _fields(back) == _fields(ev)
    assert msgspec.json.decode(bytes(back.metadata)) == metadata  # type: ignore[attr-defined]
