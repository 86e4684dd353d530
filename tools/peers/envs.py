"""One virtualenv per benchmark peer, outside the repository.

Why: the peers (the seed's ``ioa-core``, LangGraph's SQLite store, ``eventsourcing``) pull in
dependencies that must never meet ours, and a benchmark must be able to say exactly which version
it measured. So each peer gets its own venv under a cache directory, installed once with pip, and
a marker file that records what was installed. A venv without a marker is a half-finished install
and is rebuilt from scratch.

Usage as a script::

    python tools/peers/envs.py                 # create or reuse all three venvs, print a summary
    python tools/peers/envs.py ioa_core --force
    python tools/peers/envs.py --python langgraph   # print that venv's python path only

Usage from the bench (import by path, stdlib only)::

    env = envs.ensure("langgraph")
    result = envs.run_peer("langgraph", {"op": "store", "n": 1000})
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE_ENV_VAR = "MEMORY_FABRIC_BENCH_VENVS"
DEFAULT_CACHE = Path.home() / ".cache" / "memory-fabric-bench" / "venvs"
MARKER_NAME = "memory-fabric-peer.json"
MARKER_FORMAT = 1


@dataclass(frozen=True)
class Peer:
    """What to install for a peer and which runner script drives it."""

    name: str
    requirements: tuple[str, ...]
    main_dist: str
    runner: str
    needs_sqlite_extensions: bool = False  # e.g. sqlite-vec, loaded with enable_load_extension


# Pins: the newest releases verified to work with the runners. ioa-core 2.10.0 is the newest
# release whose memory_fabric store and facade code is identical to the seed repository's HEAD
# (2.11.0+ changed SQLite search); the only difference is tiering_4d.py, where releases classify
# records younger than 1.5 h as HOT instead of WARM (both end up as storage_tier "hot").
PEERS: dict[str, Peer] = {
    "ioa_core": Peer("ioa_core", ("ioa-core==2.10.0",), "ioa-core", "run_ioa_core.py"),
    # SqliteStore's text search needs a vector index, which loads the sqlite-vec extension: the
    # venv must be built on a Python whose sqlite3 can load extensions (pyenv builds often can't).
    "langgraph": Peer(
        "langgraph",
        ("langgraph-checkpoint-sqlite==3.1.2",),
        "langgraph-checkpoint-sqlite",
        "run_langgraph.py",
        needs_sqlite_extensions=True,
    ),
    "eventsourcing": Peer("eventsourcing", ("eventsourcing==9.5.6",), "eventsourcing", "run_eventsourcing.py"),
}


@dataclass(frozen=True)
class PeerEnv:
    """A ready venv: its interpreter and the versions pip reported after installing."""

    peer: str
    path: Path
    python: Path
    versions: Mapping[str, str]

    @property
    def version(self) -> str:
        """Version of the peer's main distribution, e.g. ``ioa-core``'s."""
        return self.versions.get(PEERS[self.peer].main_dist, "unknown")


class PeerEnvError(RuntimeError):
    """A venv could not be created or a runner misbehaved; the message says which and why."""


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where venvs live: the argument, else $MEMORY_FABRIC_BENCH_VENVS, else ~/.cache/..."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_CACHE


def _peer(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise PeerEnvError(f"unknown peer {name!r}; known: {', '.join(PEERS)}") from None


def _venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


# Interpreters tried, in order, when the current one lacks something a peer needs.
BASE_PYTHON_CANDIDATES = ("python3.11", "/usr/bin/python3.11", "python3", "/usr/bin/python3")
_CAN_LOAD_EXTENSIONS = (
    "import sqlite3, sys; sys.exit(0 if hasattr(sqlite3.connect(':memory:'), 'enable_load_extension') else 1)"
)


def base_python(peer: Peer) -> str:
    """The interpreter to build the peer's venv from: this one, unless the peer needs more."""
    if not peer.needs_sqlite_extensions:
        return sys.executable
    for candidate in (sys.executable, *BASE_PYTHON_CANDIDATES):
        exe = shutil.which(candidate)
        if exe and subprocess.run([exe, "-c", _CAN_LOAD_EXTENSIONS]).returncode == 0:
            return exe
    raise PeerEnvError(
        f"peer {peer.name} needs a Python whose sqlite3 can load extensions; none of "
        f"{sys.executable}, {', '.join(BASE_PYTHON_CANDIDATES)} can (on Debian: apt-get install "
        "python3-venv and use /usr/bin/python3)"
    )


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pip(python: Path, *args: str) -> str:
    """Run the venv's pip; on failure raise with pip's own output (the useful part)."""
    proc = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise PeerEnvError(f"pip {' '.join(args)} failed in {python}:\n{tail}")
    return proc.stdout


