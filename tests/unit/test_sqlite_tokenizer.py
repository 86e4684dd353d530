"""`fabric.query.tokenize` gives exactly the tokens SQLite FTS5 (``unicode61 remove_diacritics 2``) indexes.

The SQLite view lets FTS5 tokenize stored text and every other view tokenizes in Python, so
any difference would make the views disagree. Checked for every Unicode code point (alone,
inside a word, starting a word), for tricky strings, and for random text.
"""

from __future__ import annotations

import sqlite3
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric.query import MAX_TOKEN_BYTES, make_query, tokenize
from projections.sqlite_schema import TOKENIZER


def fts5_tokens(texts: list[str]) -> list[list[str]]:
    """The tokens FTS5 stores for each text, in order (through fts5vocab)."""
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE t USING fts5(content, tokenize='{TOKENIZER}')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
    db.executemany("INSERT INTO t(rowid, content) VALUES (?, ?)", enumerate(texts, 1))
    out: list[list[str]] = [[] for _ in texts]
    for term, doc in db.execute("SELECT term, doc FROM v ORDER BY doc, offset"):
        out[doc - 1].append(term)
    db.close()
    return out


CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


@pytest.mark.parametrize("shape", ["{}", "a{}a", "{}a", "Z{}"], ids=["alone", "inside", "leading", "trailing"])
def test_every_code_point(shape: str) -> None:
    texts = [" ".join(shape.format(chr(cp)) for cp in CODE_POINTS[i:i + 2048])
             for i in range(0, len(CODE_POINTS), 2048)]
    for text, got in zip(texts, fts5_tokens(texts), strict=True):
        if tokenize(text) != got:
            bad = [w for w in text.split(" ") if tokenize(w) != fts5_tokens([w])[0]]
            pytest.fail(f"tokenize disagrees with FTS5 on {[hex(ord(c)) for w in bad[:5] for c in w]}")


TRICKY = [
    "Café CAFÉ cafe\u0301 naïve nai\u0308ve",
    "Ελληνικά ΚΕΦΑΛΑΙΑ ς σ",
    "東京タワー 中文字符 한국어",
    "x😀y ☃ snow 🧿 emoji",
    "a\u200bb a\u00adb zero\u200dwidth",
    "١٢٣ Ⅻ ² ½ ⅓",
    "İstanbul ıi ß ẞ ǅ ﬁ ligature",
    "Ⴀ ა Ა ᏸ Ᏸ",  # Georgian Mtavruli and Cherokee: newer than SQLite's tables
    "\u0300leading mark, trailing mark\u0301 a\u0300\u0301b",
    "हिन्दी देवनागरी",
    "tab\tnew\nline\r\n\x00nul\x7fdel",
    "\ue000private \U000f0000 \U0010fffd",
    "\U000e0001tag \ufeffbom \ufffd",
    "under_score hy-phen dot.ted 3.14 1,000",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_text(text: str) -> None:
    assert tokenize(text) == fts5_tokens([text])[0]
    assert tokenize(unicodedata.normalize("NFD", text)) == fts5_tokens([unicodedata.normalize("NFD", text)])[0]


def test_long_tokens_are_cut_like_fts5() -> None:
    texts = ["a" * 40000, "é" * 20000, "x" * MAX_TOKEN_BYTES + "y", "ab" + "€" * 11000, "q" * 32767 + "é"]
    assert [tokenize(t) for t in texts] == fts5_tokens(texts)


def test_query_terms_tokenize_to_themselves() -> None:
    """A query term handed to FTS5 (quoted) must stay one token: folding is idempotent."""
    terms = [t for text in TRICKY for t in make_query(text).terms]
    assert fts5_tokens(terms) == [[t] for t in terms]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=30))
def test_random_text(texts: list[str]) -> None:
    assert [tokenize(t) for t in texts] == fts5_tokens(texts)
