"""MemoryFabric, the seed-compatible facade: API shape, reads and writes, errors, snapshots, several instances."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_dense, log_seqs, raw_lines, run_python, segment_files

from fabric import MemoryFabric, MemoryRecord, MemoryType, StorageTier
from fabric.errors import (
    ConfigurationError,
    DuplicateRecordError,
    FabricError,
    InvalidInputError,
    InvalidQueryError,
    InvalidRecordError,
    LogClosedError,
    ReadOnlyError,
    RecordNotFoundError,
)
from fabric.events import Embedding
from fabric.log import EventLog


@pytest.fixture
def fab(tmp_path: Path) -> Iterator[MemoryFabric]:
    with MemoryFabric(config={"data_dir": str(tmp_path / "store")}) as f:
        yield f


def _log_bytes(f: MemoryFabric) -> bytes:
    return b"".join(p.read_bytes() for p in segment_files(f.data_dir))


def _unchanged(f: MemoryFabric) -> tuple[int, bytes]:
    return f.log.refresh(), _log_bytes(f)


# --- the seed's API ---------------------------------------------------------------------


def test_seed_signatures() -> None:
    def params(fn: Any) -> list[tuple[str, Any]]:
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values() if p.name != "self"
                and p.kind is p.POSITIONAL_OR_KEYWORD]

    empty = inspect.Parameter.empty
    assert params(MemoryFabric.__init__) == [("backend", None), ("config", None), ("encryption_key", None),
                                             ("enable_metrics", True)]
    assert params(MemoryFabric.store) == [("content", empty), ("metadata", None), ("tags", None),
                                          ("memory_type", "conversation"), ("storage_tier", "hot"),
                                          ("record_id", None), ("embedding", None)]
    assert params(MemoryFabric.retrieve) == [("record_id", empty)]
    assert params(MemoryFabric.search)[:4] == [("query", empty), ("limit", 10), ("memory_type", None),
                                               ("storage_tier", None)]
    assert params(MemoryFabric.delete) == [("record_id", empty)]
    assert params(MemoryFabric.list_all)[:1] == [("limit", None)]
    for name in ("get_stats", "health_check", "flush", "close"):
        assert callable(getattr(MemoryFabric, name))


def test_store_positionally_like_the_seed(fab: MemoryFabric) -> None:
    emb = Embedding(vector=[0.1, 0.2, 0.3], model="tiny", dimension=3)
    rid = fab.store("Dana likes tea", {"user": "dana"}, ["prefs"], "knowledge", "cold", "mem-1", emb)
    assert rid == "mem-1"
    rec = fab.retrieve("mem-1")
    assert isinstance(rec, MemoryRecord)
    assert (rec.id, rec.content, rec.metadata, rec.tags) == ("mem-1", "Dana likes tea", {"user": "dana"}, ["prefs"])
    assert rec.memory_type is MemoryType.KNOWLEDGE and rec.storage_tier is StorageTier.COLD
    assert rec.embedding == emb
    assert rec.schema_version == "1.0"
    assert rec.timestamp.tzinfo is not None
    default = fab.retrieve(fab.store("plain"))
    assert default is not None
    assert (default.memory_type.value, default.storage_tier.value, default.metadata, default.tags) == (
        "conversation", "hot", {}, [])


def test_the_seeds_migration_snippet(tmp_path: Path) -> None:
    """The seed's documented migration, verbatim apart from the data_dirs."""
    with MemoryFabric(backend="local_jsonl", config={"data_dir": str(tmp_path / "src")}) as seeding:
        seeding.store("first", {"n": 1}, ["a"], "knowledge", "cold", "mem-a")
        seeding.store("second", {"n": 2, "deep": {"x": [1]}}, [], "context", "auto", "mem-b")
        seeding.store("third", None, ["t1", "t2"])

    source = MemoryFabric(backend="local_jsonl", config={"data_dir": str(tmp_path / "src")})
    records = source.list_all()

    target = MemoryFabric(backend="local_jsonl", config={"data_dir": str(tmp_path / "dst")})
    for record in records:
        target.store(
            record.content,
            record.metadata,
            record.tags,
            record.memory_type.value,
            record.storage_tier.value,
            record.id
        )

    def shape(r: MemoryRecord) -> tuple[Any, ...]:
        return r.id, r.content, r.metadata, r.tags, r.memory_type, r.storage_tier

    assert [shape(r) for r in target.list_all()] == [shape(r) for r in records]
    assert len(records) == 3
    source.close()
    target.close()


