"""Looking back at a store: selecting events, a record's history with diffs, the store as it was.

Everything here reads the log and nothing else, so it answers the same whatever view a
store is served by, and a damaged view cannot mislead an auditor. Selecting events
streams (`select`): it holds one log chunk and, with a tag filter, the set of ids that
carry the tag, never the events themselves, so a million-event log costs no more memory
than a small one. Histories and snapshots hold what they return, nothing more.

Times are µs since the epoch, like the log's ``ts``. `parse_time` reads ISO 8601
(a zone-less time is UTC) or an age relative to now (``90s``, ``10m``, ``2h``, ``1d``,
``1w``): "since 2h" is what an operator types at 3 a.m.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from fabric import backends
from fabric.codec import Codec
from fabric.errors import ConfigurationError, InvalidInputError
from fabric.events import (
    Accessed,
    Deleted,
    Forgotten,
    KeyRotated,
    SegmentSealed,
    StoreCreated,
    Stored,
    Updated,
)
from fabric.forget import find_lines, id_needle, is_redacted
from fabric.log import Envelope, EventLog
from fabric.model import to_public, us_to_datetime
from fabric.state import Change, Record, evolve

Decode = Callable[[Envelope], Change]

_RELATIVE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*(?:ago)?\s*$", re.IGNORECASE)
_UNIT_SECONDS: Final = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_ENVELOPE: Final = msgspec.json.Decoder(Envelope)
_META: Final = msgspec.json.Decoder(dict[str, Any])
_CLIP: Final = 60
_ABSENT: Final = object()
_TOKENS: Final = re.compile(r"\s+|\w+|[^\w\s]")


# --- times --------------------------------------------------------------------------------------


def now_us() -> int:
    return time.time_ns() // 1000


def parse_time(text: str, *, now: int | None = None) -> int:
    """``text`` as µs since the epoch: ISO 8601 (UTC if no zone), ``now``, or an age like ``10m``/``2h``/``1d``."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("a time is needed: ISO 8601 (2026-11-25T10:00:00Z) or an age (10m, 2h, 1d)")
    current = now_us() if now is None else now
    raw = text.strip()
    if raw.lower() == "now":
        return current
    m = _RELATIVE.match(raw)
    if m:
        return current - int(float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()] * 1_000_000)
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"cannot read {text!r} as a time; use ISO 8601 (2026-11-25T10:00:00Z) "
                                "or an age (90s, 10m, 2h, 1d, 1w)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def parse_point(text: str) -> tuple[int | None, int | None]:
    """A point of the log as (seq, None) for a number, else (None, time in µs)."""
    raw = text.strip()
    if raw.isascii() and raw.isdigit():
        return int(raw), None
    return None, parse_time(raw)


def iso(us: int) -> str:
    return us_to_datetime(us).isoformat(timespec="microseconds")


# --- opening a store for reading ----------------------------------------------------------------


@dataclass
class AuditSource:
    """An existing log and the codec that reads it: what every audit tool starts from."""

    log: EventLog
    codec: Codec

    def decode(self, env: Envelope) -> Change:
        return self.codec.decode(env)


@contextlib.contextmanager
def open_source(data_dir: str | os.PathLike[str], key: str | None = None, *,
                decode: bool = True) -> Iterator[AuditSource]:
    """Open the log in ``data_dir`` without creating anything (a missing log is a `ConfigurationError`).

    With ``decode=False`` no key is needed: the codec is the plain one, for tools that
    only look at envelopes (verification, raw replay).
    """
    from fabric.codec import PlainCodec  # noqa: PLC0415
    from fabric.crypto_codec import StoreOpener  # noqa: PLC0415

    path = Path(data_dir)
    if not path.is_dir():
        raise ConfigurationError(f"data_dir {str(path)!r} does not exist", hint="pass --data-dir")
    event_log = EventLog(path, read_only=True)
    try:
        codec: Codec = StoreOpener(key).open(event_log) if decode else PlainCodec()
        yield AuditSource(event_log, codec)
    finally:
        event_log.close()


