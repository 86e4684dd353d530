"""``fabric compact``: rewrite sealed log segments (erase forgotten records; rewrap keys)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from fabric.cli.common import Backend, DataDir, Json, console, emit_json, open_fabric


def compact(
    data_dir: DataDir = None,
    backend: Backend = None,
    reencrypt: Annotated[bool, typer.Option(
        "--reencrypt", help="Rewrap every record key under the current store key and retire the old "
                            "keys (encrypted stores, after `fabric rotate-key`).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would change; change nothing.")] = False,
    json: Json = False,
) -> None:
    """Rewrite the log's sealed segments: finish erasing forgotten records and, with --reencrypt,
    rewrap keys. The hash chain still verifies afterwards (`fabric audit verify`)."""
    with open_fabric(data_dir, backend) as fabric:
        report = fabric.compact(reencrypt=reencrypt, dry_run=dry_run)
    if json:
        emit_json(dataclasses.asdict(report))
        return
    would = "would " if dry_run else ""
    console.print(f"{would}erase {report.lines_redacted} lines of forgotten records; "
                  f"{would}rewrap {report.keys_rewrapped} record keys; "
                  f"{would}remove {report.escrows_removed} escrowed keys")
    if not dry_run:
        console.print(f"segments rewritten: {report.segments_rewritten}")
    if report.retired_keys:
        console.print(f"{'would retire' if dry_run else 'retired'} key ids: {', '.join(report.retired_keys)}")


def register(app: typer.Typer) -> None:
    app.command("compact")(compact)
