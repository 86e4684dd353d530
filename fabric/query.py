"""One query model for every view: tokenizer, filters, ranking, ordering, pagination.

Every view must return the same records in the same order for the same `Query`; the
conformance suite (tests/conformance) holds them to it. What is defined here:

Tokens
    Exactly what SQLite FTS5's ``unicode61 remove_diacritics 2`` tokenizer makes of the
    text, so the SQLite view can let FTS5 tokenize stored text and pass it our
    already-normalised query tokens: runs of letters and digits, everything else
    separates; case and diacritics folded ("Café" -> "cafe"). Beyond ASCII the rules are
    SQLite's own frozen tables (`fabric.unicode61`, generated from SQLite and re-checked
    against it by the tests), not this Python's Unicode database: code points unassigned
    in SQLite's tables are token characters, and letters newer than them do not fold.
    Tokens longer than 32768 UTF-8 bytes are cut there, as FTS5 cuts them.
Matching
    A record matches a text query when every query token occurs in its content or tags.
    User text is never interpreted as query syntax: quotes, ``AND``, ``NEAR``, ``*``, ``-``
    and parentheses are just characters (mostly separators). Empty or blank text means
    "no text condition"; text with no searchable characters at all is an `InvalidQueryError`
    (never a silently empty result).
Ranking
    BM25 exactly as FTS5 computes it (k1 = 1.2, b = 0.75, columns content and tags with
    weight 1, idf clamped at 1e-6), best first; ties by record id. Without text: newest
    first (timestamp descending), ties by record id.
Filters
    ``memory_type``, ``storage_tier`` (equality), ``tags`` (the record has every tag
    given) and ``where``, a metadata filter::

        {"user": "u1"}                           equality (any JSON scalar)
        {"score": {"$gte": 3, "$lt": 10}}        several operators on one key: all must hold
        {"a.b": {"$in": [1, 2]}}                 dotted paths reach into nested objects
        {"$and": [f, ...]}, {"$or": [f, ...]}, {"$not": f}

    Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $contains $exists``. Comparisons are
    type-strict: numbers compare with numbers and strings with strings (booleans are not
    numbers); a missing key or another type never matches ``$eq $gt $gte $lt $lte $in``.
    ``$ne`` and ``$nin`` are the negations of ``$eq`` and ``$in`` (a missing key matches).
    ``$contains`` matches an array holding the value, or a string holding the substring.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from fabric import unicode61
from fabric.errors import InvalidQueryError
from fabric.state import Record

# --- tokens --------------------------------------------------------------------------

_WORD: Final = re.compile(r"[^\W_]+")  # on ASCII text: [a-z0-9]+ after lower(), as FTS5
_ASCII_SEPARATORS: Final = ((0x00, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7F))
#: ASCII: every separator becomes a space, so str.split() cuts the words (same as _WORD.findall).
_ASCII_SPACES: Final = {c: " " for a, b in _ASCII_SEPARATORS for c in range(a, b + 1)}
#: Beyond ASCII: runs of anything but FTS5's separators, once marks are dropped and letters folded.
_TOKEN_ANY: Final = re.compile("[^" + "".join(
    f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in (*_ASCII_SEPARATORS, *unicode61.SEPARATORS)) + "]+")
#: Case and diacritic folding of FTS5, as a str.translate table; MARKS (which FTS5 drops from inside a
#: word and treats as separators elsewhere) map to nothing, which gives the same tokens.
_FOLD: Final[dict[int, int | None]] = {
    **{c: c + 32 for c in range(0x41, 0x5B)}, **unicode61.FOLDS, **dict.fromkeys(unicode61.MARKS)}
MAX_TOKEN_BYTES: Final = 32768  # FTS5_MAX_TOKEN_SIZE: longer tokens are cut to this many bytes
BM25_K1: Final = 1.2
BM25_B: Final = 0.75
MAX_LIMIT: Final = 100_000
MAX_QUERY_TOKENS: Final = 64


def tokenize(text: str) -> list[str]:
    """Normalised tokens of ``text``, in order, with repeats: the tokens FTS5 indexes for it."""
    if text.isascii():
        tokens: list[str] = text.lower().translate(_ASCII_SPACES).split()  # twice as fast as a regex
    else:
        tokens = _TOKEN_ANY.findall(text.translate(_FOLD))
    if len(text) > MAX_TOKEN_BYTES // 4:
        tokens = [t if len(t) <= MAX_TOKEN_BYTES // 4 or len(t.encode("utf-8")) <= MAX_TOKEN_BYTES
                  else t.encode("utf-8")[:MAX_TOKEN_BYTES].decode("utf-8", "ignore") for t in tokens]
    return tokens


def document_tokens(content: str, tags: Sequence[str]) -> list[str]:
    """The tokens a record is indexed under: its content and its tags (a space separates like any non-word)."""
    if tags:
        return tokenize(content + " " + " ".join(tags))
    return tokenize(content)


def bm25_idf(total_docs: int, docs_with_term: int) -> float:
    idf = math.log((total_docs - docs_with_term + 0.5) / (docs_with_term + 0.5))
    return idf if idf > 0.0 else 1e-6


def bm25_term(idf: float, tf: int, doc_len: int, avg_len: float) -> float:
    # Same operations in the same order as FTS5's bm25() (fts5_aux.c), so both give the same float.
    return idf * ((tf * (BM25_K1 + 1.0)) / (tf + BM25_K1 * (1.0 - BM25_B + BM25_B * doc_len / avg_len)))


def score_key(score: float) -> float:
    """Scores are compared at 9 significant decimals, so float summation order never reorders ties."""
    return round(score, 9)


# --- filters -------------------------------------------------------------------------

CmpOp = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$exists"]
CMP_OPS: Final[frozenset[str]] = frozenset(
    ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$exists"])
Scalar: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True)
class Cmp:
    path: tuple[str, ...]
    op: CmpOp
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node: TypeAlias = Cmp | And | Or | Not

_MISSING: Final = object()


def _check_scalar(value: Any, where: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidQueryError(f"{where}: {value!r} is not a finite number")
        return
    raise InvalidQueryError(f"{where}: {value!r} is not a JSON scalar (string, number, boolean or null)")


def parse_filter(spec: Mapping[str, Any]) -> Node:
    """Validate a filter and turn it into a tree every view can evaluate."""
    if not isinstance(spec, Mapping):
        raise InvalidQueryError(f"a metadata filter must be a dict, not {type(spec).__name__}")
    items: list[Node] = []
    for key, value in spec.items():
        if not isinstance(key, str) or not key:
            raise InvalidQueryError(f"filter keys must be non-empty strings, not {key!r}")
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidQueryError(f"{key} takes a non-empty list of filters")
            subs = tuple(parse_filter(v) for v in value)
            items.append(And(subs) if key == "$and" else Or(subs))
        elif key == "$not":
            items.append(Not(parse_filter(value)))
        elif key.startswith("$"):
            raise InvalidQueryError(f"unknown filter operator {key!r}; use $and, $or, $not at the top level")
        else:
            path = tuple(key.split("."))
            if any(not p for p in path):
                raise InvalidQueryError(f"bad metadata path {key!r}")
            if isinstance(value, Mapping) and value and all(isinstance(k, str) and k.startswith("$") for k in value):
                for op, operand in value.items():
                    items.append(_cmp(path, op, operand))
            elif isinstance(value, Mapping):
                raise InvalidQueryError(f"{key}: compare with an operator ({', '.join(sorted(CMP_OPS))}), not a dict")
            else:
                items.append(_cmp(path, "$eq", value))
    if not items:
        raise InvalidQueryError("empty filter")
    return items[0] if len(items) == 1 else And(tuple(items))


def _cmp(path: tuple[str, ...], op: str, operand: Any) -> Cmp:
    where = f"{'.'.join(path)} {op}"
    if op not in CMP_OPS:
        raise InvalidQueryError(f"unknown operator {op!r}; use one of {', '.join(sorted(CMP_OPS))}")
    if op in ("$in", "$nin"):
        if not isinstance(operand, (list, tuple)):
            raise InvalidQueryError(f"{where} takes a list")
        for v in operand:
            _check_scalar(v, where)
        return Cmp(path, op, tuple(operand))  # type: ignore[arg-type]
    if op == "$exists":
        if not isinstance(operand, bool):
            raise InvalidQueryError(f"{where} takes true or false")
        return Cmp(path, "$exists", operand)
    _check_scalar(operand, where)
    if op in ("$gt", "$gte", "$lt", "$lte") and (operand is None or isinstance(operand, bool)):
        raise InvalidQueryError(f"{where} takes a number or a string")
    if op == "$contains" and operand is None:
        raise InvalidQueryError(f"{where} takes a value to look for")
    return Cmp(path, op, operand)  # type: ignore[arg-type]


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(doc, dict):
            return _MISSING
        doc = doc.get(part, _MISSING)
        if doc is _MISSING:
            return _MISSING
    return doc


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    return "other"


def _eq(a: Any, b: Any) -> bool:
    ka = _kind(a)
    return ka != "other" and ka == _kind(b) and bool(a == b)


def evaluate(node: Node, metadata: Mapping[str, Any]) -> bool:
    """Does ``metadata`` satisfy ``node``? The reference semantics every view must match."""
    if isinstance(node, And):
        return all(evaluate(n, metadata) for n in node.items)
    if isinstance(node, Or):
        return any(evaluate(n, metadata) for n in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, metadata)
    value = _lookup(metadata, node.path)
    op, operand = node.op, node.value
    if op == "$exists":
        return (value is not _MISSING) is bool(operand)
    if op == "$eq":
        return _eq(value, operand)
    if op == "$ne":
        return not _eq(value, operand)
    if op == "$in":
        return any(_eq(value, v) for v in operand)
    if op == "$nin":
        return not any(_eq(value, v) for v in operand)
    if op == "$contains":
        if isinstance(value, list):
            return any(_eq(v, operand) for v in value)
        return isinstance(value, str) and isinstance(operand, str) and operand in value
    kind = _kind(value)
    if kind not in ("num", "str") or kind != _kind(operand):
        return False
    if op == "$gt":
        return bool(value > operand)
    if op == "$gte":
        return bool(value >= operand)
    if op == "$lt":
        return bool(value < operand)
    return bool(value <= operand)


class Hit(NamedTuple):
    record: Record
    score: float  # BM25, higher is better; 0.0 for searches without text


# --- the query -----------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A search, validated. Build it with `make_query`."""

    text: str = ""
    terms: tuple[str, ...] = ()
    memory_type: str | None = None
    storage_tier: str | None = None
    tags: tuple[str, ...] = ()
    where: Node | None = None
    limit: int = 10
    offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def check_page(limit: int | None, offset: int | None, *, default_limit: int | None = 10) -> tuple[int | None, int]:
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidQueryError(f"limit must be an integer, not {limit!r}")
        if limit < 0:
            raise InvalidQueryError(f"limit must be >= 0, not {limit}")
        if limit > MAX_LIMIT:
            raise InvalidQueryError(f"limit must be <= {MAX_LIMIT}; page through larger results with offset")
    else:
        limit = default_limit
    off = 0 if offset is None else offset
    if isinstance(off, bool) or not isinstance(off, int) or off < 0:
        raise InvalidQueryError(f"offset must be an integer >= 0, not {offset!r}")
    return limit, off


def make_query(
    text: str | None,
    *,
    limit: int | None = 10,
    offset: int | None = 0,
    memory_type: str | None = None,
    storage_tier: str | None = None,
    tags: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
) -> Query:
    """Validate user input into a `Query`; every problem is an `InvalidQueryError`."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InvalidQueryError(f"query text must be a string, not {type(text).__name__}")
    terms: tuple[str, ...] = ()
    if text.strip():
        terms = tuple(tokenize(text))
        if not terms:
            raise InvalidQueryError(f"query {text!r} has no searchable words (letters or digits)")
        if len(terms) > MAX_QUERY_TOKENS:
            raise InvalidQueryError(f"query has {len(terms)} words; at most {MAX_QUERY_TOKENS} are allowed")
    lim, off = check_page(limit, offset)
    assert lim is not None
    tag_tuple: tuple[str, ...] = ()
    if tags is not None:
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise InvalidQueryError("tags must be a list of strings")
        tag_tuple = tuple(tags)
    return Query(
        text=text,
        terms=terms,
        memory_type=memory_type,
        storage_tier=storage_tier,
        tags=tag_tuple,
        where=parse_filter(where) if where is not None else None,
        limit=lim,
        offset=off,
    )
