"""``fabric restore --from s3``: rebuild a store on an empty machine from the bucket alone.

Thin: resolves the bucket (flags, else the ``IOA_FABRIC_S3_*`` variables), calls
`fabric.s3_restore.restore`, then opens the result once (without shipping) to build its
view, verify its chain and count and digest its records.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fabric.cli.common import Json, console, emit_json
from fabric.cli.progress import progress_bar
from fabric.errors import ConfigurationError

Bucket = Annotated[str | None, typer.Option("--bucket", help="Bucket (default: $IOA_FABRIC_S3_BUCKET).")]
Prefix = Annotated[str | None, typer.Option(
    "--prefix", help="Key prefix (default: $IOA_FABRIC_S3_PREFIX or ioa/memory/).")]
Region = Annotated[str | None, typer.Option(
    "--region", help="Region (default: $IOA_FABRIC_S3_REGION, $AWS_DEFAULT_REGION, us-east-1).")]
Endpoint = Annotated[str | None, typer.Option(
    "--endpoint", help="S3-compatible endpoint URL (default: $AWS_ENDPOINT_URL).")]
Key = Annotated[str | None, typer.Option("--key", envvar="IOA_FABRIC_KEY", show_envvar=True,
                                         help="Passphrase of an encrypted store.")]


def s3_config(bucket: str | None, prefix: str | None, region: str | None, endpoint: str | None) -> dict[str, Any]:
    """Config keys for `fabric.s3_layout.resolve_settings` from the shared flags (unset flags: the env decides)."""
    config: dict[str, Any] = {"bucket_name": bucket, "region": region, "endpoint_url": endpoint}
    if prefix is not None:
        config["prefix"] = prefix
    return {k: v for k, v in config.items() if v is not None}


def restore(
    source: Annotated[str, typer.Option("--from", help="Where the store was shipped: s3.")] = "s3",
    data_dir: Annotated[str | None, typer.Option("--data-dir", "-d", help="An empty or new directory.")] = None,
    bucket: Bucket = None,
    prefix: Prefix = None,
    region: Region = None,
    endpoint: Endpoint = None,
    writer: Annotated[str | None, typer.Option(
        "--writer", help="The stream this directory becomes (default: the only one in the bucket).")] = None,
    replica: Annotated[bool, typer.Option(
        "--replica", help="Restore every stream as a read-only replica under DIR/streams/.")] = False,
    key: Key = None,
    local_view: Annotated[str, typer.Option("--view", help="Local view to build: memory or sqlite.")] = "memory",
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Parallel downloads.")] = 8,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what the bucket holds; write nothing.")] = False,
    json: Json = False,
) -> None:
    """Rebuild the log(s) and the view of a store from a bucket alone, into an empty directory.

    With one writer in the bucket the directory becomes that writer (its log, byte for byte,
    and shipping resumes from it); with several, each is restored as a read-only replica in
    DIR/streams/<writer>/ and folded into one state (unless --writer picks the one this
    directory continues)."""
    from fabric.fabric import MemoryFabric  # noqa: PLC0415
    from fabric.migrate import combined_digest, store_digests  # noqa: PLC0415
    from fabric.s3_layout import open_store, resolve_settings  # noqa: PLC0415
    from fabric.s3_restore import choose_own, list_streams  # noqa: PLC0415
    from fabric.s3_restore import restore as restore_streams  # noqa: PLC0415

    if source != "s3":
        raise ConfigurationError(f"cannot restore from {source!r}: only --from s3 is supported")
    if not data_dir:
        raise ConfigurationError("restore needs --data-dir (an empty or new directory)")
    settings = resolve_settings(s3_config(bucket, prefix, region, endpoint))
    store = open_store(settings)
    requests: dict[str, int] = {}
    streams = list_streams(store, requests)
    own = choose_own(streams, writer, replica) if streams else None
    plan = [{"writer": name, "log_id": info.log_id, "chunks": len(info.chunks),
             "events": max((c.last for c in info.chunks), default=0),
             "checkpoint_seq": info.checkpoint.log_seq if info.checkpoint else None,
             "encrypted": bool(info.checkpoint and info.checkpoint.encrypted),
             "role": "log" if name == own else "replica"} for name, info in sorted(streams.items())]
    if dry_run:
        if json:
            emit_json({"bucket": settings.bucket, "prefix": settings.prefix, "streams": plan})
        else:
            for p in plan:
                where = f"the log of {data_dir}" if p["role"] == "log" else f"{data_dir}/streams/{p['writer']}"
                console.print(f"{p['writer']}: {p['events']:,} events in {p['chunks']:,} chunks -> {where}")
        return
    if any(p["encrypted"] for p in plan) and not key:
        raise ConfigurationError("the bucket's streams are encrypted: pass --key or set IOA_FABRIC_KEY")
    with progress_bar("restoring from s3", "events", enabled=not json) as update:
        report = restore_streams(store, data_dir, writer=writer, replica=replica, workers=workers,
                                 target=f"{settings.bucket}/{settings.prefix}", progress=update, streams=streams)
    report.requests["list"] = report.requests.get("list", 0) + requests.get("list", 0)
    report.requests["get"] = report.requests.get("get", 0) + requests.get("get", 0)
    config = {"data_dir": data_dir, **settings.as_config(), "ship": False, "local_view": local_view}
    with MemoryFabric(backend="s3", config=config, encryption_key=key) as fabric:
        verified = fabric.log.verify()
        digests = store_digests(fabric)
        summary = {**report.to_dict(), "records": len(digests), "digest": combined_digest(digests),
                   "verified_events": verified.events, "local_view": local_view}
    if json:
        emit_json(summary)
        return
    for s in report.streams:
        where = "log" if s.role == "log" else "replica"
        console.print(f"{s.writer}: {s.events:,} events, {s.chunks:,} chunks, {s.bytes / 1e6:,.1f} MB -> {where} "
                      f"in {s.path}")
    console.print(f"restored {report.events:,} events in {report.seconds:.2f} s "
                  f"({report.events_per_second:,.0f} events/s); {summary['records']:,} records, "
                  f"digest {summary['digest'][:16]}; chain verified ({verified.events:,} events)")


def register(app: typer.Typer) -> None:
    app.command("restore")(restore)
