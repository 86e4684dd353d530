"""Metadata filters (`fabric.query` AST) compiled to SQLite JSON1 SQL with bound parameters.

Why in SQL: the view filters rows where they are, before ranking and paging, instead of
decoding every candidate's metadata in Python. What it must equal is `fabric.query.evaluate`
(type-strict comparisons, booleans are not numbers, a missing key matches only ``$ne``,
``$nin`` and ``$exists: false``), so every comparison compiles to an expression that is
0 or 1, never NULL: ``NOT``, ``AND`` and ``OR`` then compose exactly like Python's.

Values and paths are always bound parameters, never spliced into the SQL text. A path
whose keys are plain (no ``"``, ``\\`` or control characters) becomes a quoted JSON path
(``$."a"."b"``), bound; any other key is matched by ``json_each`` on its decoded name, so
keys may hold quotes, spaces, dots of their own or any Unicode.

Limits, all about values SQLite decodes differently from Python: a metadata string holding
U+0000 compares (``$gt``.., ``$contains``) as if cut there, except for equality, which
compares the JSON text; integers beyond 64 bits compare as floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from fabric.query import And, Cmp, Node, Not, Or, Query

_JSON: Final = msgspec.json.Encoder()
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_NUMERIC: Final = "('integer','real')"


def _plain(key: str) -> bool:
    return all(c not in '"\\' and 0x20 <= ord(c) != 0x7F for c in key)


def json_path(path: Sequence[str]) -> str:
    """The SQLite JSON path of plain keys: every key quoted, so '$', '[' or spaces in a key are just characters."""
    return "$" + "".join(f'."{k}"' for k in path)


def _number(value: int | float) -> int | float:
    if isinstance(value, int) and not _I64_MIN <= value <= _I64_MAX:
        return float(value)
    return value


class _Node:
    """SQL for the JSON value at one metadata path: its json_type, its SQL value, its raw JSON text."""

    def __init__(self, column: str, path: tuple[str, ...], params: list[Any]) -> None:
        self.column = column
        self.path = path
        self.params = params
        self.plain = all(_plain(k) for k in path)

    def _each(self, select: str) -> str:
        """A scalar subquery walking the path with json_each, keys bound (for keys a JSON path cannot name)."""
        joins = []
        conds = []
        for i, key in enumerate(self.path):
            if i == 0:
                source = self.column
            else:
                prev = f"j{i - 1}"
                source = f"CASE WHEN {prev}.type = 'object' THEN {prev}.value ELSE '{{}}' END"
            joins.append(f"json_each({source}) AS j{i}")
            conds.append(f"j{i}.key = ?")
            self.params.append(key)
        last = f"j{len(self.path) - 1}"
        return f"(SELECT {select.format(j=last)} FROM {', '.join(joins)} WHERE {' AND '.join(conds)} LIMIT 1)"

    def type(self) -> str:
        if self.plain:
            self.params.append(json_path(self.path))
            return f"json_type({self.column}, ?)"
        return self._each("{j}.type")

    def value(self) -> str:
        if self.plain:
            self.params.append(json_path(self.path))
            return f"json_extract({self.column}, ?)"
        return self._each("{j}.atom")

    def text(self) -> str:
        """Raw JSON text of the value (strings compared this way survive U+0000); plain paths only."""
        self.params.append(json_path(self.path))
        return f"({self.column} -> ?)"

    def elements(self) -> str:
        """FROM-clause source of the elements of an array at the path."""
        if self.plain:
            self.params.append(json_path(self.path))
            return f"json_each({self.column}, ?)"
        inner = self._each("CASE WHEN {j}.type = 'array' THEN {j}.value ELSE '[]' END")
        return f"json_each(coalesce({inner}, '[]'))"


def _eq(node: _Node, value: Any) -> str:
    """The value at the node equals ``value`` in the reference's type-strict sense (0 or 1)."""
    params = node.params
    if value is None:
        return f"({node.type()} IS 'null')"
    if isinstance(value, bool):
        return f"({node.type()} IS '{'true' if value else 'false'}')"
    if isinstance(value, (int, float)):
        t = node.type()
        v = node.value()
        params.append(_number(value))
        return f"(coalesce({t} IN {_NUMERIC}, 0) AND {v} = ?)"
    t = node.type()
    if node.plain:
        x = node.text()
        params.append(_JSON.encode(value).decode())
    else:
        x = node.value()
        params.append(value)
    return f"({t} IS 'text' AND {x} = ?)"


