"""``fabric rotate-key``: give an encrypted store a new passphrase (and a new store key)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from fabric.cli.common import Backend, DataDir, Json, console, emit_json
from fabric.errors import ConfigurationError, MissingKeyError
from fabric.fabric import MemoryFabric


def open_with_key(data_dir: str | None, backend: str | None, key: str | None) -> MemoryFabric:
    """Open an existing store with passphrase ``key`` (else ``IOA_FABRIC_KEY``)."""
    path = data_dir or os.environ.get("IOA_FABRIC_ROOT") or "./artifacts/memory"
    if not os.path.isdir(path):
        raise ConfigurationError(f"data_dir {path!r} does not exist", hint="pass --data-dir")
    return MemoryFabric(backend=backend, config={"data_dir": path}, encryption_key=key)


def rotate_key(
    data_dir: DataDir = None,
    backend: Backend = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="The current passphrase (default: $IOA_FABRIC_KEY). On a command line it shows in "
                      "process lists and shell history: prefer the variable.")] = None,
    new_key: Annotated[str | None, typer.Option(
        "--new-key", help="The new passphrase (default: asked for twice, not echoed).")] = None,
    json: Json = False,
) -> None:
    """Rotate the store key: new records use a key derived from the new passphrase, which alone
    opens the store from now on (older keys are escrowed under it). Then run `fabric compact
    --reencrypt` to rewrap every record key and retire the old ones."""
    old = key or os.environ.get("IOA_FABRIC_KEY") or None
    if old is None:
        raise MissingKeyError("rotate-key needs the current passphrase", hint="set IOA_FABRIC_KEY or pass --key")
    if new_key is None:
        new_key = typer.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
    with open_with_key(data_dir, backend, old) as fabric:
        key_id = fabric.rotate_key(new_key)
    if json:
        emit_json({"key_id": key_id})
        return
    console.print(f"rotated: the store key is now {key_id}; open the store with the new passphrase from now on")
    console.print("next: `fabric compact --reencrypt` rewraps every record key and retires the old keys")


def register(app: typer.Typer) -> None:
    app.command("rotate-key")(rotate_key)