def _installed_versions(python: Path) -> dict[str, str]:
    listing = json.loads(_pip(python, "list", "--format=json"))
    return {item["name"].lower(): item["version"] for item in listing}


def ensure(name: str, cache: str | os.PathLike[str] | None = None, *, force: bool = False) -> PeerEnv:
    """Return the peer's venv, creating and installing it first if needed.

    Idempotent: a venv whose marker lists the same requirements and whose interpreter still runs
    is reused untouched. Anything else (no marker, other pins, ``force``) is deleted and rebuilt,
    so an interrupted install never passes for a good one.
    """
    peer = _peer(name)
    path = cache_dir(cache) / peer.name
    python = _venv_python(path)
    marker = _read_marker(path)
    if (
        not force
        and marker is not None
        and marker.get("format") == MARKER_FORMAT
        and marker.get("requirements") == list(peer.requirements)
        and python.exists()
    ):
        return PeerEnv(peer.name, path, python, dict(marker.get("versions", {})))

    base = base_python(peer)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([base, "-m", "venv", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        raise PeerEnvError(f"{base} -m venv {path} failed:\n{made.stdout}{made.stderr}")
    _pip(python, "install", "--quiet", *peer.requirements)
    versions = _installed_versions(python)
    record = {
        "format": MARKER_FORMAT,
        "peer": peer.name,
        "requirements": list(peer.requirements),
        "base_python": base,
        "python": subprocess.run(
            [str(python), "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
        "versions": versions,
    }
    tmp = path / (MARKER_NAME + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path / MARKER_NAME)  # the marker appears only once everything is installed
    return PeerEnv(peer.name, path, python, versions)


def runner_path(name: str) -> Path:
    """The runner script for a peer (it lives beside this file)."""
    return HERE / _peer(name).runner


def run_peer(
    name: str,
    spec: Mapping[str, Any],
    *,
    cache: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run one workload spec on a peer in its own venv and return its JSON result line.

    The runner's stderr is passed through (it is where a peer's noise goes). ``timeout_s``
    defaults to the spec's budget plus generous room for preloading and start-up.
    """
    env = ensure(name, cache)
    if timeout_s is None:
        timeout_s = 3 * float(spec.get("time_budget_s", 60)) + 120
    proc = subprocess.run(
        [str(env.python), str(runner_path(name))],
        input=json.dumps(dict(spec)),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise PeerEnvError(f"runner {name} printed no result (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except ValueError as e:
        raise PeerEnvError(f"runner {name} printed a non-JSON last line: {lines[-1]!r}") from e
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: create or reuse venvs and print what they hold."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peers", nargs="*", help=f"peers to prepare (default: all of {list(PEERS)})")
    parser.add_argument("--cache-dir", help=f"venv root (default ${CACHE_ENV_VAR} or {DEFAULT_CACHE})")
    parser.add_argument("--force", action="store_true", help="delete and reinstall")
    parser.add_argument("--python", action="store_true", help="print only the interpreter path(s)")
    args = parser.parse_args(argv)
    for name in args.peers or list(PEERS):
        try:
            env = ensure(name, args.cache_dir, force=args.force)
        except PeerEnvError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if args.python:
            print(env.python)
        else:
            pin = f"{PEERS[name].main_dist}=={env.version}"
            print(f"{env.peer:<14} {pin:<36} {env.python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