# --- selecting events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """Which events to keep. Empty sets mean "any"; bounds are inclusive."""

    from_seq: int = 1
    to_seq: int | None = None
    since: int | None = None  # µs
    until: int | None = None  # µs
    types: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    writers: frozenset[str] = frozenset()
    tag: str | None = None

    def __post_init__(self) -> None:
        if self.from_seq < 1:
            raise InvalidInputError(f"--from-seq must be at least 1, not {self.from_seq}")
        if self.to_seq is not None and self.to_seq < self.from_seq:
            raise InvalidInputError(f"--to-seq {self.to_seq} is before --from-seq {self.from_seq}")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise InvalidInputError("--until is before --since")

    @property
    def needs_payload(self) -> bool:
        return self.tag is not None

    @property
    def is_prefix(self) -> bool:
        """Keeps every event from the start up to a bound: what a persistent view may be given."""
        return (not self.types and not self.ids and not self.writers and self.tag is None
                and self.since is None)

    def past_end(self, env: Envelope) -> bool:
        """Nothing at or after ``env`` can match (seqs and ts only grow along the log)."""
        return (self.to_seq is not None and env.seq > self.to_seq) or (self.until is not None and env.ts > self.until)

    def matches(self, env: Envelope) -> bool:
        """Everything but the tag, which needs state (`TagTracker`)."""
        if env.seq < self.from_seq or (self.since is not None and env.ts < self.since):
            return False
        if self.types and env.type not in self.types:
            return False
        if self.ids and env.id not in self.ids:
            return False
        return not (self.writers and env.writer not in self.writers)


