"""``fabric get``: print one record."""

from __future__ import annotations

from typing import Annotated

import typer

from fabric.cli.common import Backend, DataDir, Json, console, emit_json, open_fabric, record_json
from fabric.errors import RecordNotFoundError


def get(
    record_id: Annotated[str, typer.Argument(help="The record's id.")],
    data_dir: DataDir = None,
    backend: Backend = None,
    json: Json = False,
) -> None:
    """Print one record (exit 3 if there is none with this id)."""
    with open_fabric(data_dir, backend) as fabric:
        rec = fabric.retrieve(record_id)
    if rec is None:
        raise RecordNotFoundError(record_id)
    if json:
        emit_json(record_json(rec))
        return
    for key, value in record_json(rec).items():
        console.print(f"[bold]{key}[/bold]: {value}")


def register(app: typer.Typer) -> None:
    app.command("get")(get)
