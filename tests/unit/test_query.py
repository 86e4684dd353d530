"""fabric.query: the tokenizer, filter parsing and evaluation, pagination and query validation."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.errors import InvalidInputError, InvalidQueryError
from fabric.query import (
    MAX_LIMIT,
    MAX_QUERY_TOKENS,
    And,
    Cmp,
    Not,
    Or,
    bm25_idf,
    check_page,
    document_tokens,
    evaluate,
    make_query,
    parse_filter,
    score_key,
    tokenize,
)

# --- tokenizer --------------------------------------------------------------------------


@pytest.mark.parametrize("text, tokens", [
    ("", []),
    ("   \t\n", []),
    ("Hello, World!", ["hello", "world"]),
    ("dark-mode", ["dark", "mode"]),
    ("snake_case_name", ["snake", "case", "name"]),  # underscore separates, as in FTS5
    ("__init__", ["init"]),
    ("it's", ["it", "s"]),
    ("e-mail: a.b@c.io", ["e", "mail", "a", "b", "c", "io"]),
    ("v1.2.3 x86_64", ["v1", "2", "3", "x86", "64"]),
    ('"quoted" (parens) [brackets] {braces} <angle>', ["quoted", "parens", "brackets", "braces", "angle"]),
    ("NEAR AND OR NOT * - ^ +", ["near", "and", "or", "not"]),  # query syntax is plain text
    ("repeat repeat REPEAT", ["repeat", "repeat", "repeat"]),
    ("Café", ["cafe"]),
    ("naïve résumé Ångström", ["naive", "resume", "angstrom"]),
    ("Straße", ["straße"]),  # no diacritic to remove; FTS5 keeps ß
    ("İstanbul", ["istanbul"]),
    ("ÆON œuvre", ["æon", "œuvre"]),
    ("日本語のテキスト", ["日本語のテキスト"]),  # no spaces: one run of letters
    ("한국어 단어", ["한국어", "단어"]),
    ("Ελληνικά ΚΕΦΑΛΑΙΑ", ["ελληνικά", "κεφαλαια"]),  # FTS5 keeps the tonos of a precomposed ά
    ("Привет, мир", ["привет", "мир"]),
    ("١٢٣ Ⅻ ²", ["١٢٣", "ⅻ", "²"]),  # digits of every script are token characters
    ("x😀y ☃ snow", ["x", "y", "snow"]),  # symbols separate
    ("a\u200bb a\u00adb", ["a", "b", "a", "b"]),  # format characters separate
    ("tab\tnew\nline\r\n", ["tab", "new", "line"]),
])
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_decomposed_diacritics_fold_like_composed_ones() -> None:
    """'naïve' typed as n-a-i-U+0308-v-e (NFD, as macOS often sends it) is the word 'naive', not 'nai' + 've'."""
    for word in ["naïve", "Café", "résumé", "Ångström", "crème brûlée"]:
        nfd = unicodedata.normalize("NFD", word)
        assert nfd != word
        assert tokenize(nfd) == tokenize(word), word
    assert tokenize("q\u0301x") == ["qx"]  # a diacritic with no precomposed form is dropped too


def test_private_use_characters_are_token_characters() -> None:
    """The docstring (and FTS5's unicode61 default categories L* N* Co) count private use as part of words."""
    assert tokenize("a\ue000b") == ["a\ue000b"]
    assert tokenize("x \U000f0000 y") == ["x", "\U000f0000", "y"]


def test_document_tokens_cover_content_and_tags() -> None:
    assert document_tokens("Dark mode", ["ui", "prefs_v2"]) == ["dark", "mode", "ui", "prefs", "v2"]
    assert document_tokens("x", []) == ["x"]
    assert document_tokens("end", ["start"]) != tokenize("endstart")  # a tag is its own word


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_tokens_are_normalised_and_stable(text: str) -> None:
    # SQLite's unicode61 is the reference: it keeps combining marks outside its diacritic
    # table (e.g. U+11370) and folds case with its own (older) tables, so neither
    # "no combining marks" nor "equals str.lower()" holds; stability and separators do.
    tokens = tokenize(text)
    for t in tokens:
        assert t
        assert "_" not in t and not any(c.isspace() for c in t)
    assert tokenize(" ".join(tokens)) == tokens  # idempotent


def test_bm25_helpers() -> None:
    assert bm25_idf(10, 1) > bm25_idf(10, 5) > 0
    assert bm25_idf(2, 2) == 1e-6  # clamped, as FTS5 does
    assert score_key(1.0000000001) == score_key(1.0000000002)


# --- filters: parsing -------------------------------------------------------------------


def test_parse_filter_shapes() -> None:
    assert parse_filter({"user": "u1"}) == Cmp(("user",), "$eq", "u1")
    assert parse_filter({"a.b.c": 1}) == Cmp(("a", "b", "c"), "$eq", 1)
    assert parse_filter({"s": {"$gte": 3, "$lt": 10}}) == And((Cmp(("s",), "$gte", 3), Cmp(("s",), "$lt", 10)))
    assert parse_filter({"x": 1, "y": 2}) == And((Cmp(("x",), "$eq", 1), Cmp(("y",), "$eq", 2)))
    assert parse_filter({"$or": [{"x": 1}, {"y": 2}]}) == Or((Cmp(("x",), "$eq", 1), Cmp(("y",), "$eq", 2)))
    assert parse_filter({"$not": {"x": 1}}) == Not(Cmp(("x",), "$eq", 1))
    assert parse_filter({"t": {"$in": [1, "a", None]}}) == Cmp(("t",), "$in", (1, "a", None))
    assert parse_filter({"t": {"$exists": False}}) == Cmp(("t",), "$exists", False)


@pytest.mark.parametrize("spec", [
    {},
    [],
    "user=u1",
    {"": 1},
    {1: "x"},
    {"a..b": 1},
    {".a": 1},
    {"a.": 1},
    {"$where": "1"},
    {"$and": []},
    {"$and": {"x": 1}},
    {"$or": "x"},
    {"$not": "x"},
    {"$not": {}},
    {"x": {}},
    {"x": {"nested": 1}},
    {"x": {"$gt": 1, "plain": 2}},
    {"x": {"$regex": "a.*"}},
    {"x": {"$in": 1}},
    {"x": {"$in": [[1]]}},
    {"x": {"$nin": "abc"}},
    {"x": {"$exists": 1}},
    {"x": {"$exists": "yes"}},
    {"x": {"$gt": None}},
    {"x": {"$gt": True}},
    {"x": {"$lte": [1]}},
    {"x": {"$eq": {"a": 1}}},
    {"x": {"$eq": float("nan")}},
    {"x": {"$eq": float("inf")}},
    {"x": [1, 2]},
    {"x": {"$contains": None}},
    {"x": {"$contains": [1]}},
    {"x": object()},
    {"x": b"bytes"},
])
def test_parse_filter_rejects(spec: Any) -> None:
    with pytest.raises(InvalidQueryError) as info:
        parse_filter(spec)
    assert isinstance(info.value, ValueError)


# --- filters: evaluation ----------------------------------------------------------------

META: dict[str, Any] = {
    "user": "u1",
    "n": 5,
    "f": 2.5,
    "zero": 0,
    "flag": True,
    "off": False,
    "none": None,
    "tags": ["a", "b", 3, True, None],
    "text": "hello world",
    "nested": {"deep": {"x": 1}, "list": [1, 2]},
    "dotted.key": "literal",
}


def ev(spec: dict[str, Any], meta: dict[str, Any] | None = None) -> bool:
    return evaluate(parse_filter(spec), META if meta is None else meta)


@pytest.mark.parametrize("spec, expected", [
    # $eq and its shorthand, type strict
    ({"user": "u1"}, True),
    ({"user": "u2"}, False),
    ({"n": 5}, True),
    ({"n": 5.0}, True),  # numbers compare as numbers
    ({"n": "5"}, False),
    ({"flag": True}, True),
    ({"flag": 1}, False),  # booleans are not numbers
    ({"zero": False}, False),
    ({"off": 0}, False),
    ({"none": None}, True),
    ({"missing": None}, False),  # a missing key is not null
    ({"tags": "a"}, False),  # equality on an array is not membership
    ({"nested": {"$eq": 1}}, False),
    ({"nested.deep.x": 1}, True),
    ({"nested.deep.y": 1}, False),
    ({"nested.list.0": 1}, False),  # paths walk objects only
    ({"user.x": "u"}, False),
    ({"dotted.key": "literal"}, False),  # dots are always paths
    # $ne: the negation of $eq, so a missing key or another type matches
    ({"user": {"$ne": "u2"}}, True),
    ({"user": {"$ne": "u1"}}, False),
    ({"missing": {"$ne": 1}}, True),
    ({"n": {"$ne": "5"}}, True),
    ({"flag": {"$ne": 1}}, True),
    # ordering: numbers with numbers, strings with strings
    ({"n": {"$gt": 4}}, True),
    ({"n": {"$gt": 5}}, False),
    ({"n": {"$gte": 5}}, True),
    ({"n": {"$lt": 5.5}}, True),
    ({"n": {"$lte": 4.99}}, False),
    ({"f": {"$gt": 2, "$lt": 3}}, True),
    ({"f": {"$gt": 2, "$lt": 2.5}}, False),
    ({"user": {"$gt": "u0"}}, True),
    ({"user": {"$lt": "u0"}}, False),
    ({"n": {"$gt": "4"}}, False),
    ({"user": {"$gt": 1}}, False),
    ({"flag": {"$gt": 0}}, False),
    ({"none": {"$lt": 1}}, False),
    ({"missing": {"$gt": 0}}, False),
    ({"missing": {"$lt": 0}}, False),
    ({"tags": {"$gt": 0}}, False),
    ({"nested": {"$gte": "a"}}, False),
    # $in / $nin
    ({"user": {"$in": ["u0", "u1"]}}, True),
    ({"user": {"$in": []}}, False),
    ({"n": {"$in": [1, 5.0]}}, True),
    ({"flag": {"$in": [1]}}, False),
    ({"missing": {"$in": [None]}}, False),
    ({"none": {"$in": [None]}}, True),
    ({"user": {"$nin": ["u0"]}}, True),
    ({"user": {"$nin": ["u1"]}}, False),
    ({"missing": {"$nin": ["x"]}}, True),
    ({"n": {"$nin": []}}, True),
    # $contains: array membership or substring
    ({"tags": {"$contains": "a"}}, True),
    ({"tags": {"$contains": "c"}}, False),
    ({"tags": {"$contains": 3}}, True),
    ({"tags": {"$contains": 1}}, False),  # True is not 1
    ({"tags": {"$contains": True}}, True),
    ({"text": {"$contains": "lo wo"}}, True),
    ({"text": {"$contains": "bye"}}, False),
    ({"text": {"$contains": 1}}, False),
    ({"n": {"$contains": 5}}, False),
    ({"missing": {"$contains": "a"}}, False),
    # $exists
    ({"none": {"$exists": True}}, True),
    ({"missing": {"$exists": True}}, False),
    ({"missing": {"$exists": False}}, True),
    ({"nested.deep": {"$exists": True}}, True),
    ({"nested.deep.x.y": {"$exists": False}}, True),
    # combinators
    ({"$and": [{"user": "u1"}, {"n": 5}]}, True),
    ({"$and": [{"user": "u1"}, {"n": 6}]}, False),
    ({"$or": [{"user": "u2"}, {"n": 5}]}, True),
    ({"$or": [{"user": "u2"}, {"n": 6}]}, False),
    ({"$not": {"user": "u1"}}, False),
    ({"$not": {"missing": 1}}, True),
    ({"$or": [{"$and": [{"n": {"$gte": 5}}, {"$not": {"flag": False}}]}, {"user": "nobody"}]}, True),
    ({"user": "u1", "n": {"$lt": 0}}, False),  # several keys: all must hold
])
def test_evaluate(spec: dict[str, Any], expected: bool) -> None:
    assert ev(spec) is expected


def test_evaluate_on_empty_metadata() -> None:
    assert ev({"x": {"$exists": False}}, {}) is True
    assert ev({"x": {"$ne": 1}}, {}) is True
    assert ev({"x": 1}, {}) is False


# --- pagination and make_query ----------------------------------------------------------


def test_check_page() -> None:
    assert check_page(None, None) == (10, 0)
    assert check_page(None, 0, default_limit=None) == (None, 0)
    assert check_page(0, 0) == (0, 0)
    assert check_page(MAX_LIMIT, 7) == (MAX_LIMIT, 7)


@pytest.mark.parametrize("limit, offset", [
    (-1, 0), (MAX_LIMIT + 1, 0), (10**18, 0), (1.5, 0), ("10", 0), (True, 0),
    (10, -1), (10, 1.0), (10, "0"), (10, False),
])
def test_check_page_rejects(limit: Any, offset: Any) -> None:
    with pytest.raises(InvalidQueryError):
        check_page(limit, offset)


def test_make_query_tokens_and_defaults() -> None:
    q = make_query("Dark-Mode café")
    assert (q.text, q.terms, q.limit, q.offset, q.where, q.tags) == (
        "Dark-Mode café", ("dark", "mode", "cafe"), 10, 0, None, ())
    q = make_query("x", limit=3, offset=2, memory_type="knowledge", storage_tier="hot", tags=["a", "b"], where={"u": 1})
    assert (q.limit, q.offset, q.memory_type, q.storage_tier, q.tags, q.where) == (
        3, 2, "knowledge", "hot", ("a", "b"), Cmp(("u",), "$eq", 1))
    assert make_query("x", limit=None).limit == 10


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"])
def test_blank_query_has_no_text_condition(text: str | None) -> None:
    assert make_query(text).terms == ()


@pytest.mark.parametrize("text", ["!!!", "...", " - * ", "___", '""', "😀😀", "()"])
def test_query_without_searchable_characters_is_an_error(text: str) -> None:
    with pytest.raises(InvalidQueryError, match="no searchable words"):
        make_query(text)


@pytest.mark.parametrize("kwargs", [
    {"limit": -1},
    {"limit": "5"},
    {"limit": 2.0},
    {"limit": MAX_LIMIT + 1},
    {"limit": 10**100},
    {"offset": -3},
    {"offset": None, "limit": True},
    {"tags": "notalist"},
    {"tags": ["ok", 3]},
    {"where": {"$bad": 1}},
    {"where": "x"},
])
def test_make_query_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidQueryError) as info:
        make_query("x", **kwargs)
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)


def test_make_query_rejects_non_text_and_too_many_words() -> None:
    with pytest.raises(InvalidQueryError):
        make_query(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError):
        make_query(b"bytes")  # type: ignore[arg-type]
    assert len(make_query(" ".join(["w"] * MAX_QUERY_TOKENS)).terms) == MAX_QUERY_TOKENS
    with pytest.raises(InvalidQueryError, match="at most"):
        make_query(" ".join(["w"] * (MAX_QUERY_TOKENS + 1)))


def test_scores_are_finite() -> None:
    assert math.isfinite(bm25_idf(1, 0)) and math.isfinite(bm25_idf(10**9, 1))
