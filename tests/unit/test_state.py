"""fabric.state: what each event means (`evolve`), and the fold over a stream of them."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.events import (
    Accessed,
    Deleted,
    Embedding,
    Event,
    Forgotten,
    KeyRotated,
    StoreCreated,
    Stored,
    Updated,
)
from fabric.state import SCHEMA_VERSION, Record, evolve, fold, merge_order

EMB = Embedding(vector=[1.0, 2.0], model="m", dimension=2)


def stored(content: str = "hello", **kw: object) -> Stored:
    return Stored(content=content, metadata=msgspec.Raw(b'{"k":1}'), tags=["a", "b"],
                  memory_type="knowledge", storage_tier="cold", **kw)  # type: ignore[arg-type]


def base() -> Record:
    rec = evolve(None, stored(), id="r1", seq=5, ts=1000)
    assert rec is not None
    return rec


def test_stored_creates_a_record() -> None:
    rec = base()
    assert rec == Record(id="r1", content="hello", metadata=b'{"k":1}', tags=("a", "b"), memory_type="knowledge",
                         storage_tier="cold", timestamp=1000, access_count=0, last_accessed=None, embedding=None,
                         created_seq=5, seq=5, updated=1000)
    assert SCHEMA_VERSION == "1.0"


def test_stored_keeps_an_imported_timestamp_and_access_state() -> None:
    rec = evolve(None, stored(timestamp=42, access_count=3, last_accessed=43, embedding=EMB), id="r", seq=2, ts=9000)
    assert rec is not None
    assert (rec.timestamp, rec.access_count, rec.last_accessed, rec.embedding) == (42, 3, 43, EMB)
    assert rec.updated == 9000


def test_stored_over_a_live_record_replaces_it() -> None:
    again = evolve(base(), Stored(content="other"), id="r1", seq=9, ts=2000)
    assert again is not None
    assert (again.content, again.tags, again.metadata, again.created_seq, again.timestamp) == (
        "other", (), b"{}", 9, 2000)


@pytest.mark.parametrize("change, field, value", [
    (Updated(content="new"), "content", "new"),
    (Updated(metadata=msgspec.Raw(b'{"z":[1]}')), "metadata", b'{"z":[1]}'),
    (Updated(tags=["q"]), "tags", ("q",)),
    (Updated(tags=[]), "tags", ()),
    (Updated(memory_type="context"), "memory_type", "context"),
    (Updated(storage_tier="auto"), "storage_tier", "auto"),
    (Updated(embedding=EMB), "embedding", EMB),
])
def test_updated_changes_only_what_it_sets(change: Updated, field: str, value: object) -> None:
    before = base()
    after = evolve(before, change, id="r1", seq=8, ts=3000)
    assert after is not None
    assert getattr(after, field) == value
    assert (after.seq, after.updated) == (8, 3000)
    untouched = {f for f in Record.__struct_fields__} - {field, "seq", "updated"}
    for f in untouched:
        assert getattr(after, f) == getattr(before, f), f
    assert before == base(), "evolve must not change its input"


def test_updated_embedding_none_clears_it() -> None:
    with_emb = evolve(base(), Updated(embedding=EMB), id="r1", seq=6, ts=1)
    cleared = evolve(with_emb, Updated(embedding=None), id="r1", seq=7, ts=2)
    kept = evolve(with_emb, Updated(content="x"), id="r1", seq=7, ts=2)
    assert cleared is not None and cleared.embedding is None
    assert kept is not None and kept.embedding == EMB


def test_updated_on_a_missing_record_is_a_no_op() -> None:
    assert evolve(None, Updated(content="x"), id="r1", seq=2, ts=1) is None


def test_accessed_counts_and_moves_last_accessed_forward_only() -> None:
    rec = evolve(base(), Accessed(count=3, at=5000), id="r1", seq=6, ts=5001)
    assert rec is not None and (rec.access_count, rec.last_accessed) == (3, 5000)
    older = evolve(rec, Accessed(count=2, at=4000), id="r1", seq=7, ts=5002)
    assert older is not None and (older.access_count, older.last_accessed) == (5, 5000)
    newer = evolve(older, Accessed(count=1, at=6000), id="r1", seq=8, ts=6001)
    assert newer is not None and (newer.access_count, newer.last_accessed) == (6, 6000)
    assert newer.seq == base().seq, "an access is not a change of the record"


def test_accessed_on_a_missing_record_is_a_no_op() -> None:
    assert evolve(None, Accessed(count=4, at=1), id="gone", seq=3, ts=1) is None


@pytest.mark.parametrize("end", [Deleted(), Forgotten(reason="gdpr")])
def test_deleted_and_forgotten_end_a_record(end: Event) -> None:
    assert evolve(base(), end, id="r1", seq=6, ts=1) is None
    assert evolve(None, end, id="r1", seq=6, ts=1) is None


@pytest.mark.parametrize("other", [StoreCreated(log_id="x"), KeyRotated()])
def test_store_events_leave_records_alone(other: Event) -> None:
    rec = base()
    assert evolve(rec, other, id="r1", seq=6, ts=1) is rec
    assert evolve(None, other, id="r1", seq=6, ts=1) is None


def test_fold_stored_updated_deleted() -> None:
    events: list[tuple[str, int, int, Event]] = [
        ("", 1, 10, StoreCreated(log_id="L")),
        ("a", 2, 20, stored("alpha")),
        ("b", 3, 30, stored("beta")),
        ("a", 4, 40, Updated(content="alpha2")),
        ("c", 5, 50, stored("gamma")),
        ("b", 6, 60, Deleted()),
        ("a", 7, 70, Accessed(count=2, at=65)),
        ("zz", 8, 80, Accessed(count=1, at=80)),  # never stored
        ("zz", 9, 90, Updated(content="ghost")),  # never stored
        ("b", 10, 100, stored("beta again")),
    ]
    state = fold(events)
    assert set(state) == {"a", "b", "c"}
    assert (state["a"].content, state["a"].access_count, state["a"].created_seq, state["a"].seq) == ("alpha2", 2, 2, 4)
    assert (state["b"].content, state["b"].created_seq, state["b"].access_count) == ("beta again", 10, 0)
    assert state["c"].content == "gamma"


def test_fold_continues_from_a_given_state() -> None:
    first = fold([("a", 2, 20, stored("x"))])
    same = fold([("a", 3, 30, Updated(content="y")), ("b", 4, 40, stored("z"))], first)
    assert same is first
    assert {k: v.content for k, v in first.items()} == {"a": "y", "b": "z"}


def test_fold_of_nothing_is_empty() -> None:
    assert fold([]) == {}


def test_merge_order_sorts_by_time_then_writer_then_seq() -> None:
    keys = [merge_order(5, "w2", 1), merge_order(5, "w1", 9), merge_order(4, "w9", 3), merge_order(5, "w1", 2)]
    assert sorted(keys) == [(4, "w9", 3), (5, "w1", 2), (5, "w1", 9), (5, "w2", 1)]


_ops = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["store", "update", "delete", "access", "forget"]),
        st.text(max_size=5),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_fold_is_deterministic_and_matches_a_plain_model(ops: list[tuple[str, str, str]]) -> None:
    events: list[tuple[str, int, int, Event]] = []
    model: dict[str, tuple[str, int]] = {}
    for seq, (rid, op, text) in enumerate(ops, start=2):
        ev: Event
        if op == "store":
            ev = Stored(content=text)
            model[rid] = (text, 0)
        elif op == "update":
            ev = Updated(content=text)
            if rid in model:
                model[rid] = (text, model[rid][1])
        elif op == "access":
            ev = Accessed(count=2, at=seq)
            if rid in model:
                model[rid] = (model[rid][0], model[rid][1] + 2)
        else:
            ev = Deleted() if op == "delete" else Forgotten()
            model.pop(rid, None)
        events.append((rid, seq, seq * 10, ev))
    state = fold(events)
    assert {k: (v.content, v.access_count) for k, v in state.items()} == model
    assert fold(list(events)) == state