class TagTracker:
    """Which records carry ``tag``, as the log is read forward. Holds those ids only.

    An event belongs to a tagged record if the record had the tag before it or has it
    after it (so the update that removes a tag, and the delete of a tagged record, are
    shown). Updates only ever name live records (the facade checks under the log lock),
    so the tracker needs no set of all live ids.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.ids: set[str] = set()

    def feed(self, env: Envelope, decode: Decode) -> bool:
        """Take ``env`` in; True if it belongs to a record with the tag."""
        rid = env.id
        before = rid in self.ids
        if env.type == Stored.TYPE or env.type == Updated.TYPE:
            event = decode(env).event
            tags = getattr(event, "tags", msgspec.UNSET)
            if isinstance(event, Forgotten):  # a redacted line: the record is gone
                self.ids.discard(rid)
            elif tags is not msgspec.UNSET:
                if self.tag in tags:
                    self.ids.add(rid)
                else:
                    self.ids.discard(rid)
        elif env.type == Deleted.TYPE or env.type == Forgotten.TYPE:
            self.ids.discard(rid)
        return before or rid in self.ids


def first_seq_at(event_log: EventLog, ts: int) -> int:
    """A seq from which reading surely reaches the first event at or after ``ts``.

    Reads only the first line of each segment (the log's ``ts`` never decreases), so
    ``--since 10m`` on a big log skips the old segments instead of decoding them.
    """
    best = 1
    for first in event_log.segments():
        try:
            with open(event_log.segment_path(first), "rb") as f:
                line = f.readline()
        except OSError:
            continue
        if not line.endswith(b"\n"):
            break
        try:
            env = _ENVELOPE.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError):
            break  # damage: let the full read report it
        if env.ts > ts:
            break
        best = first
    return best


def select(source: Iterable[Envelope], flt: EventFilter, decode: Decode | None = None) -> Iterator[Envelope]:
    """The envelopes of ``source`` (in log order) that ``flt`` keeps; stops at the filter's end.

    With a tag filter ``source`` must start at seq 1 (the tracker must see every record
    come into being) and ``decode`` is required.
    """
    tracker = TagTracker(flt.tag) if flt.tag is not None else None
    if tracker is not None and decode is None:
        raise InvalidInputError("a tag filter needs to decode payloads")
    for env in source:
        if flt.past_end(env):
            return
        tagged = tracker.feed(env, decode) if tracker is not None and decode is not None else True
        if tagged and flt.matches(env):
            yield env


def read_start(event_log: EventLog, flt: EventFilter) -> int:
    """Where reading must begin to serve ``flt``."""
    if flt.tag is not None:
        return 1
    start = flt.from_seq
    if flt.since is not None:
        start = max(start, first_seq_at(event_log, flt.since))
    return start


def select_from_log(event_log: EventLog, flt: EventFilter, decode: Decode | None = None) -> Iterator[Envelope]:
    """`select` over the log itself, starting as late as the filter allows."""
    return select(event_log.read(read_start(event_log, flt), flt.to_seq), flt, decode)


# --- describing events --------------------------------------------------------------------------


def clip(text: str, width: int = _CLIP) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def describe(change: Change | None, env: Envelope) -> str:
    """One line saying what an event did, for people (tables, tail, the report)."""
    if is_redacted(env):
        return "erased (payload removed by a forget)"
    event = change.event if change is not None else None
    if event is None:
        return f"{len(env.data)} bytes"
    if isinstance(event, Stored):
        tags = f" [{', '.join(event.tags)}]" if event.tags else ""
        return f"{event.memory_type}{tags}: {clip(event.content)!r}"
    if isinstance(event, Updated):
        changed = [name for name in ("content", "metadata", "tags", "memory_type", "storage_tier", "embedding")
                   if getattr(event, name) is not msgspec.UNSET]
        detail = f": {clip(event.content, 40)!r}" if isinstance(event.content, str) else ""
        return f"changed {', '.join(changed) or 'nothing'}{detail}"
    if isinstance(event, Accessed):
        return f"read {event.count}x"
    if isinstance(event, Deleted):
        return "deleted"
    if isinstance(event, Forgotten):
        return f"forgotten{': ' + event.reason if event.reason else ''}"
    if isinstance(event, StoreCreated):
        return f"store created (log {event.log_id}{', encrypted' if event.encryption else ''})"
    if isinstance(event, KeyRotated):
        return "store key rotated"
    if isinstance(event, SegmentSealed):
        return "segment sealed"
    return env.type


def event_dict(env: Envelope, change: Change | None = None) -> dict[str, Any]:
    """An event for ``--json``: the envelope's fields, an ISO time, and the payload (decoded if ``change``)."""
    out: dict[str, Any] = {"seq": env.seq, "ts": env.ts, "time": iso(env.ts), "writer": env.writer,
                           "type": env.type, "id": env.id}
    out["data"] = change.event if change is not None else env.data
    if is_redacted(env):
        out["erased"] = True
    out["hash"] = env.hash
    return out


# --- one record's history -----------------------------------------------------------------------


@dataclass
class FieldChange:
    field: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclass
class Version:
    """One event of a record and what it changed."""

    seq: int
    ts: int
    writer: str
    type: str
    erased: bool
    record: Record | None  # the record after this event (None: it does not exist)
    changes: list[FieldChange] = field(default_factory=list)
    content_diff: list[str] = field(default_factory=list)  # unified diff lines, if the content changed
    word_diff: list[tuple[str, str]] = field(default_factory=list)  # ("=", "-" or "+", text)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "time": iso(self.ts), "writer": self.writer, "type": self.type,
                "erased": self.erased, "reason": self.reason,
                "record": None if self.record is None else to_public(self.record).to_dict(),
                "changes": [c.to_dict() for c in self.changes], "content_diff": self.content_diff}


def _meta(rec: Record | None) -> dict[str, Any]:
    return {} if rec is None else _META.decode(rec.metadata)


def _embedding_summary(rec: Record | None) -> Any:
    if rec is None or rec.embedding is None:
        return None
    return f"{rec.embedding.model or 'vector'} ({len(rec.embedding.vector)} values)"


