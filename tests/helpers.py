"""Helpers shared by the unit, crash and CLI tests: seeded randomness, raw log access, subprocesses.

Everything here works on real files: the log is read byte by byte from its segments, not
through the code under test, so a test can check what is really on disk.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
SEED_ENV = "FABRIC_TEST_SEED"


def seeded(label: str) -> random.Random:
    """A `random.Random` whose seed is printed (pytest shows it when the test fails).

    Set ``FABRIC_TEST_SEED`` to replay a failure.
    """
    raw = os.environ.get(SEED_ENV)
    seed = int(raw) if raw else random.randrange(2**32)
    print(f"{label}: seed={seed} (replay with {SEED_ENV}={seed})")
    return random.Random(seed)


class Line(NamedTuple):
    """One raw line of a segment: where it is and what it holds (``raw`` ends with the newline)."""

    segment: Path
    offset: int
    raw: bytes

    @property
    def env(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.raw)
        return value


def segment_files(data_dir: Path) -> list[Path]:
    """The log's segments in log order (the seed's run files and anything else are left out)."""
    from fabric.log import parse_segment_name

    found = [(parse_segment_name(p.name), p) for p in Path(data_dir).iterdir()]
    return [p for first, p in sorted((f, p) for f, p in found if f is not None)]


def raw_lines(data_dir: Path) -> list[Line]:
    """Every complete line of every segment, with its byte offset."""
    out: list[Line] = []
    for seg in segment_files(data_dir):
        data = seg.read_bytes()
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            out.append(Line(seg, pos, data[pos:nl + 1]))
            pos = nl + 1
    return out


def rechain(data_dir: Path) -> None:
    """Recompute every line's ``prev`` and ``hash``, as an attacker who edited a line and knows the format would.

    The chain has no secret: it proves nothing changed only against a known last hash (an
    audit, a shipped copy). Tests of what lies beyond it (encryption) forge a valid chain.
    """
    import msgspec

    from fabric.log import GENESIS_HASH, Envelope, envelope_hash

    prev = GENESIS_HASH
    for seg in segment_files(data_dir):
        out = []
        for raw in seg.read_bytes().split(b"\n")[:-1]:
            env = msgspec.json.decode(raw, type=Envelope)
            env.prev = prev
            env.hash = envelope_hash(env)
            prev = env.hash
            out.append(msgspec.json.encode(env) + b"\n")
        seg.write_bytes(b"".join(out))


def log_seqs(data_dir: Path) -> list[int]:
    return [line.env["seq"] for line in raw_lines(data_dir)]


def assert_dense(seqs: list[int]) -> None:
    """Sequence numbers 1..n, each once, in order."""
    assert seqs == list(range(1, len(seqs) + 1)), f"seqs are not dense: first fault near {_first_fault(seqs)}"


def _first_fault(seqs: list[int]) -> int | None:
    for i, s in enumerate(seqs, 1):
        if s != i:
            return i
    return None


def stored_ids(data_dir: Path) -> list[str]:
    """Ids of every ``stored`` event in the log, read from the raw lines."""
    return [line.env["id"] for line in raw_lines(data_dir) if line.env["type"] == "stored"]


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python that imports the project from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("IOA_FABRIC_BACKEND", None)
    env.pop("IOA_FABRIC_ROOT", None)
    env.pop("IOA_FABRIC_KEY", None)
    env.pop("IOA_FABRIC_DURABILITY", None)
    env.update(extra)
    return env


def run_python(code: str, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (``sys.executable``) and capture its output."""
    kw.setdefault("env", child_env())
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, **kw)
