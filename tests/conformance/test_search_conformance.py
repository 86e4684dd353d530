"""Search semantics, written once, run against every backend (see conftest.BACKENDS).

Each case states the answer `fabric.query` defines, and most also check it equals the
in-memory view's answer over the same log (ids, order and scores, exactly).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from fabric.errors import InvalidQueryError
from fabric.fabric import MemoryFabric
from fabric.query import bm25_idf, bm25_term, document_tokens, score_key

CORPUS: list[dict[str, Any]] = [
    {"id": "a1", "content": "The quick brown fox jumps over the lazy dog", "tags": ["animals"],
     "memory_type": "knowledge", "metadata": {"user": "u1", "n": 1, "score": 2.5, "flag": True}},
    {"id": "a2", "content": "A quick brown dog", "tags": ["animals", "short"],
     "metadata": {"user": "u2", "n": 2, "flag": False, "list": [1, "two", None, True]}},
    {"id": "a3", "content": "Café crème brûlée at the Zürich café", "tags": ["food", "travel"],
     "memory_type": "context", "storage_tier": "cold", "metadata": {"user": "u1", "city": "Zürich", "n": 3}},
    {"id": "a4", "content": "NEAR the river AND (quick) \"quoted\" -minus star* fox", "tags": [],
     "metadata": {"user": "u3", "n": "4", "nested": {"deep": {"x": 1}, "s": "text"}}},
    {"id": "a5", "content": "Dark mode preferred; dark theme, dark everything", "tags": ["prefs", "ui"],
     "memory_type": "knowledge", "metadata": {"user": "u2", "score": 9, "tags": ["a", "b"]}},
    {"id": "a6", "content": "東京 meeting 会議 on Friday", "tags": ["travel"],
     "metadata": {"user": "u4", "weird key": 1, "qu\"ote": "yes", "ünï": "code", "a.b": "dotted"}},
    {"id": "a7", "content": "fox", "tags": ["fox"], "metadata": {"n": None, "empty": ""}},
    {"id": "a8", "content": "Nothing matches here", "tags": ["misc"], "storage_tier": "cold",
     "metadata": {"n": 8.0, "score": -1, "list": ["x"]}},
]


def load(fabric: MemoryFabric, records: Sequence[dict[str, Any]] = CORPUS) -> None:
    fabric.store_many([dict(r) for r in records])


def ids(fabric: MemoryFabric, text: str, **kw: Any) -> list[str]:
    return [h.record.id for h in fabric.search_hits(text, kw.pop("limit", 100), **kw)]


def hits(fabric: MemoryFabric, text: str, **kw: Any) -> list[tuple[str, float]]:
    return [(h.record.id, h.score) for h in fabric.search_hits(text, kw.pop("limit", 100), **kw)]


# --- matching ------------------------------------------------------------------------------


def test_every_word_must_match_in_content_or_tags(fabric: MemoryFabric) -> None:
    load(fabric)
    assert set(ids(fabric, "quick brown")) == {"a1", "a2"}
    assert set(ids(fabric, "fox")) == {"a1", "a4", "a7"}
    assert ids(fabric, "animals short") == ["a2"]  # both are tags
    assert ids(fabric, "dog short") == ["a2"]  # one word in content, one in a tag
    assert ids(fabric, "fox unicorn") == []


def test_case_and_diacritics_fold(fabric: MemoryFabric) -> None:
    load(fabric)
    for text in ("cafe", "CAFÉ", "Café", unicodedata.normalize("NFD", "café"), "zurich", "ZÜRICH"):
        assert ids(fabric, text) == ["a3"], text
    assert ids(fabric, "brulee creme") == ["a3"]


def test_cjk_runs_are_words(fabric: MemoryFabric) -> None:
    load(fabric)
    assert ids(fabric, "東京") == ["a6"]
    assert ids(fabric, "会議 friday") == ["a6"]
    assert ids(fabric, "東") == []  # a run of CJK is one token (unicode61 does not segment)


@pytest.mark.parametrize("text", [
    '"quoted"', "quoted", "AND", "NEAR", "near river", "(quick)", "star*", "star", "-minus", "minus",
    'NEAR(river quick)', '"the river"', "river AND quick", "river OR nothing", "river NOT quick",
    "quick -river", "col:quick", "content:quick", "^quick", "quick + river", "{river}", "river;", "'river'",
])
def test_query_syntax_is_just_text(fabric: MemoryFabric, reference: Callable[[], MemoryFabric], text: str) -> None:
    """Operators and punctuation in user text are never FTS5 syntax: the words are matched, that is all."""
    load(fabric)
    got = hits(fabric, text)
    assert got == hits(reference(), text)
    words = set(document_tokens(text, []))
    for rid, _score in got:
        rec = next(r for r in CORPUS if r["id"] == rid)
        assert words <= set(document_tokens(rec["content"], rec.get("tags", [])))


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_text_means_no_text_condition(fabric: MemoryFabric, text: str) -> None:
    load(fabric)
    assert len(ids(fabric, text)) == len(CORPUS)


@pytest.mark.parametrize("text", ["***", '""', "()", "- + ^", "😀 ☃", "\u0301"])
def test_text_without_words_is_an_error(fabric: MemoryFabric, text: str) -> None:
    load(fabric)
    with pytest.raises(InvalidQueryError):
        fabric.search(text)


def test_too_many_words_is_an_error(fabric: MemoryFabric) -> None:
    with pytest.raises(InvalidQueryError):
        fabric.search(" ".join(f"w{i}" for i in range(65)))


def test_nonsense_word_finds_nothing(fabric: MemoryFabric) -> None:
    load(fabric)
    assert ids(fabric, "zzzzzz") == []
    assert ids(fabric, "zzzzzz", where={"user": "u1"}) == []


def test_words_longer_than_fts5_keeps(fabric: MemoryFabric, reference: Callable[[], MemoryFabric]) -> None:
    """FTS5 cuts tokens at 32768 bytes; so does the tokenizer, so every view agrees."""
    long_word = "x" * 40000
    fabric.store(f"{long_word} tail", record_id="long")
    fabric.store("x" * 32768 + "y other", record_id="long2")
    assert set(ids(fabric, long_word)) == {"long", "long2"}
    assert hits(fabric, long_word) == hits(reference(), long_word)


# --- ranking ---------------------------------------------------------------------------------


def _expected_scores(records: Sequence[dict[str, Any]], text: str) -> dict[str, float]:
    """BM25 from its definition in fabric.query, computed here from scratch."""
    docs = {r["id"]: document_tokens(r["content"], r.get("tags", [])) for r in records}
    terms = document_tokens(text, [])
    n = len(docs)
    avg = sum(len(t) for t in docs.values()) / n
    out = {}
    for rid, toks in docs.items():
        if not all(t in toks for t in terms):
            continue
        s = 0.0
        for t in terms:
            df = sum(1 for d in docs.values() if t in d)
            s += bm25_term(bm25_idf(n, df), toks.count(t), len(toks), avg)
        out[rid] = score_key(s)
    return out


@pytest.mark.parametrize("text", ["fox", "quick", "dark", "the", "quick brown", "dark dark", "travel", "cafe"])
def test_bm25_scores_and_order(fabric: MemoryFabric, reference: Callable[[], MemoryFabric], text: str) -> None:
    load(fabric)
    got = hits(fabric, text)
    want = _expected_scores(CORPUS, text)
    assert dict(got) == want
    assert [rid for rid, _ in got] == sorted(want, key=lambda rid: (-want[rid], rid))
    assert got == hits(reference(), text)


def test_ties_are_ordered_by_id(fabric: MemoryFabric) -> None:
    twins = [{"id": rid, "content": "same words here"} for rid in ("t3", "t1", "t2", "t0")]
    load(fabric, [*twins, {"id": "other", "content": "unrelated"}])
    got = hits(fabric, "words")
    assert [rid for rid, _ in got] == ["t0", "t1", "t2", "t3"]
    assert len({s for _, s in got}) == 1


def test_common_word_clamps_idf(fabric: MemoryFabric, reference: Callable[[], MemoryFabric]) -> None:
    """A word in more than half the records gets idf 1e-6 (FTS5's clamp); ties then fall to ids."""
    records = [{"id": f"c{i:02d}", "content": "the " * (1 + i % 3) + f"filler{i}"} for i in range(20)]
    load(fabric, records)
    got = hits(fabric, "the")
    assert len(got) == 20 and all(0 < s < 1e-5 for _, s in got)
    assert got == hits(reference(), "the")


def test_scores_are_positive_and_finite(fabric: MemoryFabric) -> None:
    load(fabric)
    for _, s in hits(fabric, "the"):
        assert s > 0 and math.isfinite(s)


# --- no text ---------------------------------------------------------------------------------


def test_no_text_is_newest_first_then_id(fabric: MemoryFabric, reference: Callable[[], MemoryFabric]) -> None:
    when = "2024-05-01T10:00:00+00:00"
    records = [
        {"id": "n2", "content": "x", "timestamp": when},
        {"id": "n1", "content": "x", "timestamp": when},
        {"id": "n3", "content": "x", "timestamp": "2024-05-01T10:00:00.000001+00:00"},
        {"id": "n0", "content": "x", "timestamp": "1999-12-31T23:59:59.999999+00:00"},
    ]
    load(fabric, records)
    assert ids(fabric, "") == ["n3", "n1", "n2", "n0"]
    assert hits(fabric, "") == hits(reference(), "")
    assert all(s == 0.0 for _, s in hits(fabric, ""))


def test_no_text_with_filters(fabric: MemoryFabric, reference: Callable[[], MemoryFabric]) -> None:
    load(fabric)
    for kw in ({"memory_type": "knowledge"}, {"storage_tier": "cold"}, {"tags": ["travel"]},
               {"where": {"user": "u1"}}, {"where": {"n": {"$gte": 2}}}):
        assert hits(fabric, "", **kw) == hits(reference(), "", **kw), kw


# --- pagination -----------------------------------------------------------------------------


def test_pages_tile_the_full_answer(fabric: MemoryFabric, reference: Callable[[], MemoryFabric]) -> None:
    records = [{"id": f"p{i:02d}", "content": "page " * (1 + i % 4) + f"w{i % 5}"} for i in range(23)]
    load(fabric, records)
    for text in ("page", "", "page w1"):
        full = ids(fabric, text)
        pages: list[str] = []
        for off in range(0, 30, 4):
            pages += [h.record.id for h in fabric.search_hits(text, 4, offset=off)]
        assert pages == full, text
        assert [h.record.id for h in fabric.search_hits(text, 0)] == []
        assert [h.record.id for h in fabric.search_hits(text, 5, offset=100)] == []
        ref = reference()
        assert [h.record.id for h in ref.search_hits(text, 7, offset=3)] == [
            h.record.id for h in fabric.search_hits(text, 7, offset=3)]


@pytest.mark.parametrize("kw", [{"limit": -1}, {"limit": 1.5}, {"offset": -1}, {"limit": True}, {"offset": "1"}])
def test_bad_pages_are_errors(fabric: MemoryFabric, kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidQueryError):
        fabric.search("x", **kw)


# --- filters ---------------------------------------------------------------------------------

FILTERS: list[tuple[dict[str, Any], set[str]]] = [
    ({"user": "u1"}, {"a1", "a3"}),
    ({"user": {"$eq": "u2"}}, {"a2", "a5"}),
    ({"user": {"$ne": "u1"}}, {"a2", "a4", "a5", "a6", "a7", "a8"}),  # missing key matches $ne
    ({"n": 2}, {"a2"}),
    ({"n": 8}, {"a8"}),  # 8 == 8.0
    ({"n": "4"}, {"a4"}),  # strings are not numbers
    ({"n": 4}, set()),
    ({"n": None}, {"a7"}),
    ({"n": {"$gt": 1}}, {"a2", "a3", "a8"}),
    ({"n": {"$gte": 1, "$lt": 3}}, {"a1", "a2"}),
    ({"n": {"$lte": "5"}}, {"a4"}),  # strings compare with strings only
    ({"flag": True}, {"a1"}),
    ({"flag": False}, {"a2"}),
    ({"flag": 1}, set()),  # booleans are not numbers
    ({"n": True}, set()),
    ({"score": {"$lt": 0}}, {"a8"}),
    ({"score": {"$gt": 2}}, {"a1", "a5"}),
    ({"user": {"$in": ["u1", "u3"]}}, {"a1", "a3", "a4"}),
    ({"user": {"$in": []}}, set()),
    ({"user": {"$nin": ["u1", "u2"]}}, {"a4", "a6", "a7", "a8"}),
    ({"n": {"$in": [1, "4", None]}}, {"a1", "a4", "a7"}),
    ({"list": {"$contains": "two"}}, {"a2"}),
    ({"list": {"$contains": 1}}, {"a2"}),
    ({"list": {"$contains": True}}, {"a2"}),
    ({"list": {"$contains": "x"}}, {"a8"}),
    ({"city": {"$contains": "ür"}}, {"a3"}),
    ({"city": {"$contains": ""}}, {"a3"}),
    ({"empty": {"$contains": ""}}, {"a7"}),
    ({"tags": {"$contains": "a"}}, {"a5"}),  # a metadata key named tags, not the record's tags
    ({"n": {"$exists": True}}, {"a1", "a2", "a3", "a4", "a7", "a8"}),
    ({"n": {"$exists": False}}, {"a5", "a6"}),
    ({"nested.deep.x": 1}, {"a4"}),
    ({"nested.s": "text"}, {"a4"}),
    ({"nested.deep": {"$exists": True}}, {"a4"}),
    ({"nested.s.x": {"$exists": True}}, set()),  # a string has no keys
    ({"list.0": 1}, set()),  # arrays are not objects
    ({"weird key": 1}, {"a6"}),
    ({'qu"ote': "yes"}, {"a6"}),
    ({"ünï": "code"}, {"a6"}),
    ({"a.b": "dotted"}, set()),  # dots always reach into nested objects
    ({"$and": [{"user": "u1"}, {"n": {"$gt": 1}}]}, {"a3"}),
    ({"$or": [{"user": "u3"}, {"flag": True}]}, {"a1", "a4"}),
    ({"$not": {"user": "u1"}}, {"a2", "a4", "a5", "a6", "a7", "a8"}),
    ({"$not": {"$or": [{"n": {"$exists": True}}, {"score": 9}]}}, {"a6"}),
    ({"user": "u2", "score": 9}, {"a5"}),
]


@pytest.mark.parametrize(("where", "expected"), FILTERS, ids=[str(f) for f, _ in FILTERS])
def test_metadata_filters(fabric: MemoryFabric, reference: Callable[[], MemoryFabric],
                          where: dict[str, Any], expected: set[str]) -> None:
    load(fabric)
    assert set(ids(fabric, "", where=where)) == expected
    with_text = ids(fabric, "the", where=where)
    assert set(with_text) == expected & {"a1", "a3", "a4"}
    assert hits(fabric, "the", where=where) == hits(reference(), "the", where=where)


@pytest.mark.parametrize("where", [
    {"n": {"$gt": True}}, {"n": {"$bogus": 1}}, {"n": {"$in": 1}}, {"$and": {}}, {"n": {"$exists": 1}},
    {"n": {"a": 1}}, {"": 1}, {"a..b": 1}, {"n": float("nan")}, {"n": {"$contains": None}}, {"$xor": []},
])
def test_bad_filters_are_errors(fabric: MemoryFabric, where: dict[str, Any]) -> None:
    load(fabric)
    with pytest.raises(InvalidQueryError):
        fabric.search("fox", where=where)


def test_type_tier_and_tags_filters(fabric: MemoryFabric, reference: Callable[[], MemoryFabric]) -> None:
    load(fabric)
    assert set(ids(fabric, "the", memory_type="knowledge")) == {"a1"}
    assert set(ids(fabric, "the", storage_tier="cold")) == {"a3"}
    assert set(ids(fabric, "", tags=["animals"])) == {"a1", "a2"}
    assert set(ids(fabric, "", tags=["animals", "short"])) == {"a2"}
    assert set(ids(fabric, "", tags=["animals", "nope"])) == set()
    assert set(ids(fabric, "fox", tags=["fox"])) == {"a7"}
    assert ids(fabric, "", tags=[]) == ids(fabric, "")
    for kw in ({"memory_type": "knowledge"}, {"tags": ["travel"]}, {"storage_tier": "hot", "tags": ["animals"]}):
        assert hits(fabric, "the", **kw) == hits(reference(), "the", **kw)
    with pytest.raises(InvalidQueryError):
        fabric.search("x", tags="animals")  # type: ignore[arg-type]


# --- changes are visible -------------------------------------------------------------------------


def test_updates_and_deletes_change_answers(fabric: MemoryFabric, reference: Callable[[], MemoryFabric]) -> None:
    load(fabric)
    fabric.update("a7", content="no longer about that animal", tags=[])
    fabric.delete("a1")
    fabric.update("a2", metadata={"user": "u9"})
    assert set(ids(fabric, "fox")) == {"a4"}
    assert ids(fabric, "", where={"user": "u9"}) == ["a2"]
    assert hits(fabric, "animal") == hits(reference(), "animal")
    assert [r.id for r in fabric.list_all()] == [r.id for r in reference().list_all()]


def test_storing_an_id_again_moves_it_last(fabric: MemoryFabric, reference: Callable[[], MemoryFabric]) -> None:
    load(fabric)
    fabric.delete("a2")
    fabric.store("back again", record_id="a2")
    order = [r.id for r in fabric.list_all()]
    assert order[-1] == "a2"
    assert order == [r.id for r in reference().list_all()]
    assert [r.id for r in fabric.list_all(limit=3, offset=2)] == order[2:5]
    assert fabric.count() == len(CORPUS)