def test_store_many_keeps_timestamps_of_migrated_records(tmp_path: Path) -> None:
    with MemoryFabric(config={"data_dir": str(tmp_path / "a")}) as a:
        a.store("old", {"k": 1}, ["x"], "knowledge", "cold", "r1", [1.0, 2.0])
        original = a.list_all()
    with MemoryFabric(config={"data_dir": str(tmp_path / "b")}) as b:
        assert b.store_many(original) == ["r1"]
        (copy,) = b.list_all()
    assert copy.timestamp == original[0].timestamp
    assert (copy.content, copy.metadata, copy.tags, copy.embedding) == ("old", {"k": 1}, ["x"], original[0].embedding)


# --- retrieve and access counts ---------------------------------------------------------


def test_retrieve_counts_accesses_and_persists_them(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "s")
    with MemoryFabric(config={"data_dir": data_dir}) as f:
        rid = f.store("remember me")
        other = f.store("not read")
        assert f.list_all()[0].access_count == 0
        for n in range(1, 4):
            rec = f.retrieve(rid)
            assert rec is not None and rec.access_count == n and rec.last_accessed is not None
        assert f.retrieve("no-such-id") is None
        listed = {r.id: r for r in f.list_all()}  # listing is not an access, but shows the count
        assert listed[rid].access_count == 3 and listed[other].access_count == 0
        assert listed[other].last_accessed is None
        last = listed[rid].last_accessed
    accessed = [ln.env for ln in raw_lines(Path(data_dir)) if ln.env["type"] == "accessed"]
    assert len(accessed) == 1, "reads are batched into Accessed events, not one event each"
    assert accessed[0]["id"] == rid and accessed[0]["data"]["count"] == 3
    with MemoryFabric(config={"data_dir": data_dir}) as again:
        listed = {r.id: r for r in again.list_all()}
        assert listed[rid].access_count == 3 and listed[rid].last_accessed == last
        rec = again.retrieve(rid)
        assert rec is not None and rec.access_count == 4


def test_flush_makes_accesses_visible_to_another_instance(tmp_path: Path) -> None:
    cfg = {"data_dir": str(tmp_path / "s")}
    with MemoryFabric(config=cfg) as a, MemoryFabric(config=cfg) as b:
        rid = a.store("x")
        a.retrieve(rid)
        a.retrieve(rid)
        seen = b.retrieve(rid)
        assert seen is not None and seen.access_count == 1  # b's own read; a's are still pending
        a.flush()
        listed = b.list_all()
        assert listed[0].access_count == 3


def test_accesses_of_a_deleted_record_are_dropped(fab: MemoryFabric) -> None:
    rid = fab.store("x")
    fab.retrieve(rid)
    assert fab.delete(rid) is True
    fab.flush()
    assert fab.retrieve(rid) is None
    assert [ln.env["type"] for ln in raw_lines(fab.data_dir)].count("accessed") == 0