def diff_records(old: Record | None, new: Record | None) -> tuple[list[FieldChange], list[str], list[tuple[str, str]]]:
    """What changed between two versions: fields (metadata per key, tags added/removed), a content diff."""
    changes: list[FieldChange] = []
    if old is None and new is None:
        return changes, [], []
    old_content = old.content if old is not None else ""
    new_content = new.content if new is not None else ""
    for name in ("memory_type", "storage_tier"):
        a, b = getattr(old, name, None), getattr(new, name, None)
        if a != b:
            changes.append(FieldChange(name, a, b))
    a_tags = list(old.tags) if old is not None else []
    b_tags = list(new.tags) if new is not None else []
    if a_tags != b_tags:
        changes.append(FieldChange("tags", a_tags, b_tags))
    ma, mb = _meta(old), _meta(new)
    for k in sorted(set(ma) | set(mb)):
        if ma.get(k, _ABSENT) != mb.get(k, _ABSENT):
            changes.append(FieldChange(f"metadata.{k}", ma.get(k), mb.get(k)))
    ea, eb = _embedding_summary(old), _embedding_summary(new)
    if (old.embedding if old else None) != (new.embedding if new else None):
        changes.append(FieldChange("embedding", ea, eb))
    if old is not None and new is not None and old.access_count != new.access_count:
        changes.append(FieldChange("access_count", old.access_count, new.access_count))
    if old_content == new_content:
        return changes, [], []
    unified = list(difflib.unified_diff(old_content.splitlines(), new_content.splitlines(),
                                        "before", "after", n=2, lineterm=""))
    return changes, unified, word_diff(old_content, new_content)


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """``old`` -> ``new`` as runs of kept ("="), removed ("-") and added ("+") words: readable inline diffs."""
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("=", "".join(a[i1:i2])))
        else:
            if i2 > i1:
                out.append(("-", "".join(a[i1:i2])))
            if j2 > j1:
                out.append(("+", "".join(b[j1:j2])))
    return out


def fold_versions(changes: Iterable[tuple[Envelope, Change]]) -> list[Version]:
    """Fold one record's events (oldest first) into versions with what each changed."""
    versions: list[Version] = []
    current: Record | None = None
    for env, ch in changes:
        new = evolve(current, ch.event, id=ch.id, seq=ch.seq, ts=ch.ts)
        fields, unified, words = diff_records(current, new)
        reason = ch.event.reason if isinstance(ch.event, Forgotten) and env.type == Forgotten.TYPE else ""
        versions.append(Version(seq=env.seq, ts=env.ts, writer=env.writer, type=env.type, erased=is_redacted(env),
                                record=new, changes=fields, content_diff=unified, word_diff=words, reason=reason))
        current = new
    return versions


def record_history(src: AuditSource, record_id: str) -> list[Version]:
    """Every event of one record, oldest first, each with the diff to the version before.

    Lines are found by a byte search for the id (`fabric.forget.find_lines`), so this costs
    a read of the log, not a decode of every event. Empty if the id never occurred.
    """
    lines = [env for env in find_lines(src.log, id_needle(record_id)) if env.id == record_id]
    return fold_versions((env, src.decode(env)) for env in lines)


# --- the store as it was ------------------------------------------------------------------------


def snapshot(src: AuditSource, *, seq: int | None = None, ts: int | None = None) -> Any:
    """A read-only `fabric.fabric.Snapshot` of the store at log ``seq`` or at time ``ts`` (µs).

    Folds the log into an in-memory view, whatever backend serves the store.
    """
    from fabric.fabric import Snapshot  # noqa: PLC0415

    if seq is not None and seq < 0:
        raise InvalidInputError(f"a seq must be >= 0, not {seq}")
    view: Any = backends.open_view("local_jsonl", src.log.path, {})
    batch: list[Change] = []
    position = 0
    for env in src.log.read(1, seq):
        if ts is not None and env.ts > ts:
            break
        batch.append(src.decode(env))
        position = env.seq
        if len(batch) >= 4096:
            view.apply(batch, position)
            batch = []
    view.apply(batch, position)
    return Snapshot(view)


# --- re-applying events to a view ---------------------------------------------------------------


def apply_to_view(view: Any, changes: Iterable[Change], *, batch: int = 4096) -> tuple[int, int]:
    """Feed ``changes`` (log order) to a view in batches, each atomic with its checkpoint.

    Events at or below the view's position are skipped (it has them: exactly once).
    Returns (events applied, the view's position after).
    """
    applied = 0
    position = int(view.position())
    pending: list[Change] = []
    for ch in changes:
        if ch.seq <= position:
            continue
        pending.append(ch)
        if len(pending) >= batch:
            view.apply(pending, pending[-1].seq)
            position = pending[-1].seq
            applied += len(pending)
            pending = []
    if pending:
        view.apply(pending, pending[-1].seq)
        applied += len(pending)
        position = pending[-1].seq
    return applied, position


def types_known() -> Sequence[str]:
    from fabric.events import EVENT_TYPES  # noqa: PLC0415

    return sorted(EVENT_TYPES)
