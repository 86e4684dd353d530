"""``fabric stats``: how big a store is, and how far behind the log each of its views is.

"Behind" is measured before anything catches a view up: the SQLite view's checkpoint
is read as found on disk, then the store is opened (which brings the serving view up
to date) for the record count. So the number says what a reader arriving now would
have waited for.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fabric import audit, backends
from fabric.cli.common import Backend, DataDir, Json, Key, console, emit_json, store_dir
from fabric.fabric import MemoryFabric


def _sqlite_view_state(path: str) -> dict[str, Any] | None:
    """The SQLite view's checkpoint and size as they are on disk, or None if there is no such view."""
    from projections.sqlite_schema import DB_NAME  # noqa: PLC0415 - its file name, to look before opening

    db = Path(path) / DB_NAME
    if not db.exists():
        return None
    view: Any = backends.open_view("sqlite", Path(path), {"data_dir": path, "verify": "off"})
    try:
        return {"position": int(view.position()), "records": int(view.count()), "file": str(db),
                "bytes": db.stat().st_size}
    finally:
        view.close()


def stats(
    by_type: Annotated[bool, typer.Option("--by-type", help="Also count events per type and writer (reads the log).")]
    = False,
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Key = None,
    json: Json = False,
) -> None:
    """Records, events, segments, bytes, and each view's position and lag behind the log.

    Example: fabric stats --data-dir ./store --json
    """
    path = store_dir(data_dir, backend)
    with audit.open_source(path, decode=False) as src:
        last = src.log.refresh()
        first_ts = next((env.ts for env in src.log.read(1, 1)), None)
        last_ts = next((env.ts for env in src.log.read(last, last)), None) if last else None
        types: Counter[str] = Counter()
        writers: Counter[str] = Counter()
        if by_type:
            for env in src.log.read(1):
                types[env.type] += 1
                writers[env.writer] += 1
    sqlite_before = _sqlite_view_state(path)
    with MemoryFabric(backend=backend, config={"data_dir": path}, encryption_key=key) as fabric:
        result = fabric.get_stats()
    views: dict[str, Any] = result["views"]
    for info in views.values():
        info["caught_up_on_open"] = True
    if sqlite_before is not None:
        views["sqlite"] = {**sqlite_before, "behind": max(0, result["events"] - sqlite_before["position"]),
                           "caught_up_on_open": result["backend"] == "sqlite"}
    result["first_event"] = None if first_ts is None else audit.iso(first_ts)
    result["last_event"] = None if last_ts is None else audit.iso(last_ts)
    if by_type:
        result["event_types"] = dict(types.most_common())
        result["writers"] = dict(writers.most_common())
    if json:
        emit_json(result)
        return
    _render(result)


def _render(result: dict[str, Any]) -> None:
    table = Table(title=escape(f"store {result['data_dir']}"), show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("backend", result["backend"])
    table.add_row("records", f"{result['total_records']:,}")
    table.add_row("events", f"{result['events']:,}")
    table.add_row("segments", f"{result['segments']:,}")
    table.add_row("log size", _size(result["log_bytes"]))
    table.add_row("durability", f"{result['durability']} (fsynced up to seq {result['synced_seq']:,})")
    table.add_row("encryption", result["encryption"])
    if result.get("first_event"):
        table.add_row("first event", result["first_event"])
        table.add_row("last event", result["last_event"])
    console.print(table)
    views = Table(title="views", title_justify="left")
    for col in ("view", "position", "behind", "records", "size"):
        views.add_column(col, justify="left" if col == "view" else "right")
    for name, info in result["views"].items():
        behind = info.get("behind", 0)
        note = " (caught up on open)" if behind and info.get("caught_up_on_open") else ""
        views.add_row(name, f"{info['position']:,}", f"[{'yellow' if behind else 'green'}]{behind:,}[/]{note}",
                      f"{info['records']:,}" if "records" in info else "", _size(info["bytes"]) if "bytes" in info
                      else "in memory" if name == "memory" else "")
    console.print(views)
    for key in ("event_types", "writers"):
        if key in result:
            t = Table(title=key.replace("_", " "), title_justify="left")
            t.add_column("name")
            t.add_column("events", justify="right")
            for k, n in result[key].items():
                t.add_row(Text(k or "(none)"), f"{n:,}")
            console.print(t)
    for rec in result.get("recovered", ()):
        console.print(f"[yellow]opening the log repaired {rec['segment']} at byte {rec['offset']}: "
                      f"{rec['reason']} ({rec['dropped_bytes']} bytes)[/yellow]")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
