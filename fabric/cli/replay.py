"""``fabric replay``: stream the log's events, filtered, to the terminal, to a script, or into a view.

Streams in constant memory: one event at a time from `EventLog.read` through the filter
to stdout, never a list of events. Also home of `EventPrinter`, the one way events are
printed (``tail`` and ``audit log`` use it too).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Final

import msgspec
import typer
from rich.text import Text

from fabric import audit, backends
from fabric.audit import AuditSource, EventFilter
from fabric.cli.common import Backend, DataDir, Json, Key, console, emit_json, store_dir
from fabric.errors import ConfigurationError, InvalidInputError
from fabric.follow import DEFAULT_POLL, follow
from fabric.log import Envelope
from fabric.model import us_to_datetime
from fabric.state import Change

_ENCODER: Final = msgspec.json.Encoder()
#: view names accepted by --to-view -> backend whose view it is
VIEW_BACKENDS: Final = {"memory": "local_jsonl", "local_jsonl": "local_jsonl", "sqlite": "sqlite", "s3": "s3"}
_TYPE_STYLES: Final = {"stored": "green", "updated": "yellow", "deleted": "red", "forgotten": "bold red",
                       "accessed": "dim", "store_created": "magenta", "key_rotated": "magenta",
                       "segment_sealed": "dim"}

# --- options shared with tail and audit log ----------------------------------------------------------

FromSeq = Annotated[int, typer.Option("--from-seq", help="First seq to include.")]
ToSeq = Annotated[int | None, typer.Option("--to-seq", help="Last seq to include.")]
Since = Annotated[str | None, typer.Option("--since", help="Events at or after: ISO time or an age (10m, 2h, 1d).")]
Until = Annotated[str | None, typer.Option("--until", help="Events at or before: ISO time or an age (10m, 2h, 1d).")]
Types = Annotated[list[str] | None, typer.Option("--type", "-t", help="Only this event type (repeatable).")]
Ids = Annotated[list[str] | None, typer.Option("--id", help="Only events of this record id (repeatable).")]
Writers = Annotated[list[str] | None, typer.Option("--writer", "-w", help="Only events by this writer (repeatable).")]
Tag = Annotated[str | None, typer.Option("--tag", help="Only events of records that carry this tag.")]
Raw = Annotated[bool, typer.Option("--raw", help="Print log lines as stored, payloads undecoded (no key needed).")]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Stop following after this many seconds.")]
Count = Annotated[int | None, typer.Option("--count", "-c", help="Exit after printing this many events.")]
Poll = Annotated[float, typer.Option("--poll", help="Seconds between re-reads when no file notification comes.")]


def make_filter(*, from_seq: int = 1, to_seq: int | None = None, since: str | None = None, until: str | None = None,
                types: list[str] | None = None, ids: list[str] | None = None, writers: list[str] | None = None,
                tag: str | None = None) -> EventFilter:
    """The filter the options describe; unknown event types are a usage error that lists the known ones."""
    known = audit.types_known()
    for t in types or ():
        if t not in known:
            raise InvalidInputError(f"unknown event type {t!r}; use one of: {', '.join(known)}")
    return EventFilter(from_seq=from_seq, to_seq=to_seq,
                       since=None if since is None else audit.parse_time(since),
                       until=None if until is None else audit.parse_time(until),
                       types=frozenset(types or ()), ids=frozenset(ids or ()), writers=frozenset(writers or ()),
                       tag=tag)


class EventPrinter:
    """Prints events as JSON lines (``--json``), raw log lines (``--raw --json``) or aligned rich lines."""

    def __init__(self, *, json: bool, raw: bool, flush_each: bool = False) -> None:
        self.json = json
        self.raw = raw
        self.flush_each = flush_each
        self.count = 0
        self._out = sys.stdout.buffer
        self._headed = False
        self._plain = not console.is_terminal  # piped: the same text without rich's per-line cost (~10x faster)

    def header(self) -> None:
        if self.json or self._headed:
            return
        self._headed = True
        console.print(Text(f"{'seq':>8}  {'time (UTC)':<23}  {'writer':<16}  {'type':<14}  {'id':<36}  what",
                           style="bold"), soft_wrap=True)
        console.file.flush()  # plain lines go to the byte stream underneath: keep the order

    def emit(self, env: Envelope, change: Change | None) -> None:
        self.count += 1
        if self.json:
            if self.raw:
                self._out.write(_ENCODER.encode(env) + b"\n")
            else:
                self._out.write(_ENCODER.encode(audit.event_dict(env, change)) + b"\n")
            if self.flush_each:
                self._out.flush()
            return
        self.header()
        when = us_to_datetime(env.ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        if self._plain:
            self._out.write(f"{env.seq:>8}  {when:<23}  {env.writer[:16]:<16}  {env.type:<14}  {env.id:<36}  "
                            f"{audit.describe(change, env)}\n".encode())
            if self.flush_each:
                self._out.flush()
            return
        line = Text.assemble(
            (f"{env.seq:>8}", "cyan"), "  ", (f"{when:<23}", "dim"), "  ", f"{env.writer[:16]:<16}", "  ",
            (f"{env.type:<14}", _TYPE_STYLES.get(env.type, "")), "  ", f"{env.id:<36}", "  ",
            audit.describe(change, env))
        console.print(line, soft_wrap=True)

    def finish(self) -> None:
        if self.json or self._plain:
            self._out.flush()


@contextlib.contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """``fabric replay | head`` is normal use: stop quietly when the reader goes away."""
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


def timer_stop(timeout: float | None) -> threading.Event:
    """An event set after ``timeout`` seconds (never, if None): how --timeout ends a follow."""
    stop = threading.Event()
    if timeout is not None:
        timer = threading.Timer(timeout, stop.set)
        timer.daemon = True
        timer.start()
    return stop


def stream(src: AuditSource, flt: EventFilter, *, decode: bool, follow_on: bool = False,
           stop: threading.Event | None = None, poll: float = DEFAULT_POLL) -> Iterator[tuple[Envelope, Change | None]]:
    """Selected events with their decoded payloads (None when not decoding), following if asked."""
    start = audit.read_start(src.log, flt)
    if follow_on:
        source: Any = follow(src.log, start, stop, poll=poll)
    else:
        source = src.log.read(start, flt.to_seq)
    for env in audit.select(source, flt, src.decode if flt.needs_payload else None):
        yield env, (src.decode(env) if decode else None)


def replay(
    from_seq: FromSeq = 1,
    to_seq: ToSeq = None,
    since: Since = None,
    until: Until = None,
    event_type: Types = None,
    record_id: Ids = None,
    writer: Writers = None,
    tag: Tag = None,
    to_view: Annotated[str | None, typer.Option(
        "--to-view", help="Apply the events to a view instead of printing them: memory (a what-if fold, "
                          "any filter), sqlite or s3 (the store's own view: only --to-seq/--until, from its "
                          "checkpoint on).")] = None,
    follow_on: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming new events as they land.")] = False,
    timeout: Timeout = None,
    count: Count = None,
    poll: Poll = DEFAULT_POLL,
    raw: Raw = False,
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Key = None,
    json: Json = False,
) -> None:
    """Stream the log's events in order, filtered by seq, time, type, record id, writer or tag.

    A table for people, JSON lines with --json (add --raw for the log lines as stored).
    Constant memory on any log size.

    Example: fabric replay --since 2h --type updated --json
    """
    path = store_dir(data_dir, backend)
    flt = make_filter(from_seq=from_seq, to_seq=to_seq, since=since, until=until, types=event_type,
                      ids=record_id, writers=writer, tag=tag)
    if to_view is not None:
        if follow_on:
            raise InvalidInputError("--to-view and --follow do not go together")
        _replay_into_view(path, to_view, flt, key, json)
        return
    needs_codec = not raw or flt.needs_payload
    printer = EventPrinter(json=json, raw=raw, flush_each=follow_on)
    stop = timer_stop(timeout)
    with audit.open_source(path, key, decode=needs_codec) as src, quiet_broken_pipe():
        if not follow_on:
            printer.header()
        try:
            for env, change in stream(src, flt, decode=not raw, follow_on=follow_on, stop=stop, poll=poll):
                printer.emit(env, change)
                if count is not None and printer.count >= count:
                    break
        except KeyboardInterrupt:  # Ctrl-C is how a follow ends
            if not follow_on:
                raise
        printer.finish()
    if not json and not follow_on:
        console.print(f"[dim]{printer.count} event(s)[/dim]")


def _replay_into_view(path: str, name: str, flt: EventFilter, key: str | None, json: bool) -> None:
    """Re-apply selected events to a view: a fresh in-memory fold, or the store's persistent view."""
    backend = VIEW_BACKENDS.get(name)
    if backend is None:
        raise ConfigurationError(f"unknown view {name!r}; choose one of: memory, sqlite, s3")
    persistent = backend != "local_jsonl"
    if persistent and not flt.is_prefix:
        raise ConfigurationError(
            f"the {name} view must see every event in order: only --to-seq and --until can limit it",
            hint="use --to-view memory for a filtered what-if fold, or `fabric rebuild` to start it over")
    with audit.open_source(path, key) as src:
        view: Any = backends.open_view(backend, src.log.path, {"data_dir": path})
        try:
            before = int(view.position())
            if persistent:
                check = getattr(view, "check_log", None)
                if callable(check):
                    first = next(iter(src.log.read(1, 1)), None)
                    log_id = getattr(src.decode(first).event, "log_id", None) if first is not None else None
                    check(log_id or None, src.log.refresh())
                    before = int(view.position())
                if flt.from_seq > before + 1:
                    raise ConfigurationError(
                        f"the {name} view is at seq {before}: starting at {flt.from_seq} would leave a gap",
                        hint=f"use --from-seq {before + 1} or lower (events it has are skipped)")
            start = audit.read_start(src.log, flt)
            if persistent:
                start = max(start, before + 1)
            events = audit.select(src.log.read(start, flt.to_seq), flt,
                                  src.decode if flt.needs_payload else None)
            applied, position = audit.apply_to_view(view, (src.decode(env) for env in events))
            result = {"view": name, "applied": applied, "position": position, "was_at": before,
                      "records": int(view.count())}
        finally:
            view.close()
    if json:
        emit_json(result)
        return
    console.print(f"applied {applied} event(s) to the {name} view (seq {before} -> {position}); "
                  f"it now holds {result['records']} record(s)")


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
