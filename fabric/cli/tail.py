"""``fabric tail`` and ``fabric watch``: follow the log while other processes write to it.

Both run on `fabric.follow.follow` (file notifications to wake up, a re-read from the last
position after each one, a poll as the fallback), so neither misses nor repeats an event.
``tail`` prints events; ``watch`` keeps a small live summary on screen.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fabric import audit
from fabric.cli.common import Backend, DataDir, Json, Key, console, emit_json, store_dir
from fabric.cli.replay import (
    Count,
    EventPrinter,
    Ids,
    Poll,
    Raw,
    Tag,
    Timeout,
    Types,
    Writers,
    make_filter,
    quiet_broken_pipe,
    stream,
    timer_stop,
)
from fabric.codec import Codec
from fabric.errors import MissingKeyError
from fabric.events import Deleted, Forgotten, Stored
from fabric.follow import DEFAULT_POLL, follow
from fabric.forget import is_redacted
from fabric.log import Envelope


def tail(
    lines: Annotated[int, typer.Option("--lines", "-n", help="Show this many of the latest events first.")] = 10,
    from_seq: Annotated[int | None, typer.Option("--from-seq", help="Start at this seq instead (overrides -n).")]
    = None,
    no_follow: Annotated[bool, typer.Option("--no-follow", help="Print the latest events and exit.")] = False,
    event_type: Types = None,
    record_id: Ids = None,
    writer: Writers = None,
    tag: Tag = None,
    count: Count = None,
    timeout: Timeout = None,
    poll: Poll = DEFAULT_POLL,
    raw: Raw = False,
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Key = None,
    json: Json = False,
) -> None:
    """Print the latest events, then each new one as other processes append it (Ctrl-C to stop).

    Example: fabric tail -n 0 --type stored --json
    """
    path = store_dir(data_dir, backend)
    printer = EventPrinter(json=json, raw=raw, flush_each=True)
    stop = timer_stop(timeout)
    with audit.open_source(path, key, decode=not raw or tag is not None) as src, quiet_broken_pipe():
        last = src.log.refresh()
        start = from_seq if from_seq is not None else max(1, last - max(lines, 0) + 1)
        flt = make_filter(from_seq=max(start, 1), types=event_type, ids=record_id, writers=writer, tag=tag)
        printer.header()
        try:
            for env, change in stream(src, flt, decode=not raw, follow_on=not no_follow, stop=stop, poll=poll):
                printer.emit(env, change)
                if count is not None and printer.count >= count:
                    break
        except KeyboardInterrupt:
            pass
        printer.finish()


class _Summary:
    """What `watch` shows: totals, a rate over the last seconds, the latest event."""

    WINDOW = 5.0

    def __init__(self, path: str) -> None:
        self.path = path
        self.events = 0  # last seq seen
        self.live: set[str] = set()
        self.new = 0
        self.new_types: Counter[str] = Counter()
        self.last: Envelope | None = None
        self.last_what = ""
        self.started = time.monotonic()
        self._marks: deque[tuple[float, int]] = deque()

    def take(self, env: Envelope, what: str | None) -> None:
        """Count an event; records are tracked by id from the envelope alone (no key needed)."""
        self.events = env.seq
        if env.type == Stored.TYPE:
            if is_redacted(env):
                self.live.discard(env.id)
            else:
                self.live.add(env.id)
        elif env.type in (Deleted.TYPE, Forgotten.TYPE):
            self.live.discard(env.id)
        self.last = env
        if what is not None:
            self.last_what = what

    def take_new(self, env: Envelope, what: str) -> None:
        self.take(env, what)
        self.new += 1
        self.new_types[env.type] += 1
        self._marks.append((time.monotonic(), self.new))

    def rate(self) -> float:
        now = time.monotonic()
        while self._marks and now - self._marks[0][0] > self.WINDOW:
            self._marks.popleft()
        if not self._marks:
            return 0.0
        span = max(now - self._marks[0][0], min(self.WINDOW, now - self.started), 1e-3)
        return (self.new - self._marks[0][1] + 1) / span

    def to_dict(self) -> dict[str, Any]:
        last = self.last
        return {"data_dir": self.path, "events": self.events, "records": len(self.live), "new_events": self.new,
                "events_per_second": round(self.rate(), 1), "new_by_type": dict(self.new_types),
                "last_event": None if last is None else {
                    "seq": last.seq, "time": audit.iso(last.ts), "type": last.type, "id": last.id,
                    "writer": last.writer, "what": self.last_what,
                    "age_seconds": round(max(0.0, time.time() - last.ts / 1e6), 3)}}

    def render(self) -> Table:
        d = self.to_dict()
        table = Table(title=escape(f"fabric watch: {self.path}"), show_header=False, title_justify="left",
                      min_width=60)
        table.add_column("what", style="bold")
        table.add_column("value")
        table.add_row("events", f"{d['events']:,}")
        table.add_row("records", f"{d['records']:,}")
        table.add_row("events/s", f"{d['events_per_second']:,.1f} (last {self.WINDOW:.0f} s)")
        table.add_row("new since start", ", ".join(f"{k} {v:,}" for k, v in self.new_types.most_common()) or "0")
        last = d["last_event"]
        if last is not None:
            table.add_row("last event", Text(f"#{last['seq']} {last['type']} {last['id']} by {last['writer']}"))
            table.add_row("", Text(f"{last['time']} ({last['age_seconds']:.1f} s ago) {last['what']}"))
        return table


def watch(
    count: Count = None,
    timeout: Timeout = None,
    poll: Poll = DEFAULT_POLL,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between screen (or --json) updates.")] = 1.0,
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Key = None,
    json: Json = False,
) -> None:
    """A live summary of the store as it changes: events/s, records, the latest event (Ctrl-C to stop).

    With --json, one summary object per line every --interval seconds and at the end.

    Example: fabric watch --data-dir ./store
    """
    path = store_dir(data_dir, backend)
    summary = _Summary(path)
    stop = timer_stop(timeout)
    with audit.open_source(path, decode=False) as src:
        codec = _codec_if_possible(src, key)

        def what(env: Envelope) -> str:
            return audit.describe(codec.decode(env) if codec is not None else None, env)

        last = src.log.refresh()
        for env in src.log.read(1, last):  # the state so far: ids only, no payloads
            summary.take(env, None)
        if summary.last is not None:
            summary.last_what = what(summary.last)
        live = None if json else Live(summary.render(), console=console, auto_refresh=False, transient=False)
        shown = [0.0]

        def show(force: bool = False) -> None:
            now = time.monotonic()
            if not force and now - shown[0] < interval:
                return
            shown[0] = now
            if live is not None:
                live.update(summary.render(), refresh=True)
            else:
                emit_json(summary.to_dict())

        try:
            if live is not None:
                live.start()
            for env in follow(src.log, last + 1, stop, poll=min(poll, interval), on_idle=show):
                summary.take_new(env, what(env))
                show()
                if count is not None and summary.new >= count:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            show(force=True)
            if live is not None:
                live.stop()


def _codec_if_possible(src: audit.AuditSource, key: str | None) -> Codec | None:
    """The store's codec, or None for an encrypted store watched without its key (ids and types still show)."""
    from fabric.crypto_codec import StoreOpener  # noqa: PLC0415

    try:
        return StoreOpener(key).open(src.log)
    except MissingKeyError:
        return None


def register(app: typer.Typer) -> None:
    app.command("tail")(tail)
    app.command("watch")(watch)
