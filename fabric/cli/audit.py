"""``fabric audit``: prove the log is intact, and answer "who changed what, when" from it.

Subcommands: ``verify`` (the hash chain), ``history ID`` (one record's versions with
diffs), ``log`` (events filtered by writer, type, id, time), ``as-of TIME|SEQ`` (the
store as it was), ``report --html FILE`` (one self-contained page). All read the log
only (`fabric.audit`), so they work whatever view serves the store, and never need one.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fabric import audit
from fabric.audit_report import collect, render
from fabric.cli.common import (
    Backend,
    DataDir,
    Json,
    Key,
    console,
    emit_json,
    record_json,
    records_table,
    store_dir,
)
from fabric.cli.replay import (
    EventPrinter,
    FromSeq,
    Ids,
    Raw,
    Since,
    Tag,
    ToSeq,
    Types,
    Until,
    Writers,
    make_filter,
    quiet_broken_pipe,
    stream,
)
from fabric.errors import CorruptLogError, RecordNotFoundError
from fabric.model import to_public

EXIT_DAMAGED = 4

audit_app = typer.Typer(name="audit", help="Prove the log is intact; record histories, the audit trail, the store "
                                           "as of a time, an HTML report.", no_args_is_help=True, add_completion=False,
                        rich_markup_mode=None)


@audit_app.command("verify")
def verify(
    data_dir: DataDir = None,
    backend: Backend = None,
    json: Json = False,
) -> None:
    """Check the whole hash chain, every segment. On damage print the first bad segment and byte offset, exit 4.

    Needs no key: hashes cover payload digests, not plaintext.

    Example: fabric audit verify --json
    """
    path = store_dir(data_dir, backend)
    try:
        with audit.open_source(path, decode=False) as src:
            recovered = [r.__dict__ for r in src.log.recovered]
            report = src.log.verify()
    except CorruptLogError as e:
        failure = {"ok": False, "data_dir": path, "error": str(e), "segment": e.segment, "offset": e.offset,
                   "seq": e.seq}
        if json:
            emit_json(failure)
        else:
            console.print(Panel(Text.assemble(("chain BROKEN\n", "bold red"),
                                               f"segment {e.segment}, byte offset {e.offset}"
                                               + (f", seq {e.seq}" if e.seq is not None else "") + "\n",
                                               (str(e), "dim")), border_style="red"))
        raise typer.Exit(EXIT_DAMAGED) from None
    result = {"ok": True, "data_dir": path, "events": report.events, "segments": report.segments,
              "last_seq": report.last_seq, "head": report.last_hash, "bytes": report.bytes, "recovered": recovered}
    if json:
        emit_json(result)
        return
    for rec in recovered:
        console.print(f"[yellow]opening the log cut a torn tail: {rec['segment']} at byte {rec['offset']} "
                      f"({rec['reason']}, {rec['dropped_bytes']} bytes)[/yellow]")
    console.print(f"[green]chain verified[/green]: {report.events:,} events in {report.segments} segment(s), "
                  f"{report.bytes:,} bytes")
    console.print(f"head {report.last_hash}", soft_wrap=True)


@audit_app.command("history")
def history(
    record_id: Annotated[str, typer.Argument(help="The record's id.")],
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Key = None,
    json: Json = False,
) -> None:
    """Every event of one record, oldest first, with what each changed (a content diff, field changes).

    Exit 3 if the id never occurs in the log.

    Example: fabric audit history mem-42
    """
    path = store_dir(data_dir, backend)
    with audit.open_source(path, key) as src:
        versions = audit.record_history(src, record_id)
    if not versions:
        raise RecordNotFoundError(record_id)
    if json:
        emit_json({"id": record_id, "versions": [v.to_dict() for v in versions]})
        return
    console.print(Text(f"history of {record_id}: {len(versions)} event(s)", style="bold"))
    for v in versions:
        head = Text.assemble((f"#{v.seq} ", "cyan"), (f"{v.type}", "bold"), f"  {audit.iso(v.ts)}  by {v.writer}",
                             (" (payload erased)" if v.erased else "", "red"),
                             (f"  {v.reason}" if v.reason else "", "dim"))
        body: list[Any] = []
        if v.type == "stored" and v.record is not None:
            rec = v.record
            body.append(Text(rec.content))
            fields = [f"type {rec.memory_type}", f"tier {rec.storage_tier}"]
            fields += [f"tags {', '.join(rec.tags)}"] if rec.tags else []
            fields += [f"{c.field} {_cell(c.new)}" for c in v.changes
                       if c.field.startswith("metadata.") or c.field == "embedding"]
            body.append(Text(" · ".join(fields), style="dim"))
            console.print(head)
            for part in body:
                console.print(part)
            console.print()
            continue
        if v.content_diff:
            diff = Text()
            for line in v.content_diff[2:]:
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
                diff.append(line + "\n", style=style)
            body.append(diff)
        if v.changes and v.type not in ("deleted", "forgotten"):
            table = Table(show_header=True, box=None, pad_edge=False)
            table.add_column("field", style="cyan")
            table.add_column("before")
            table.add_column("after")
            for c in v.changes:
                table.add_row(Text(c.field), Text(_cell(c.old)), Text(_cell(c.new)))
            body.append(table)
        console.print(head)
        for part in body:
            console.print(part)
        console.print()


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


@audit_app.command("log")
def log_cmd(
    writer: Writers = None,
    event_type: Types = None,
    record_id: Ids = None,
    since: Since = None,
    until: Until = None,
    from_seq: FromSeq = 1,
    to_seq: ToSeq = None,
    tag: Tag = None,
    last: Annotated[int | None, typer.Option("--last", help="Only the last N matching events.")] = None,
    raw: Raw = False,
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Key = None,
    json: Json = False,
) -> None:
    """The audit trail: events filtered by writer, type, record id, time, seq or tag, oldest first.

    Example: fabric audit log --writer ingest-2 --since 1d --type deleted
    """
    path = store_dir(data_dir, backend)
    flt = make_filter(from_seq=from_seq, to_seq=to_seq, since=since, until=until, types=event_type,
                      ids=record_id, writers=writer, tag=tag)
    printer = EventPrinter(json=json, raw=raw)
    with audit.open_source(path, key, decode=not raw or tag is not None) as src, quiet_broken_pipe():
        events = stream(src, flt, decode=not raw)
        if last is not None:
            events = iter(deque(events, maxlen=max(last, 0)))  # bounded: N events, not the log
        printer.header()
        for env, change in events:
            printer.emit(env, change)
        printer.finish()
    if not json:
        console.print(f"[dim]{printer.count} event(s)[/dim]")


@audit_app.command("as-of")
def as_of(
    point: Annotated[str, typer.Argument(help="A seq (e.g. 1200), an ISO time, or an age (2h, 1d).")],
    search: Annotated[str | None, typer.Option("--search", "-s", help="Search the store as it was.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="At most this many records.")] = None,
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Key = None,
    json: Json = False,
) -> None:
    """The store as it was at a log seq or a time: its records, or a search over them.

    Deleted records come back; forgotten ones do not.

    Example: fabric audit as-of 2h --search "dark mode"
    """
    path = store_dir(data_dir, backend)
    seq, ts = audit.parse_point(point)
    with audit.open_source(path, key) as src:
        snap = audit.snapshot(src, seq=seq, ts=ts)
    where = f"seq {snap.position}" + (f" ({audit.iso(ts)})" if ts is not None else "")
    if search is not None:
        hits = snap.search_hits(search, limit if limit is not None else 10)
        records = [to_public(h.record) for h in hits]
        if json:
            emit_json({"position": snap.position,
                       "records": [record_json(r, h.score) for r, h in zip(records, hits, strict=True)]})
            return
        console.print(records_table(records, escape(f"{len(records)} result(s) for {search!r} as of {where}"),
                                    [h.score for h in hits]))
        return
    records = snap.list_all(limit)
    if json:
        emit_json({"position": snap.position, "count": snap.count(), "records": [record_json(r) for r in records]})
        return
    console.print(records_table(records, f"{snap.count()} record(s) as of {where}"))


@audit_app.command("report")
def report(
    html_file: Annotated[Path, typer.Option("--html", help="Where to write the page.")],
    max_records: Annotated[int, typer.Option("--max-records", min=0,
                                             help="Histories of this many most recently changed records.")] = 200,
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Key = None,
    json: Json = False,
) -> None:
    """Write one self-contained HTML page: chain status, a timeline, a summary, per-record histories.

    Exit 4 (after writing the page) if the chain is broken.

    Example: fabric audit report --html audit.html
    """
    path = store_dir(data_dir, backend)
    with audit.open_source(path, key) as src:
        data = collect(src, max_records=max_records)
    page = render(data)
    html_file.write_text(page, encoding="utf-8")
    result = {"ok": data.verified, "file": str(html_file), "bytes": len(page.encode()), "events": data.events,
              "records_shown": len(data.histories), "problem": data.problem}
    if json:
        emit_json(result)
    elif data.verified:
        console.print(escape(f"wrote {html_file} ({result['bytes']:,} bytes): chain verified, {data.events:,} events, "
                             f"{len(data.histories)} record histories"))
    else:
        console.print(escape(f"wrote {html_file}: chain BROKEN: {data.problem}"), style="red")
    if not data.verified:
        raise typer.Exit(EXIT_DAMAGED)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