def test_retrieve_rejects_non_string_ids(fab: MemoryFabric) -> None:
    with pytest.raises(InvalidInputError):
        fab.retrieve(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        fab.retrieve(None)  # type: ignore[arg-type]


# --- search, list, count ----------------------------------------------------------------


@pytest.fixture
def corpus(fab: MemoryFabric) -> MemoryFabric:
    fab.store("Dana prefers dark mode in every editor", {"user": "dana", "priority": 5}, ["prefs"], "knowledge", "hot",
              "d1")
    fab.store("dark chocolate and dark coffee, dark roast", {"user": "sam", "priority": 1}, ["food"], "conversation",
              "cold", "s1")
    fab.store("Sam prefers light mode", {"user": "sam", "priority": 7}, ["prefs"], "knowledge", "hot", "s2")
    fab.store("Dana is allergic to peanuts", {"user": "dana", "priority": 9, "tags": ["health"]}, ["health", "food"],
              "knowledge", "cold", "d2")
    fab.store("Meeting notes: dark mode rollout", {"user": "dana"}, [], "context", "auto", "d3")
    return fab


def ids(records: list[MemoryRecord]) -> list[str]:
    return [r.id for r in records]


def test_search_ranks_by_bm25_and_needs_every_word(corpus: MemoryFabric) -> None:
    assert ids(corpus.search("dark")) == ["s1", "d3", "d1"]  # three 'dark's beat one; then the shorter text
    assert set(ids(corpus.search("dark mode"))) == {"d1", "d3"}
    assert ids(corpus.search("DARK   Mode!")) == ids(corpus.search("dark mode"))
    assert ids(corpus.search("food")) == ["s1", "d2"] or ids(corpus.search("food")) == ["d2", "s1"]  # tags are searched
    assert corpus.search("nothing-matches-this") == []
    hits = corpus.search_hits("dark")
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True) and hits[0].score > 0


def test_search_filters(corpus: MemoryFabric) -> None:
    assert ids(corpus.search("mode", memory_type="knowledge")) == ["d1", "s2"] or \
        sorted(ids(corpus.search("mode", memory_type="knowledge"))) == ["d1", "s2"]
    assert ids(corpus.search("dark", 10, None, "auto")) == ["d3"]
    assert ids(corpus.search("dark", 10, MemoryType.CONVERSATION, StorageTier.COLD)) == ["s1"]
    assert ids(corpus.search("prefers", where={"user": "sam"})) == ["s2"]
    assert set(ids(corpus.search("", where={"priority": {"$gte": 5}}))) == {"d1", "s2", "d2"}
    assert ids(corpus.search("", tags=["health", "food"])) == ["d2"]
    assert ids(corpus.search("", where={"priority": {"$exists": False}})) == ["d3"]
    assert set(ids(corpus.search("", where={"$or": [{"user": "sam"}, {"priority": 9}]}))) == {"s1", "s2", "d2"}


def test_search_without_text_is_newest_first_and_pages(corpus: MemoryFabric) -> None:
    everything = ids(corpus.search("", limit=100))
    assert everything == ["d3", "d2", "s2", "s1", "d1"]
    assert ids(corpus.search("", limit=2)) == everything[:2]
    assert ids(corpus.search("", limit=2, offset=2)) == everything[2:4]
    assert ids(corpus.search("", limit=2, offset=4)) == everything[4:]
    assert corpus.search("", limit=2, offset=10) == []
    assert corpus.search("", limit=0) == []
    ranked = ids(corpus.search("dark", limit=100))
    assert ids(corpus.search("dark", limit=1, offset=1)) == ranked[1:2]


@pytest.mark.parametrize("kwargs", [
    {"query": "!!!"},
    {"query": "x", "limit": -1},
    {"query": "x", "limit": "10"},
    {"query": "x", "limit": 10**9},
    {"query": "x", "offset": -1},
    {"query": "x", "where": {"$nope": 1}},
    {"query": "x", "tags": "prefs"},
    {"query": 5},
])
def test_bad_searches_are_invalid_query_errors(corpus: MemoryFabric, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidQueryError):
        corpus.search(**kwargs)


