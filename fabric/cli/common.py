"""Options every subcommand shares, and the two ways of printing (rich for people, JSON for scripts)."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fabric.errors import ConfigurationError
from fabric.fabric import MemoryFabric
from fabric.model import MemoryRecord

DataDir = Annotated[
    str | None,
    typer.Option("--data-dir", "-d", help="Store directory (default: $IOA_FABRIC_ROOT or ./artifacts/memory)."),
]
Backend = Annotated[
    str | None,
    typer.Option("--backend", "-b", help="local_jsonl, sqlite or s3 (default: $IOA_FABRIC_BACKEND or local_jsonl)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
Key = Annotated[
    str | None,
    typer.Option("--key", envvar="IOA_FABRIC_KEY", show_envvar=True, help="Passphrase of an encrypted store."),
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def open_fabric(data_dir: str | None, backend: str | None, *, must_exist: bool = True) -> MemoryFabric:
    """Open the store a command works on; a missing data_dir is an error, not a new empty store."""
    path = data_dir or os.environ.get("IOA_FABRIC_ROOT") or None
    if must_exist:
        check = path or "./artifacts/memory"
        if not os.path.isdir(check):
            raise ConfigurationError(f"data_dir {check!r} does not exist", hint="pass --data-dir or create a store first")
    config = {"data_dir": path} if path else None
    return MemoryFabric(backend=backend, config=config)


def store_dir(data_dir: str | None, backend: str | None) -> str:
    """The data_dir a read-only command works on (flag, else $IOA_FABRIC_ROOT, else the backend's default).

    It must exist: looking at a store never creates one.
    """
    from fabric.backends import DEFAULT_DATA_DIRS, check_backend  # noqa: PLC0415

    name = check_backend(backend or os.environ.get("IOA_FABRIC_BACKEND") or "local_jsonl")
    path = data_dir or os.environ.get("IOA_FABRIC_ROOT") or DEFAULT_DATA_DIRS[name]
    if not os.path.isdir(path):
        raise ConfigurationError(f"data_dir {path!r} does not exist", hint="pass --data-dir or create a store first")
    return path


def emit_json(value: Any) -> None:
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


def record_json(rec: MemoryRecord, score: float | None = None) -> dict[str, Any]:
    out = rec.to_dict()
    if score is not None:
        out["score"] = score
    return out


def records_table(records: list[MemoryRecord], title: str, scores: list[float] | None = None) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("id", style="cyan", no_wrap=True)
    if scores is not None:
        table.add_column("score", justify="right")
    table.add_column("type")
    table.add_column("tags")
    table.add_column("content")
    for i, rec in enumerate(records):
        row: list[Text | str] = [Text(rec.id)]  # stored text is never rich markup: "[/x]" must print, not crash
        if scores is not None:
            row.append(f"{scores[i]:.3f}")
        content = rec.content if len(rec.content) <= 80 else rec.content[:77] + "..."
        row += [rec.memory_type.value, Text(",".join(rec.tags)), Text(content)]
        table.add_row(*row)
    return table
