"""``fabric import``: move a store written by IOA Core's memory fabric (the seed) over, in one command.

Parsing, merging and decryption live in `fabric.seed_import`; this module parses options,
makes that one call and renders the summary. Exit 1 if any row was skipped (each one is
listed with its location), so a script never mistakes a partial import for a whole one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Annotated

import typer
from rich.markup import escape

from fabric.backends import DEFAULT_DATA_DIRS, check_backend
from fabric.cli.common import Backend, DataDir, Json, console, emit_json, err_console
from fabric.cli.progress import progress_bar
from fabric.errors import ConfigurationError
from fabric.fabric import MemoryFabric
from fabric.seed_import import import_seed


def import_seed_store(
    from_seed: Annotated[list[str] | None, typer.Option(
        "--from-seed", help="A seed data_dir, run file (memory_run_<8 hex>.jsonl), SQLite database, or a directory "
                            "of downloaded S3 objects (<prefix><id>.json). Repeatable.")] = None,
    s3_bucket: Annotated[str | None, typer.Option("--s3-bucket", help="Read the seed's S3 objects from this bucket.")]
    = None,
    s3_prefix: Annotated[str, typer.Option("--s3-prefix", help="The seed's S3 prefix.")] = "ioa/memory/",
    s3_region: Annotated[str | None, typer.Option("--s3-region", help="Region of --s3-bucket.")] = None,
    seed_key: Annotated[str | None, typer.Option("--key", help="The seed's encryption passphrase (its "
                                                                "IOA_FABRIC_KEY), to decrypt aes-gcm content.")] = None,
    store_key: Annotated[str | None, typer.Option("--store-key", envvar="IOA_FABRIC_KEY", show_envvar=True,
                                                  help="Passphrase of the (new or existing) target store.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable row; import nothing.")]
    = False,
    keep_seed_metadata: Annotated[bool, typer.Option(
        "--keep-seed-metadata", help="Keep the metadata keys the seed added (tiering_4d, encryption_mode, "
                                     "timestamp, memory_type).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and check everything; write nothing.")] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Records per all-or-nothing write.")] = 1000,
    data_dir: DataDir = None,
    backend: Backend = None,
    json: Json = False,
) -> None:
    """Import the records of a seed (IOA Core) store: its JSONL run files, SQLite databases and S3 objects.

    Versions of one id are merged (latest timestamp wins) and stored with their original
    timestamps. Ids already in the target are left alone, so running it again resumes.
    Unreadable rows are listed with file:line, db#rowid or object key; then the exit code is 1.

    Example: fabric import --from-seed ./artifacts/memory --data-dir ./fabric-store
    """
    if not from_seed and not s3_bucket:
        raise ConfigurationError("nothing to import: pass --from-seed PATH and/or --s3-bucket NAME")
    name = check_backend(backend or os.environ.get("IOA_FABRIC_BACKEND") or "local_jsonl")
    path = data_dir or os.environ.get("IOA_FABRIC_ROOT") or DEFAULT_DATA_DIRS[name]
    for src in from_seed or ():
        if os.path.exists(src) and os.path.exists(path) and os.path.samefile(src, path):
            raise ConfigurationError(f"--from-seed and --data-dir are the same directory ({path!r})",
                                     hint="import into a new directory; the seed's files stay untouched")
    with contextlib.ExitStack() as stack:
        target = path
        if dry_run and not os.path.isdir(path):  # a dry run creates no store: check against an empty one
            target = stack.enter_context(tempfile.TemporaryDirectory(prefix="fabric-import-dry-"))
        fabric = stack.enter_context(MemoryFabric(backend=name, config={"data_dir": target},
                                                  encryption_key=store_key))
        update = stack.enter_context(progress_bar("importing", "records", enabled=not json))
        report = import_seed(fabric, from_seed or (), bucket=s3_bucket, prefix=s3_prefix, region=s3_region,
                             key=seed_key, strict=strict, keep_seed_metadata=keep_seed_metadata, dry_run=dry_run,
                             batch=batch, progress=update)
        report.data_dir = path
    if json:
        emit_json(report.to_dict())
    else:
        _render(report.to_dict())
    if not report.ok:
        raise typer.Exit(1)


def _render(summary: dict[str, object]) -> None:
    verb = "would import" if summary["dry_run"] else "imported"
    sources = summary["sources"]
    assert isinstance(sources, list)
    kinds: dict[str, int] = {}
    for s in sources:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    what = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no"
    console.print(f"read {summary['rows']} row(s) from {what} source(s): {summary['records']} distinct record(s)")
    console.print(f"[green]{verb} {summary['imported']}[/green] into {escape(str(summary['data_dir']))}"
                  + (f"; {summary['already_present']} already there (left alone)" if summary["already_present"]
                     else "")
                  + (f"; {summary['decrypted']} decrypted" if summary["decrypted"] else ""))
    notes = summary["notes"]
    assert isinstance(notes, list)
    for note in notes:
        console.print(f"note: {note}", style="dim", soft_wrap=True, markup=False)
    skipped = summary["skipped"]
    assert isinstance(skipped, list)
    if skipped:
        err_console.print(f"[bold red]{len(skipped)} row(s) NOT imported:[/bold red]")
        for p in skipped:  # one line each, never wrapped: easy to grep, easy to click in a terminal
            rid = f" [id {p['id']}]" if p["id"] else ""
            err_console.print(f"  {p['where']}{rid}: {p['reason']}", soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    app.command("import")(import_seed_store)
