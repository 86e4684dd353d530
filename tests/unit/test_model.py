"""fabric.model: every bad input is an InvalidRecordError; ids; embeddings; times; the public record."""

from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from fabric.errors import InvalidInputError, InvalidRecordError
from fabric.events import Embedding
from fabric.model import (
    MAX_ID_LENGTH,
    MAX_METADATA_DEPTH,
    EmbeddingV1,
    MemoryRecord,
    MemoryType,
    StorageTier,
    check_content,
    check_embedding,
    check_id,
    check_memory_type,
    check_storage_tier,
    check_tags,
    datetime_to_us,
    encode_metadata,
    new_id,
    parse_when,
    to_public,
    us_to_datetime,
)
from fabric.state import Record


class Thing:
    pass


def nested_dict(depth: int) -> dict[str, Any]:
    """``depth`` levels of objects below the top one."""
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_list(depth: int) -> dict[str, Any]:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return {"a": value}


# --- content ----------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "plain", "ünïcödé ☃ 日本", "a\x00b", "line\nbreak", "x" * 100_000, "🧠" * 10])
def test_good_content(content: str) -> None:
    assert check_content(content) == content


@pytest.mark.parametrize("content", [None, 42, 4.2, b"bytes", bytearray(b"x"), ["list"], {"d": 1}, Thing(), "\ud800",
                                     "ok \udfff", "\ud83d"])
def test_bad_content(content: Any) -> None:
    with pytest.raises(InvalidRecordError) as info:
        check_content(content)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidInputError)


def test_lone_surrogate_error_says_where() -> None:
    with pytest.raises(InvalidRecordError, match="surrogate at index 3"):
        check_content("abc\ud800")


# --- metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("metadata, expected", [
    (None, {}),
    ({}, {}),
    ({"user": "u1", "n": 1, "f": 1.5, "b": True, "z": None}, {"user": "u1", "n": 1, "f": 1.5, "b": True, "z": None}),
    ({"l": [1, "a", None, [2, {"x": []}]]}, {"l": [1, "a", None, [2, {"x": []}]]}),
    ({"t": (1, 2)}, {"t": [1, 2]}),  # tuples are JSON arrays
    (OrderedDict(a=1), {"a": 1}),
    ({"ünï": "☃", "": "empty key is a key"}, {"ünï": "☃", "": "empty key is a key"}),
    ({"big": 2**63 - 1, "neg": -(2**63)}, {"big": 2**63 - 1, "neg": -(2**63)}),
    ({"long": "x" * 10_000}, {"long": "x" * 10_000}),
    (nested_dict(MAX_METADATA_DEPTH), nested_dict(MAX_METADATA_DEPTH)),
])
def test_good_metadata(metadata: Any, expected: dict[str, Any]) -> None:
    encoded = encode_metadata(metadata)
    assert isinstance(encoded, bytes)
    assert msgspec.json.decode(encoded) == expected


@pytest.mark.parametrize("metadata", [
    "a string",
    ["a", "list"],
    [("k", "v")],
    42,
    b"{}",
    Thing(),
    {1: "int key"},
    {None: "none key"},
    {("t",): "tuple key"},
    {"nested": {2: "int key below"}},
    {"\ud800": "surrogate key"},
    {"v": "\udc00 surrogate value"},
    {"nan": float("nan")},
    {"inf": float("inf")},
    {"ninf": float("-inf")},
    {"deep": [1, {"x": float("nan")}]},
    {"set": {1, 2}},
    {"frozenset": frozenset([1])},
    {"bytes": b"raw"},
    {"bytearray": bytearray(b"raw")},
    {"obj": Thing()},
    {"dt": datetime(2024, 1, 1)},
    {"decimal": Decimal("1.5")},
    {"uuid": uuid.uuid4()},
    {"type": int},
    {"func": len},
    {"list_of_set": [{1}]},
    nested_dict(MAX_METADATA_DEPTH + 1),
    nested_list(MAX_METADATA_DEPTH + 1),
    nested_dict(10_000),
])
def test_bad_metadata(metadata: Any) -> None:
    with pytest.raises(InvalidRecordError) as info:
        encode_metadata(metadata)
    assert isinstance(info.value, ValueError)


def test_metadata_cycle_is_an_error_not_a_crash() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(InvalidRecordError):
        encode_metadata(loop)


def test_metadata_error_names_the_path() -> None:
    with pytest.raises(InvalidRecordError, match=r"metadata\.a\.b\[1\]"):
        encode_metadata({"a": {"b": [1, float("nan")]}})


# --- tags, types, tiers -----------------------------------------------------------------


@pytest.mark.parametrize("tags, expected", [
    (None, []), ([], []), (["a", "b"], ["a", "b"]), (("x",), ["x"]), (["", "ü", "with space"], ["", "ü", "with space"]),
])
def test_good_tags(tags: Any, expected: list[str]) -> None:
    out = check_tags(tags)
    assert out == expected
    if isinstance(tags, list):
        assert out is not tags  # a copy: the caller's list can change afterwards


