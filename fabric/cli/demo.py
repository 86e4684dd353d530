"""``fabric demo``: the main job in one command, on the embedded default backend.

Stores a few dozen memories an agent would keep, searches them, updates and deletes
some, replays the log into the SQLite view, checks both views answer alike, and verifies
the audit chain, printing each step.
"""

from __future__ import annotations

import tempfile
import time
from typing import Annotated

import typer

from fabric.cli.common import console
from fabric.fabric import MemoryFabric

MEMORIES: list[tuple[str, str, list[str], dict[str, object]]] = [
    ("User's name is Dana Whitfield; she prefers to be called Dana.", "knowledge", ["profile"], {"user": "dana"}),
    ("Dana works as a data engineer at a logistics company in Rotterdam.", "knowledge", ["profile", "work"], {"user": "dana"}),
    ("Dana prefers dark mode and a monospace font in every editor.", "knowledge", ["preferences"], {"user": "dana"}),
    ("Dana is allergic to peanuts; never suggest recipes containing peanuts.", "knowledge", ["health", "food"], {"user": "dana", "priority": 9}),
    ("Dana's time zone is Europe/Amsterdam (CET, UTC+1 in winter).", "knowledge", ["profile"], {"user": "dana"}),
    ("Asked how to speed up a slow PostgreSQL query; suggested an index on shipments(created_at).", "conversation", ["work", "sql"], {"user": "dana", "session": 1}),
    ("Dana confirmed the index cut the query from 4 seconds to 80 milliseconds.", "conversation", ["work", "sql"], {"user": "dana", "session": 1}),
    ("Discussed moving nightly ETL jobs from cron to Airflow; Dana wants retries and alerting.", "conversation", ["work", "airflow"], {"user": "dana", "session": 2}),
    ("Dana's team uses Python 3.11, Polars and dbt; avoid pandas-only answers.", "knowledge", ["work", "python"], {"user": "dana"}),
    ("Dana is planning a cycling trip along the Rhine in June.", "conversation", ["travel"], {"user": "dana", "session": 3}),
    ("Recommended a packing list for a week of cycling: repair kit, rain jacket, lights.", "conversation", ["travel"], {"user": "dana", "session": 3}),
    ("Dana likes concise answers with a code sample first and explanation after.", "knowledge", ["preferences"], {"user": "dana", "priority": 7}),
    ("Current task: migrate the shipment tracking dashboard to the new warehouse schema.", "context", ["work", "task"], {"user": "dana", "status": "open"}),
    ("Deadline for the dashboard migration is the end of the quarter.", "context", ["work", "task"], {"user": "dana", "status": "open"}),
    ("Dana's manager is Priya; weekly one-to-one on Thursdays at 10:00.", "knowledge", ["work", "people"], {"user": "dana"}),
    ("Dana asked for a vegetarian lasagne recipe without nuts; provided one with spinach and ricotta.", "conversation", ["food"], {"user": "dana", "session": 4}),
    ("Dana reads science fiction; recently finished The Left Hand of Darkness.", "knowledge", ["books"], {"user": "dana"}),
    ("Suggested Ursula K. Le Guin's The Dispossessed as the next book.", "conversation", ["books"], {"user": "dana", "session": 5}),
    ("Sam Okafor is a product manager who prefers slide summaries over long documents.", "knowledge", ["profile"], {"user": "sam"}),
    ("Sam is preparing a roadmap review for the mobile app, due next Friday.", "context", ["work", "task"], {"user": "sam", "status": "open"}),
    ("Sam asked for a template for writing user stories with acceptance criteria.", "conversation", ["work"], {"user": "sam", "session": 1}),
    ("Sam's team ships the mobile app every two weeks on Tuesdays.", "knowledge", ["work"], {"user": "sam"}),
    ("Sam prefers light mode and large fonts because of eye strain.", "knowledge", ["preferences"], {"user": "sam"}),
    ("Sam mentioned a marathon in October and asked for a 16-week training plan.", "conversation", ["health", "running"], {"user": "sam", "session": 2}),
    ("Provided a training plan with long runs on Sundays and two rest days per week.", "conversation", ["health", "running"], {"user": "sam", "session": 2}),
    ("Sam is lactose intolerant; suggest plant-based milk in recipes.", "knowledge", ["health", "food"], {"user": "sam", "priority": 8}),
    ("Tool note: the weather API rate limit is 60 requests per minute.", "metadata", ["tools"], {"source": "system"}),
    ("Tool note: the calendar tool needs ISO 8601 dates with a time zone.", "metadata", ["tools"], {"source": "system"}),
    ("Policy: never store passwords, card numbers or government ids in memory.", "metadata", ["policy"], {"source": "system", "priority": 10}),
    ("Policy: users may ask to have a memory forgotten; honour it at once.", "metadata", ["policy"], {"source": "system", "priority": 10}),
    ("Dana asked to be reminded to renew her passport before the trip.", "context", ["travel", "task"], {"user": "dana", "status": "open"}),
    ("Sam's favourite coffee is a flat white with oat milk.", "knowledge", ["food"], {"user": "sam"}),
    ("Dana's dashboard uses Grafana with a PostgreSQL data source.", "knowledge", ["work", "sql"], {"user": "dana"}),
    ("Dana said the Airflow migration is approved and starts next sprint.", "conversation", ["work", "airflow"], {"user": "dana", "session": 6}),
    ("Sam asked to compare two survey tools; summarised pricing and export formats.", "conversation", ["work"], {"user": "sam", "session": 3}),
    ("Sam prefers meetings before noon.", "knowledge", ["preferences"], {"user": "sam"}),
]

