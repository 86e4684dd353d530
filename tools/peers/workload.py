"""Deterministic synthetic agent memories: the one workload every benchmark contender stores.

Why one module: our bench and each peer runner (each in its own virtualenv, with its own Python
packages) must store byte-for-byte the same records and ask the same queries, or the comparison
means nothing. So this file is stdlib-only, imports nothing from the project, and is loaded by path
(``sys.path`` insert or ``importlib``) from both sides.

What the records look like, and why:
- content: sentence-like text over a fixed vocabulary of a few hundred words drawn with a Zipf law,
  so a few words are in nearly every record (worst case for a full-text index) and the tail is rare
  (the easy case); ASCII only, so ``content_bytes`` is bytes and characters alike;
- metadata: ``{"user": "u12", "session": 3, "source": "chat"}`` with skewed users, so metadata
  filters have both selective and unselective values;
- tags: zero to three from a small set; memory_type from the seed's types;
- ids: ``mem-0000000042``: fixed width, so they sort in insertion order.

Every record is a pure function of ``(seed, i)``: record 42 is the same whether you generate 100 or
1,000,000 records, and any record can be regenerated alone (for updates and checks).
Generation costs ~30 us per record (~35k records/s), so a bench should build its inputs before
timing (the peer runners do: see ``protocol.timed_loop``'s ``prepare``).
Run ``python tools/peers/workload.py [n]`` to see samples and how often the query words occur.
"""

from __future__ import annotations

import bisect
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

WORKLOAD_VERSION = 1  # bump when generated records change; benches print it

# Ordered roughly by how often agents would say them; the Zipf weight follows this order.
VOCABULARY: tuple[str, ...] = tuple(
    """
    the user to and a of in for is that with on it this task you we agent be as are at from
    was will can should by or have project data meeting prefers team asked about need code file
    report update next plan time new review message email week today call customer issue
    decided notes support model tool working summary follow up question answer api service
    deploy release budget draft schedule morning afternoon friday monday document design test
    memory context result error search request response stakeholder lead manager order account invoice
    payment price product feature bug fix ticket sprint goal deadline priority status weekly
    daily feedback preference language python javascript database query server cloud storage
    backup access login password reset config setting dashboard chart metric usage limit quota
    latency cache index vector embedding prompt chat session history recall remember forget
    note idea topic theme travel flight hotel booking trip london paris berlin tokyo madrid
    coffee lunch dinner restaurant vegetarian allergy birthday anniversary gift family friend
    colleague partner vendor contract legal policy compliance privacy consent audit risk
    security incident outage postmortem rollback hotfix migration upgrade version branch merge
    commit pipeline build docker kubernetes cluster node region bandwidth throughput benchmark
    experiment hypothesis analysis insight trend forecast quarter revenue cost margin growth
    churn retention onboarding survey interview persona roadmap milestone launch campaign
    marketing sales pricing discount renewal subscription license seat trial demo webinar
    workshop training course lesson tutorial exercise homework exam grade teacher student
    research paper citation dataset label annotation evaluation accuracy precision baseline
    translate summarize classify extract rewrite explain compare recommend estimate approve
    reject escalate assign notify remind cancel reschedule confirm verify validate archive
    photo image video audio transcript slide spreadsheet table column row field record
    spanish french german japanese mandarin portuguese dutch korean arabic hindi
    kitchen garden bicycle marathon yoga guitar piano chess hiking camping sailing skiing
    voucher receipt refund warranty shipment delivery tracking parcel courier warehouse
    inventory supplier procurement quote tender proposal bid scope requirement
    specification prototype wireframe mockup usability accessibility localization
    timezone calendar agenda minutes recap action owner blocker dependency deliverable
    oauth token certificate firewall vpn proxy bucket object endpoint replica shard
    quorum consensus raft paxos gossip logical clock lamport snapshot compaction tombstone
    ledger journal checksum digest signature envelope nonce salt cipher plaintext
    aurora borealis nebula quasar pulsar zenith equinox solstice meridian horizon
    obsidian basalt granite quartz jasper onyx garnet topaz beryl zircon
    marmalade nougat praline sorbet tiramisu baklava strudel macaron eclair souffle
    albatross cormorant kestrel heron osprey puffin wren finch lark plover
    xylophone ocarina theremin harpsichord bagpipe didgeridoo zither lute sitar oboe
    """.split()
)