@pytest.mark.parametrize("tags", ["a,b", b"ab", {"a"}, {"a": 1}, 3, ["ok", 3], ["ok", None], [b"x"], ["\ud800"],
                                  Thing(),
                                  (t for t in ["gen"])])
def test_bad_tags(tags: Any) -> None:
    with pytest.raises(InvalidRecordError):
        check_tags(tags)


@pytest.mark.parametrize("value", ["conversation", "knowledge", "context", "metadata", MemoryType.KNOWLEDGE])
def test_good_memory_type(value: Any) -> None:
    assert check_memory_type(value) == str(getattr(value, "value", value))
    assert type(check_memory_type(value)) is str


@pytest.mark.parametrize("value", ["Knowledge", "KNOWLEDGE", "memory", "", None, 1, StorageTier.HOT, ["knowledge"]])
def test_bad_memory_type(value: Any) -> None:
    with pytest.raises(InvalidRecordError, match="memory_type"):
        check_memory_type(value)


@pytest.mark.parametrize("value", ["hot", "cold", "auto", StorageTier.COLD])
def test_good_storage_tier(value: Any) -> None:
    assert check_storage_tier(value) == str(getattr(value, "value", value))


@pytest.mark.parametrize("value", ["HOT", "warm", "", None, 0, MemoryType.CONTEXT])
def test_bad_storage_tier(value: Any) -> None:
    with pytest.raises(InvalidRecordError, match="storage_tier"):
        check_storage_tier(value)


# --- ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("rid", ["a", "mem-a", "0", "with space", "ünï☃", "a.b", "...", ".hidden", "x" * MAX_ID_LENGTH,
                                 "550e8400-e29b-41d4-a716-446655440000"])
def test_good_ids(rid: str) -> None:
    assert check_id(rid) == rid


@pytest.mark.parametrize("rid", ["", ".", "..", "a/b", "/", "a\\b", "\\", "a\x00b", "tab\t", "new\nline", "\x7f",
                                 "\x1b[31m",
                                 "x" * (MAX_ID_LENGTH + 1), "\ud800", None, 1, b"id", ["id"]])
def test_bad_ids(rid: Any) -> None:
    with pytest.raises(InvalidRecordError):
        check_id(rid)


def test_new_id_is_a_uuid7() -> None:
    rid = new_id()
    u = uuid.UUID(rid)
    assert str(u) == rid and u.version == 7 and u.variant == uuid.RFC_4122
    assert check_id(rid) == rid
    ms = int(rid.replace("-", "")[:12], 16)
    now_ms = datetime.now(UTC).timestamp() * 1000
    assert abs(ms - now_ms) < 3_600_000  # carries the time (loose: clocks)


def test_new_id_is_unique_and_time_ordered_over_100k_calls() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # strictly increasing: sorts as it was made, so SQLite inserts in key order


def test_new_id_across_threads() -> None:
    per_thread: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def make(out: list[str]) -> None:
        start.wait()
        for _ in range(5000):
            out.append(new_id())

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in per_thread for i in out]
    assert len(set(everything)) == len(everything) == 40_000
    for out in per_thread:
        assert out == sorted(out)