def _element_eq(alias: str, value: Any, params: list[Any]) -> str:
    """An element of json_each equals ``value`` (type-strict), 0 or 1."""
    if value is None:
        return f"{alias}.type = 'null'"
    if isinstance(value, bool):
        return f"{alias}.type = '{'true' if value else 'false'}'"
    if isinstance(value, (int, float)):
        params.append(_number(value))
        return f"({alias}.type IN {_NUMERIC} AND {alias}.atom = ?)"
    params.append(value)
    return f"({alias}.type = 'text' AND {alias}.atom = ?)"


def _cmp(c: Cmp, column: str, params: list[Any]) -> str:
    node = _Node(column, c.path, params)
    op, value = c.op, c.value
    if op == "$exists":
        return f"({node.type()} IS {'NOT ' if value else ''}NULL)"
    if op == "$eq":
        return _eq(node, value)
    if op == "$ne":
        return f"(NOT {_eq(node, value)})"
    if op in ("$in", "$nin"):
        alts = [_eq(node, v) for v in value]
        expr = f"({' OR '.join(alts)})" if alts else "0"
        return expr if op == "$in" else f"(NOT {expr})"
    if op == "$contains":
        t = node.type()
        source = node.elements()
        cond = _element_eq("e", value, params)
        expr = f"({t} IS 'array' AND EXISTS (SELECT 1 FROM {source} AS e WHERE {cond}))"
        if isinstance(value, str):
            t2 = node.type()
            v2 = node.value()
            params.append(value)
            expr = f"({expr} OR ({t2} IS 'text' AND instr({v2}, ?) > 0))"
        return expr
    # $gt $gte $lt $lte: numbers with numbers, strings with strings (BINARY = code point order on UTF-8)
    sql_op = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
    t = node.type()
    v = node.value()
    if isinstance(value, str):
        params.append(value)
        return f"({t} IS 'text' AND {v} {sql_op} ?)"
    params.append(_number(value))
    return f"(coalesce({t} IN {_NUMERIC}, 0) AND {v} {sql_op} ?)"


def compile_filter(node: Node, column: str, params: list[Any]) -> str:
    """SQL (0 or 1 per row) for ``node`` over the JSON text in ``column``; appends its parameters."""
    if isinstance(node, And):
        return "(" + " AND ".join(compile_filter(n, column, params) for n in node.items) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(compile_filter(n, column, params) for n in node.items) + ")"
    if isinstance(node, Not):
        return f"(NOT {compile_filter(node.item, column, params)})"
    return _cmp(node, column, params)


def where_clause(q: Query, alias: str, params: list[Any]) -> str:
    """All of a query's filters (type, tier, tags, metadata) on ``memory_records AS alias``; "1" when none."""
    parts: list[str] = []
    if q.memory_type is not None:
        parts.append(f"{alias}.memory_type = ?")
        params.append(q.memory_type)
    if q.storage_tier is not None:
        parts.append(f"{alias}.storage_tier = ?")
        params.append(q.storage_tier)
    for tag in dict.fromkeys(q.tags):
        parts.append(f"EXISTS (SELECT 1 FROM json_each({alias}.tags) AS t WHERE t.type = 'text' AND t.atom = ?)")
        params.append(tag)
    if q.where is not None:
        parts.append(compile_filter(q.where, f"{alias}.metadata", params))
    return " AND ".join(parts) if parts else "1"