def _rare_words(count: int) -> tuple[str, ...]:
    """Made-up three-syllable names ("kolaru"): each is in a tiny share of records."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    space = len(syllables) ** 3
    words = []
    for k in range(count):
        x = (k * 7919 + 17) % space
        words.append(syllables[x % 70] + syllables[(x // 70) % 70] + syllables[(x // 4900) % 70])
    return tuple(words)


# Names, codenames and places an agent would meet once: a long tail no Zipf vocabulary has.
RARE_WORDS: tuple[str, ...] = _rare_words(2000)
RARE_WORD_RATE = 0.004  # per word: ~10% of 200-byte records carry one rare name

TAGS: tuple[str, ...] = (
    "preference",
    "fact",
    "todo",
    "decision",
    "person",
    "project",
    "followup",
    "important",
    "personal",
    "work",
    "travel",
    "health",
)
SOURCES: tuple[str, ...] = ("chat", "email", "tool", "doc", "web", "voice")
MEMORY_TYPES: tuple[str, ...] = ("conversation", "knowledge", "context")  # the seed's enum values
USERS = 64
SESSIONS = 40
ZIPF_S = 1.05

_WORD_CUM = tuple(accumulate(1.0 / (rank**ZIPF_S) for rank in range(1, len(VOCABULARY) + 1)))
_USER_CUM = tuple(accumulate(1.0 / (rank**1.2) for rank in range(1, USERS + 1)))
_TAG_CUM = tuple(accumulate(1.0 / rank for rank in range(1, len(TAGS) + 1)))


def _pick(rng: random.Random, cum: tuple[float, ...]) -> int:
    """Index drawn with the given cumulative weights; stable across Python versions."""
    return min(bisect.bisect_right(cum, rng.random() * cum[-1]), len(cum) - 1)


@dataclass(frozen=True)
class Record:
    """One synthetic memory, shaped like the seed's ``MemoryFabric.store`` arguments."""

    id: str
    content: str
    metadata: dict[str, Any] = field(hash=False)
    tags: tuple[str, ...]
    memory_type: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (fresh copies, so callers may mutate it, as the seed does)."""
        return {
            "id": self.id,
            "content": self.content,
            "metadata": dict(self.metadata),
            "tags": list(self.tags),
            "memory_type": self.memory_type,
        }


def record_id(i: int) -> str:
    """Fixed-width id of the i-th record: sorts in insertion order."""
    return f"mem-{i:010d}"


def _text(rng: random.Random, content_bytes: int) -> str:
    """Sentence-like text of at most ``content_bytes`` ASCII bytes (at least one word)."""
    parts: list[str] = []
    size = 0
    sentence_left = 0
    while True:
        if rng.random() < RARE_WORD_RATE:
            word = RARE_WORDS[int(rng.random() * len(RARE_WORDS))]
        else:
            word = VOCABULARY[_pick(rng, _WORD_CUM)]
        if sentence_left == 0:
            word = word.capitalize()
            sentence_left = 6 + int(rng.random() * 10)
        sentence_left -= 1
        if sentence_left == 0:
            word += "."
        extra = len(word) + (1 if parts else 0)
        if parts and size + extra > content_bytes:
            break
        parts.append(word)
        size += extra
        if size >= content_bytes:
            break
    return " ".join(parts)[: max(content_bytes, len(parts[0]))]


def record(i: int, content_bytes: int = 200, seed: int = 1) -> Record:
    """The i-th record of the workload ``seed`` (a pure function of its arguments)."""
    rng = random.Random(f"mf-workload:{seed}:{i}")
    content = _text(rng, content_bytes)
    metadata = {
        "user": f"u{_pick(rng, _USER_CUM) + 1}",
        "session": 1 + int(rng.random() * SESSIONS),
        "source": SOURCES[int(rng.random() * len(SOURCES))],
    }
    n_tags = (0, 1, 1, 2, 2, 3)[int(rng.random() * 6)]
    tags: list[str] = []
    while len(tags) < n_tags:
        tag = TAGS[_pick(rng, _TAG_CUM)]
        if tag not in tags:
            tags.append(tag)
    memory_type = MEMORY_TYPES[(0, 0, 0, 1, 1, 2)[int(rng.random() * 6)]]
    return Record(record_id(i), content, metadata, tuple(tags), memory_type)


def records(n: int, content_bytes: int = 200, seed: int = 1, start: int = 0) -> Iterator[Record]:
    """Records ``start .. start+n-1`` in order."""
    for i in range(start, start + n):
        yield record(i, content_bytes, seed)


def updated_content(i: int, content_bytes: int = 200, seed: int = 1, version: int = 1) -> str:
    """New content for record i's ``version``-th update (deterministic, same size class)."""
    rng = random.Random(f"mf-update:{seed}:{i}:{version}")
    return _text(rng, content_bytes)


def access_order(n: int, count: int, seed: int = 1) -> list[int]:
    """``count`` record indices in [0, n) in a deterministic shuffled order, for reads/updates.

    Each index appears at most once while ``count <= n`` (deletes need that); beyond n the
    sequence repeats with a fresh shuffle.
    """
    rng = random.Random(f"mf-access:{seed}:{n}")
    out: list[int] = []
    while len(out) < count and n > 0:
        block = list(range(n))
        rng.shuffle(block)
        out.extend(block[: count - len(out)])
    return out


def query_classes() -> dict[str, list[str]]:
    """Search terms grouped by how many records match: the classes a search bench reports.

    Single lowercase words, plus two-word queries (every word must match; a substring store such
    as the seed's local_jsonl only finds them adjacent), so every store can tokenize them.
    """
    v = VOCABULARY
    last = len(v) - 1
    return {
        "common": ["user", "project", "meeting"],  # most records / about one in six
        "medium": [v[120], v[160], v[200]],  # a few percent
        "rare": [v[last], v[last - 7], v[last - 23]],  # about one percent
        "very_rare": [RARE_WORDS[7], RARE_WORDS[500], RARE_WORDS[1999]],  # a few per 100k
        "two_words": ["customer invoice", "deploy kubernetes", "vegetarian restaurant"],
    }


def default_queries() -> list[str]:
    """All query strings of :func:`query_classes`, in a fixed order."""
    return [q for qs in query_classes().values() for q in qs]


def _main() -> None:
    """Print a few records and how often words occur, to eyeball the distribution."""
    assert len(set(VOCABULARY)) == len(VOCABULARY), "duplicate words in VOCABULARY"
    assert len(set(RARE_WORDS)) == len(RARE_WORDS), "duplicate words in RARE_WORDS"
    assert not set(RARE_WORDS) & set(VOCABULARY), "RARE_WORDS overlap VOCABULARY"
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for r in records(3):
        print(r.to_dict())
    docs = [set(w.strip(".").lower() for w in r.content.split()) for r in records(n)]
    print(f"vocabulary={len(VOCABULARY)} records={n}")
    for cls, qs in query_classes().items():
        for q in qs:
            words = q.split()
            hits = sum(1 for d in docs if all(w in d for w in words))
            print(f"  {cls:<10} {q!r:<26} in {hits / n:7.2%} of records")


if __name__ == "__main__":
    _main()