def test_new_id_after_fork_does_not_repeat_the_parent() -> None:
    new_id()  # make sure the parent has random bytes buffered
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_end)
            os.write(write_end, "\n".join(new_id() for _ in range(500)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parent = {new_id() for _ in range(500)}
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    child = set(b"".join(chunks).decode().split("\n"))
    assert len(child) == 500
    assert not parent & child
    assert not {i[19:] for i in parent} & {i[19:] for i in child}  # not even the random tails


# --- embeddings -------------------------------------------------------------------------


class HasVector:
    def __init__(self, vector: Any, model: str = "x") -> None:
        self.vector = vector
        self.model = model


@pytest.mark.parametrize("value, expected", [
    (None, None),
    ([1, 2.5], Embedding(vector=[1.0, 2.5], dimension=2)),
    ((0.0,), Embedding(vector=[0.0], dimension=1)),
    (Embedding(vector=[1.0], model="m", dimension=1), Embedding(vector=[1.0], model="m", dimension=1)),
    (EmbeddingV1(vector=[3.0, 4.0], model="m"), Embedding(vector=[3.0, 4.0], model="m", dimension=2)),
    ({"vector": [1, 2, 3], "model": "ada", "dimension": 3},
     Embedding(vector=[1.0, 2.0, 3.0], model="ada", dimension=3)),
    ({"vector": [1]}, Embedding(vector=[1.0], dimension=1)),
    (HasVector([5, 6]), Embedding(vector=[5.0, 6.0], model="x", dimension=2)),
])
def test_embedding_forms(value: Any, expected: Embedding | None) -> None:
    assert check_embedding(value) == expected


def test_embedding_is_copied() -> None:
    vector = [1.0, 2.0]
    emb = check_embedding(vector)
    vector[0] = 99.0
    assert emb is not None and emb.vector == [1.0, 2.0]


@pytest.mark.parametrize("value", [
    [], (), "1,2", 3.0, {"model": "m"}, {"vector": []}, {"vector": "abc"}, [1, "2"], [1, None], [True, 1.0],
    [float("nan")], [float("inf")], {"vector": [1.0], "dimension": 2}, {"vector": [1.0], "dimension": "1"},
    {"vector": [1.0], "model": 5}, {"vector": [1.0], "dimension": True}, HasVector([1], model=None),  # type: ignore[arg-type]
    Thing(), b"\x00\x01",
])
def test_bad_embeddings(value: Any) -> None:
    with pytest.raises(InvalidRecordError):
        check_embedding(value)


# --- times ------------------------------------------------------------------------------


def test_time_conversions() -> None:
    dt = datetime(2025, 10, 9, 12, 30, 1, 123456, tzinfo=UTC)
    us = datetime_to_us(dt)
    assert us_to_datetime(us) == dt
    assert us_to_datetime(us).tzinfo is not None
    assert datetime_to_us(dt.replace(tzinfo=None)) == us  # naive means UTC
    assert datetime_to_us(dt.astimezone(timezone(timedelta(hours=5)))) == us
    assert parse_when(dt) == us
    assert parse_when("2025-10-09T12:30:01.123456Z") == us
    assert parse_when("2025-10-09T12:30:01.123456+00:00") == us
    assert parse_when(us / 1_000_000) // 1000 == us // 1000
    assert parse_when(0) == 0


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01", "", None, True, [2025], b"2025-01-01"])
def test_bad_times(value: Any) -> None:
    with pytest.raises(InvalidRecordError):
        parse_when(value)


def test_microsecond_round_trip_over_the_range() -> None:
    for us in [0, 1, 999_999, 1_700_000_000_000_001, 1_795_588_956_548_707, 4_102_444_800_000_000 - 1]:
        assert datetime_to_us(us_to_datetime(us)) == us


# --- the public record ------------------------------------------------------------------


def _record(**kw: Any) -> Record:
    base: dict[str, Any] = dict(id="r1", content="c", metadata=b'{"a":[1]}', tags=("t",), memory_type="knowledge",
                                storage_tier="cold", timestamp=1_700_000_000_000_000, access_count=2,
                                last_accessed=1_700_000_000_500_000, embedding=Embedding(vector=[1.0], dimension=1),
                                created_seq=3, seq=4, updated=1)
    base.update(kw)
    return Record(**base)


def test_to_public_is_shaped_like_the_seed() -> None:
    rec = to_public(_record())
    assert isinstance(rec, MemoryRecord)
    assert rec.memory_type is MemoryType.KNOWLEDGE and rec.memory_type.value == "knowledge"
    assert rec.storage_tier is StorageTier.COLD and rec.storage_tier.value == "cold"
    assert rec.metadata == {"a": [1]} and rec.tags == ["t"]
    assert rec.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert rec.access_count == 2 and rec.schema_version == "1.0" and rec.seq == 4
    d = rec.to_dict()
    assert set(d) >= {"id", "content", "metadata", "timestamp", "tags", "storage_tier", "memory_type", "access_count",
                      "last_accessed", "embedding", "schema_version"}
    assert d["memory_type"] == "knowledge" and d["storage_tier"] == "cold"
    assert isinstance(d["timestamp"], str) and d["timestamp"].startswith("2023-11-14T22:13:20")
    assert msgspec.json.decode(msgspec.json.encode(d)) == d


def test_to_public_adds_pending_accesses() -> None:
    rec = to_public(_record(), extra_access=(3, 1_700_000_000_900_000))
    assert rec.access_count == 5
    assert rec.last_accessed == us_to_datetime(1_700_000_000_900_000)
    older = to_public(_record(), extra_access=(1, 1))
    assert older.last_accessed == us_to_datetime(1_700_000_000_500_000)
    never = to_public(_record(access_count=0, last_accessed=None))
    assert never.last_accessed is None


def test_public_records_are_independent_copies() -> None:
    internal = _record()
    a = to_public(internal)
    a.metadata["a"].append(2)
    a.tags.append("x")
    assert a.embedding is not None
    a.embedding.vector.append(5.0)
    b = to_public(internal)
    assert b.metadata == {"a": [1]} and b.tags == ["t"]
    assert b.embedding is not None and b.embedding.vector == [1.0]
    assert internal.embedding is not None and internal.embedding.vector == [1.0]
