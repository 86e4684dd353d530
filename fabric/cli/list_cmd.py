"""``fabric list``: list records in creation order."""

from __future__ import annotations

from typing import Annotated

import typer

from fabric.cli.common import Backend, DataDir, Json, console, emit_json, open_fabric, record_json, records_table


def list_records(
    limit: Annotated[int | None, typer.Option("--limit", "-n")] = None,
    offset: Annotated[int, typer.Option("--offset")] = 0,
    data_dir: DataDir = None,
    backend: Backend = None,
    json: Json = False,
) -> None:
    """List records, oldest first."""
    with open_fabric(data_dir, backend) as fabric:
        records = fabric.list_all(limit, offset)
    if json:
        emit_json([record_json(r) for r in records])
        return
    console.print(records_table(records, f"{len(records)} record(s)"))


def register(app: typer.Typer) -> None:
    app.command("list")(list_records)