@pytest.mark.parametrize("kwargs", [{"memory_type": "nope"}, {"storage_tier": "warm"}])
def test_bad_search_enums_are_invalid_input(corpus: MemoryFabric, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        corpus.search("dark", **kwargs)


def test_list_all_and_count(corpus: MemoryFabric) -> None:
    assert ids(corpus.list_all()) == ["d1", "s1", "s2", "d2", "d3"]  # creation order
    assert ids(corpus.list_all(2)) == ["d1", "s1"]
    assert ids(corpus.list_all(2, 2)) == ["s2", "d2"]
    assert ids(corpus.list_all(limit=10, offset=4)) == ["d3"]
    assert corpus.list_all(limit=3, offset=5) == []
    assert corpus.list_all(0) == []
    assert corpus.count() == 5
    with pytest.raises(InvalidQueryError):
        corpus.list_all(-1)
    with pytest.raises(InvalidQueryError):
        corpus.list_all(offset=-2)
    corpus.delete("s1")
    corpus.update("d1", content="changed")
    assert ids(corpus.list_all()) == ["d1", "s2", "d2", "d3"]
    assert corpus.count() == 4


# --- update and delete ------------------------------------------------------------------


def test_update_changes_given_fields_only(corpus: MemoryFabric) -> None:
    before = corpus.retrieve("d1")
    corpus.update("d1", tags=["prefs", "ui"])
    corpus.update("d1", metadata={"user": "dana", "priority": 6}, storage_tier="cold")
    corpus.update("d1", embedding=[1.0, 0.0])
    after = corpus.retrieve("d1")
    assert before is not None and after is not None
    assert after.content == before.content and after.memory_type == before.memory_type
    assert after.tags == ["prefs", "ui"] and after.metadata == {"user": "dana", "priority": 6}
    assert after.storage_tier is StorageTier.COLD and after.embedding == Embedding(vector=[1.0, 0.0], dimension=2)
    assert after.timestamp == before.timestamp
    corpus.update("d1", embedding=None)
    cleared = corpus.retrieve("d1")
    assert cleared is not None and cleared.embedding is None
    corpus.update("d1", content="Dana now prefers light mode")
    assert ids(corpus.search("light mode")) == ["d1", "s2"] or set(ids(corpus.search("light mode"))) == {"d1", "s2"}
    assert "d1" not in ids(corpus.search("dark"))


def test_update_errors_write_nothing(corpus: MemoryFabric) -> None:
    before = _unchanged(corpus)
    with pytest.raises(RecordNotFoundError) as info:
        corpus.update("missing", content="x")
    assert isinstance(info.value, KeyError) and "missing" in str(info.value)
    with pytest.raises(InvalidRecordError):
        corpus.update("d1", content=5)
    with pytest.raises(InvalidRecordError):
        corpus.update("d1", metadata={"bad": {1, 2}})
    with pytest.raises(InvalidRecordError):
        corpus.update("d1", memory_type="nope")
    with pytest.raises(InvalidRecordError):
        corpus.update("../d1", content="x")
    assert _unchanged(corpus) == before


def test_delete_returns_whether_it_deleted(corpus: MemoryFabric) -> None:
    assert corpus.delete("d2") is True
    assert corpus.retrieve("d2") is None
    before = _unchanged(corpus)
    assert corpus.delete("d2") is False
    assert corpus.delete("never-existed") is False
    assert _unchanged(corpus) == before
    with pytest.raises(InvalidRecordError):
        corpus.delete("a/b")
    rid = corpus.store("again", record_id="d2")  # a deleted id may be used again
    assert rid == "d2" and corpus.retrieve("d2") is not None


# --- store errors and batches -----------------------------------------------------------


@pytest.mark.parametrize("args, kwargs", [
    ((5,), {}),
    (("x", "meta"), {}),
    (("x", {"n": float("nan")}), {}),
    (("x", None, "tag"), {}),
    (("x", None, None, "bogus"), {}),
    (("x", None, None, "conversation", "lukewarm"), {}),
    (("x", None, None, "conversation", "hot", ".."), {}),
    (("x", None, None, "conversation", "hot", "a\\b"), {}),
    (("x",), {"embedding": "vec"}),
    (("\ud800",), {}),
])
def test_bad_store_writes_nothing(fab: MemoryFabric, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    fab.store("existing")
    before = _unchanged(fab)
    with pytest.raises(InvalidRecordError):
        fab.store(*args, **kwargs)
    assert _unchanged(fab) == before


def test_duplicate_record_id_writes_nothing(fab: MemoryFabric) -> None:
    fab.store("one", record_id="same")
    before = _unchanged(fab)
    with pytest.raises(DuplicateRecordError) as info:
        fab.store("two", record_id="same")
    assert info.value.record_id == "same" and isinstance(info.value, ValueError)
    assert _unchanged(fab) == before
    rec = fab.retrieve("same")
    assert rec is not None and rec.content == "one"


def test_store_many_is_all_or_nothing(fab: MemoryFabric) -> None:
    fab.store("existing", record_id="taken")
    before = _unchanged(fab)
    good = [{"content": f"item {i}", "tags": ["batch"]} for i in range(5)]
    bad_items: list[Any] = [
        {"content": 5},
        {"tags": ["no content"]},
        {"content": "x", "metadata": {"s": {1}}},
        {"content": "x", "memory_type": "nope"},
        {"content": "x", "colour": "unknown field"},
        {"content": "x", "record_id": "a/b"},
        {"content": "x", "record_id": "taken"},  # exists already
        "not a dict",
        None,
    ]
    for bad in bad_items:
        with pytest.raises(InvalidInputError):
            fab.store_many(good[:2] + [bad] + good[2:])
        assert _unchanged(fab) == before, f"a batch with {bad!r} in the middle wrote something"
    with pytest.raises(DuplicateRecordError):
        fab.store_many([{"content": "a", "id": "dup"}, {"content": "b", "record_id": "dup"}])
    assert _unchanged(fab) == before
    assert fab.store_many([]) == []
    assert _unchanged(fab) == before

    new = fab.store_many(good + [{"content": "explicit", "id": "mine", "memory_type": "context"}])
    assert len(new) == 6 and new[-1] == "mine" and len(set(new)) == 6
    assert fab.count() == 7
    batch = [ln.env for ln in raw_lines(fab.data_dir)][-6:]
    assert [e.get("b", 0) for e in batch] == [5, 4, 3, 2, 1, 0]  # one batch


def test_store_many_accepts_any_iterable(fab: MemoryFabric) -> None:
    out = fab.store_many({"content": f"g{i}"} for i in range(3))
    assert [fab.retrieve(i).content for i in out] == ["g0", "g1", "g2"]  # type: ignore[union-attr]


def test_records_are_copies(fab: MemoryFabric) -> None:
    rid = fab.store("x", {"a": [1]}, ["t"], embedding=[1.0, 2.0])
    for rec in (fab.retrieve(rid), fab.list_all()[0], fab.search("x")[0], fab.as_of(fab.log.last_seq).retrieve(rid)):
        assert rec is not None and rec.embedding is not None
        rec.content = "changed"
        rec.metadata["a"].append(2)
        rec.metadata["new"] = 1
        rec.tags.append("u")
        rec.embedding.vector[0] = 99.0
    fresh = fab.retrieve(rid)
    assert fresh is not None and fresh.embedding is not None
    assert (fresh.content, fresh.metadata, fresh.tags, fresh.embedding.vector) == ("x", {"a": [1]}, ["t"], [1.0, 2.0])


def test_caller_inputs_are_copied(fab: MemoryFabric) -> None:
    meta: dict[str, Any] = {"a": [1]}
    tags = ["t"]
    vec = [1.0]
    rid = fab.store("x", meta, tags, embedding=vec)
    meta["a"].append(2)
    tags.append("u")
    vec.append(2.0)
    rec = fab.retrieve(rid)
    assert rec is not None and rec.embedding is not None
    assert (rec.metadata, rec.tags, rec.embedding.vector) == ({"a": [1]}, ["t"], [1.0])


# --- configuration ----------------------------------------------------------------------


def test_unknown_backend_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "never"
    with pytest.raises(ConfigurationError, match="unknown backend"):
        MemoryFabric(backend="postgres", config={"data_dir": str(target)})
    with pytest.raises(ConfigurationError):
        MemoryFabric(backend=3, config={"data_dir": str(target)})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="durability"):
        MemoryFabric(config={"data_dir": str(target), "durability": "eventually"})
    with pytest.raises(ConfigurationError):
        MemoryFabric(config="not a dict")  # type: ignore[arg-type]
    assert not target.exists()


def test_unusable_data_dir(tmp_path: Path) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("not a directory")
    for bad in (a_file, a_file / "below", a_file / "below" / "deeper"):
        with pytest.raises(ConfigurationError) as info:
            MemoryFabric(config={"data_dir": str(bad)})
        assert str(bad)[-10:] in str(info.value) or "plain-file" in str(info.value)
    assert a_file.read_text() == "not a directory"


def test_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "from-env"
    monkeypatch.setenv("IOA_FABRIC_ROOT", str(root))
    monkeypatch.setenv("IOA_FABRIC_BACKEND", "local_jsonl")
    monkeypatch.setenv("IOA_FABRIC_DURABILITY", "always")
    with MemoryFabric() as f:
        f.store("via env")
        assert f.data_dir == root and f.backend_name == "local_jsonl"
        assert f.log.durability == "always"
        assert f.get_stats()["durability"] == "always"
    assert segment_files(root)
    monkeypatch.setenv("IOA_FABRIC_BACKEND", "nosuch")
    with pytest.raises(ConfigurationError):
        MemoryFabric()
    with MemoryFabric(backend="local_jsonl", config={"data_dir": str(tmp_path / "explicit")}) as f:
        assert f.data_dir == tmp_path / "explicit"  # arguments win over the environment
        assert f.count() == 0


def test_default_data_dir_is_the_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOA_FABRIC_ROOT", raising=False)
    monkeypatch.delenv("IOA_FABRIC_BACKEND", raising=False)
    monkeypatch.chdir(tmp_path)
    with MemoryFabric() as f:
        f.store("x")
    assert segment_files(tmp_path / "artifacts" / "memory")


def test_import_does_not_load_boto3() -> None:
    out = run_python("import sys, fabric; from fabric import MemoryFabric; "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- lifecycle --------------------------------------------------------------------------


def test_context_manager_and_closed_use(tmp_path: Path) -> None:
    with MemoryFabric(config={"data_dir": str(tmp_path / "s")}) as f:
        rid = f.store("x")
    calls = [
        lambda: f.store("y"),
        lambda: f.retrieve(rid),
        lambda: f.search("x"),
        lambda: f.list_all(),
        lambda: f.count(),
        lambda: f.update(rid, content="z"),
        lambda: f.delete(rid),
        lambda: f.store_many([{"content": "q"}]),
        lambda: f.flush(),
        lambda: f.as_of(1),
    ]
    for call in calls:
        with pytest.raises(LogClosedError):
            call()
    f.close()  # twice is fine
    health = f.health_check()
    assert health["status"] == "unhealthy"


def test_stats_and_health(corpus: MemoryFabric) -> None:
    stats = corpus.get_stats()
    assert stats["backend"] == "local_jsonl" and stats["total_records"] == 5
    assert stats["events"] == corpus.log.last_seq and stats["segments"] == 1
    assert stats["recovered"] == []
    health = corpus.health_check()
    assert health["status"] == "healthy" and health["records"] == 5
    assert corpus.get_stats()["events"] == stats["events"], "health_check must not write"


# --- history ----------------------------------------------------------------------------


def test_as_of_seq_shows_history_and_is_read_only(corpus: MemoryFabric) -> None:
    seq_before = corpus.log.last_seq
    corpus.update("d1", content="Dana switched to light mode")
    corpus.delete("d2")
    then = corpus.as_of(seq_before)
    assert then.position == seq_before
    old = then.retrieve("d1")
    assert old is not None and old.content == "Dana prefers dark mode in every editor"
    assert then.retrieve("d2") is not None and then.count() == 5
    assert "d1" in ids(then.search("dark"))
    assert corpus.retrieve("d2") is None and corpus.count() == 4
    for name, args in [("store", ("x",)), ("store_many", ([],)), ("update", ("d1",)), ("delete", ("d1",)),
                       ("forget", ("d1",))]:
        with pytest.raises(ReadOnlyError):
            getattr(then, name)(*args)
    empty = corpus.as_of(0)
    assert empty.count() == 0 and empty.list_all() == []
    assert corpus.as_of(10**9).count() == 4
    with pytest.raises(InvalidInputError):
        corpus.as_of(-1)
    with pytest.raises(InvalidInputError):
        corpus.as_of(True)


def test_as_of_time(fab: MemoryFabric) -> None:
    a = fab.store("first version", record_id="a")
    rec_a = fab.retrieve(a)
    assert rec_a is not None
    b = fab.store("later", record_id="b")
    fab.update("a", content="second version")
    at_a = fab.as_of(rec_a.timestamp)
    assert ids(at_a.list_all()) == ["a"]
    first = at_a.retrieve("a")
    assert first is not None and first.content == "first version"
    assert first.access_count == 0  # a snapshot reads its own past; it records no access
    assert fab.as_of(rec_a.timestamp.isoformat()).count() == 1
    assert fab.as_of(rec_a.timestamp - timedelta(seconds=1)).count() == 0
    future = fab.as_of(datetime.now(UTC) + timedelta(days=1))
    latest = future.retrieve("a")
    assert latest is not None and latest.content == "second version" and future.retrieve(b) is not None
    with pytest.raises(InvalidInputError):
        fab.as_of("not a time")


# --- several instances ------------------------------------------------------------------


def test_a_second_instance_sees_everything_and_later_writes(tmp_path: Path) -> None:
    """The seed lost records between instances; here both read the one log."""
    cfg = {"data_dir": str(tmp_path / "shared")}
    first = MemoryFabric(config=cfg)
    try:
        early = [first.store(f"early {i}", {"i": i}) for i in range(20)]
        early += first.store_many([{"content": f"batch {i}"} for i in range(5)])
        second = MemoryFabric(config=cfg)
        try:
            assert set(ids(second.list_all())) == set(early)
            assert second.count() == 25
            late = first.store("written after the second opened")
            rec = second.retrieve(late)  # read-your-writes across instances
            assert rec is not None and rec.content == "written after the second opened"
            assert ids(second.search("written after")) == [late]
            first.update(early[0], content="updated by first")
            first.delete(early[1])
            assert second.retrieve(early[0]).content == "updated by first"  # type: ignore[union-attr]
            assert second.retrieve(early[1]) is None
            mine = second.store("from the second")
            assert first.retrieve(mine) is not None
            with pytest.raises(DuplicateRecordError):
                first.store("clash", record_id=early[2])
            second.store("only once", record_id="shared-id")
            with pytest.raises(DuplicateRecordError):
                first.store("only once", record_id="shared-id")
            assert first.count() == second.count() == 25 + 3 - 1
        finally:
            second.close()
    finally:
        first.close()
    assert_dense(log_seqs(tmp_path / "shared"))
    with EventLog(tmp_path / "shared", create=False) as log:
        log.verify()


def test_errors_share_one_root(fab: MemoryFabric) -> None:
    for call in (lambda: fab.store(1), lambda: fab.update("nope", content="x"), lambda: fab.search("!!"),  # type: ignore[arg-type]
                 lambda: MemoryFabric(backend="x")):
        with pytest.raises(FabricError):
            call()