SEARCHES: list[tuple[str, dict[str, object]]] = [
    ("peanuts recipes", {}),
    ("dark mode", {}),
    ("airflow", {"where": {"user": "dana"}}),
    ("training plan", {"memory_type": "conversation"}),
    ("task", {"where": {"status": {"$eq": "open"}}, "tags": ["task"]}),
]


def demo(
    data_dir: Annotated[str | None, typer.Option("--data-dir", "-d", help="Where to keep the demo store (default: a new temporary directory).")] = None,
) -> None:
    """Store, search, update, delete, replay into SQLite and verify the audit trail, saying what happens."""
    path = data_dir or tempfile.mkdtemp(prefix="fabric-demo-")
    console.rule("[bold]Memory Fabric demo")
    console.print(f"store: [cyan]{path}[/cyan] (backend local_jsonl: an event log + an in-memory view)")

    with MemoryFabric(config={"data_dir": path}) as fabric:
        t0 = time.perf_counter()
        ids = fabric.store_many(
            {"content": c, "memory_type": t, "tags": tags, "metadata": meta} for c, t, tags, meta in MEMORIES)
        one = fabric.store("Dana's favourite editor theme is Solarized Dark.", {"user": "dana"}, ["preferences"], "knowledge")
        ids.append(one)
        console.print(f"\n[bold]1. store[/bold]  {len(ids)} memories written as events "
                      f"({len(MEMORIES)} in one all-or-nothing batch, 1 single) in {1000 * (time.perf_counter() - t0):.1f} ms")

        console.print("\n[bold]2. search[/bold]  (BM25 over content and tags; every word must match)")
        for text, kw in SEARCHES:
            hits = fabric.search_hits(text, 3, **kw)  # type: ignore[arg-type]
            label = f"{text!r}" + (f" {kw}" if kw else "")
            console.print(f"  {label}: {len(hits)} hit(s)")
            for h in hits:
                console.print(f"     {h.score:6.3f}  {h.record.content}")

        console.print("\n[bold]3. retrieve, update, delete[/bold]")
        first = fabric.retrieve(ids[2])
        assert first is not None
        console.print(f"  retrieve {ids[2][:13]}…: {first.content!r} (access_count {first.access_count})")
        fabric.update(ids[2], content="Dana switched to light mode in the afternoons, dark mode at night.")
        console.print(f"  update   {ids[2][:13]}…: content changed (the old version stays in the log)")
        fabric.delete(ids[9])
        console.print(f"  delete   {ids[9][:13]}…: {MEMORIES[9][0]!r}")
        console.print(f"  now {fabric.count()} live records; {fabric.log.last_seq} events in the log")
        before = fabric.as_of(fabric.log.last_seq - 2)
        old = before.retrieve(ids[2])
        console.print(f"  as_of(seq {fabric.log.last_seq - 2}) still sees the old text: {old.content if old else None!r}")
        fabric.flush()
        last_seq = fabric.log.last_seq
        memory_answers = [h.record.id for h in fabric.search_hits("dark mode", 5)]

    console.print("\n[bold]4. replay into SQLite[/bold]  (the same log, projected into SQLite FTS5)")
    try:
        t0 = time.perf_counter()
        with MemoryFabric(backend="sqlite", config={"data_dir": path}) as sq:
            sqlite_answers = [h.record.id for h in sq.search_hits("dark mode", 5)]
            count = sq.count()
        same = "the same" if sqlite_answers == memory_answers else "DIFFERENT"
        console.print(f"  replayed {last_seq} events into {path}/fabric.db in {1000 * (time.perf_counter() - t0):.1f} ms; "
                      f"{count} records; search 'dark mode' gives {same} answers as the in-memory view")
    except Exception as e:  # the sqlite view is optional in this build
        console.print(f"  [yellow]skipped: {e}[/yellow]")

    console.print("\n[bold]5. verify the audit trail[/bold]")
    from fabric.log import EventLog  # noqa: PLC0415

    with EventLog(path, read_only=True) as log:
        report = log.verify()
    console.print(f"  hash chain verified: {report.events} events in {report.segments} segment(s), "
                  f"{report.bytes} bytes, head {report.last_hash[:16]}…")
    console.print(f"\n[green]done.[/green] Look at the log itself: [cyan]head -3 {path}/memory_run_*.jsonl[/cyan]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
