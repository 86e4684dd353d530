"""Write small, real stores in the seed's on-disk formats, as fixtures for ``fabric import`` tests.

Why generate instead of hand-writing: an importer must accept what the seed really writes, quirks
included (duplicate lines after a re-store, files rewritten by delete, metadata the facade adds,
encrypted content, stale FTS rows). So this script drives the seed's own ``MemoryFabric`` (the
pinned ``ioa-core`` from envs.py) through a scripted scenario per backend and keeps the files.
docs/seed-formats.md explains what the files show.

Run with the ioa_core venv's python (never with ours)::

    $(python tools/peers/envs.py --python ioa_core) tools/peers/make_seed_samples.py

Output (replaced on every run) in tools/peers/seed_samples/:
    local_jsonl/memory_run_<8 hex>.jsonl   four run files (one per MemoryFabric instance)
    sqlite/memory_run_<8 hex>.db           one database (WAL checkpointed on close)
    s3/<bucket>/<prefix><id>.json          object bodies as the S3 backend PUTs them
    manifest.json                          the scenario: every call, its result, which file it
                                           wrote, the encryption key, what an importer should get

File names, UUIDs, timestamps, nonces and 4D scores change on every run; the structure does not.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "seed_samples"
KEY = "sample-passphrase-not-secret"  # the fixtures' encryption key (a passphrase, as the seed takes)
BUCKET = "sample-bucket"
PREFIX = "ioa/memory/"


def _clean_env() -> None:
    """Run the seed on its defaults, whatever the calling shell exported."""
    for key in [k for k in os.environ if k.startswith(("IOA_", "USE_4D_TIERING"))]:
        del os.environ[key]


class Log:
    """The manifest's operation log: what was called, on which instance, and what came back."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []

    def add(self, run: str, call: str, result: Any, **details: Any) -> Any:
        entry = {"run": run, "call": call, "result": result}
        entry.update(details)
        self.ops.append(entry)
        return result


def _fabric(backend: str, data_dir: Path, key: str | None = None, **config: Any) -> Any:
    from ioa_core.memory_fabric import MemoryFabric  # type: ignore[import-untyped]

    return MemoryFabric(backend=backend, config={"data_dir": str(data_dir), **config}, encryption_key=key)


def _embedding() -> Any:
    from ioa_core.memory_fabric import EmbeddingV1

    return EmbeddingV1(vector=[0.125, -0.5, 0.25, 1.0], model="demo-hash-4", dimension=4)


def local_jsonl(work: Path, log: Log) -> dict[str, Any]:
    """Four MemoryFabric instances on one data_dir: each writes its own run file."""
    data = work / "local_jsonl"
    runs: dict[str, str] = {}

    # run1: plain stores, a re-store of the same id (the seed has no update), a read.
    f = _fabric("local_jsonl", data)
    runs["run1"] = Path(f._store.get_file_path()).name
    log.add(
        "run1",
        "store(mem-a)",
        f.store(
            "Alice prefers vegetarian restaurants near the office.",
            metadata={"user": "u12", "session": 3, "source": "chat"},
            tags=["preference", "food"],
            memory_type="knowledge",
            record_id="mem-a",
        ),
    )
    log.add(
        "run1",
        "store(mem-b, storage_tier=cold, non-ASCII, datetime in metadata)",
        f.store(
            "Café meeting moved to Friday ☕",
            metadata={"user": "u7", "session": 1, "source": "email", "due": datetime(2025, 1, 3, 9, 30, tzinfo=UTC)},
            tags=["todo"],
            storage_tier="cold",
            record_id="mem-b",
        ),
    )
    log.add(
        "run1",
        "store(mem-c, embedding, caller metadata has 'timestamp')",
        f.store(
            "Embedding demo record",
            metadata={"timestamp": "caller value, overwritten by store()", "memory_type": "also overwritten"},
            memory_type="context",
            embedding=_embedding(),
            record_id="mem-c",
        ),
    )
    auto_id = log.add("run1", "store(no record_id)", f.store("No explicit id: the seed makes a UUID4."))
    log.add(
        "run1",
        "store(mem-a) again = update",
        f.store(
            "Alice prefers vegan restaurants now.",
            metadata={"user": "u12", "session": 4, "source": "chat"},
            tags=["preference", "food"],
            memory_type="knowledge",
            record_id="mem-a",
        ),
    )
    got = f.retrieve("mem-b")
    log.add(
        "run1",
        "retrieve(mem-b)",
        got.access_count if got else None,
        note="access_count in memory only; not written to the run file",
    )
    f.close()

    # run2: a new instance never loads run1's file; delete rewrites its own file.
    f = _fabric("local_jsonl", data)
    runs["run2"] = Path(f._store.get_file_path()).name
    log.add("run2", "retrieve(mem-a)", f.retrieve("mem-a") is not None, note="False: earlier run files are never read")
    log.add("run2", "delete(mem-a)", f.delete("mem-a"), note="False: mem-a lives in run1's file")
    log.add(
        "run2",
        "store(mem-e)",
        f.store(
            "Flight to Tokyo booked for March.",
            metadata={"user": "u3", "session": 9, "source": "tool"},
            tags=["travel"],
            record_id="mem-e",
        ),
    )
    log.add("run2", "store(mem-f)", f.store("Temporary note, deleted below.", record_id="mem-f"))
    got = f.retrieve("mem-e")
    log.add("run2", "retrieve(mem-e)", got.access_count if got else None)
    log.add(
        "run2",
        "delete(mem-f)",
        f.delete("mem-f"),
        note="rewrites the whole file from memory: mem-f's line is gone, mem-e's access_count is now 1",
    )
    f.close()

    # run3: encryption on; content is ciphertext on disk.
    f = _fabric("local_jsonl", data, key=KEY)
    runs["run3"] = Path(f._store.get_file_path()).name
    log.add(
        "run3",
        "store(mem-g, encrypted)",
        f.store("Secret: the door code is 4711.", metadata={"user": "u1"}, tags=["personal"], record_id="mem-g"),
    )
    log.add("run3", "store(mem-h, encrypted)", f.store("Secret two.", record_id="mem-h"))
    f.close()

    # run4: encryption on, then a delete: the rewrite writes what the facade decrypted in memory.
    f = _fabric("local_jsonl", data, key=KEY)
    runs["run4"] = Path(f._store.get_file_path()).name
    log.add(
        "run4",
        "store(mem-i, encrypted)",
        f.store("Secret three, rewritten by a delete.", metadata={"user": "u1"}, record_id="mem-i"),
    )
    log.add("run4", "store(mem-j, encrypted)", f.store("Secret four, deleted.", record_id="mem-j"))
    log.add("run4", "delete(mem-j)", f.delete("mem-j"))
    f.close()
    line = json.loads((data / runs["run4"]).read_text(encoding="utf-8").splitlines()[0])
    log.add(
        "run4",
        "inspect run file after delete",
        {
            "id": line["id"],
            "content_on_disk": line["content"],
            "encryption_mode": line["metadata"].get("encryption_mode"),
        },
        note="store() calls list_all() for metrics, which decrypts records in place in the store's "
        "dict; the delete's rewrite then saves plaintext under an 'aes-gcm' marker",
    )

    return {
        "dir": "local_jsonl",
        "run_files": runs,
        "auto_id": auto_id,
        "expected_live_ids": sorted(["mem-a", "mem-b", "mem-c", auto_id, "mem-e", "mem-g", "mem-h", "mem-i"]),
        "expected_content": {
            "mem-a": "Alice prefers vegan restaurants now.",
            "mem-b": "Café meeting moved to Friday ☕",
            "mem-c": "Embedding demo record",
            auto_id: "No explicit id: the seed makes a UUID4.",
            "mem-e": "Flight to Tokyo booked for March.",
            "mem-g": "Secret: the door code is 4711.",
            "mem-h": "Secret two.",
            "mem-i": "Secret three, rewritten by a delete.",
        },
        "gone": {
            "mem-f": "deleted in run2 (line removed by rewrite)",
            "mem-j": "deleted in run4 (line removed by rewrite)",
        },
    }


def sqlite_backend(work: Path, log: Log) -> dict[str, Any]:
    """One database file: the default per-instance name, reopened by name for an encrypted store."""
    data = work / "sqlite"
    f = _fabric("sqlite", data)
    db_name = Path(f._store.get_db_path()).name
    log.add(
        "sql1",
        "store(mem-a)",
        f.store(
            "Alice prefers vegetarian restaurants near the office.",
            metadata={"user": "u12", "session": 3, "source": "chat"},
            tags=["preference", "food"],
            memory_type="knowledge",
            record_id="mem-a",
        ),
    )
    log.add(
        "sql1",
        "store(mem-b, storage_tier=cold, non-ASCII)",
        f.store(
            "Café meeting moved to Friday ☕",
            metadata={"user": "u7", "session": 1, "source": "email"},
            tags=["todo"],
            storage_tier="cold",
            record_id="mem-b",
        ),
    )
    log.add(
        "sql1",
        "store(mem-c, embedding)",
        f.store("Embedding demo record", memory_type="context", embedding=_embedding(), record_id="mem-c"),
    )
    auto_id = log.add("sql1", "store(no record_id)", f.store("No explicit id: the seed makes a UUID4."))
    try:
        f.store("datetime in metadata", metadata={"due": datetime(2025, 1, 3, tzinfo=UTC)}, record_id="mem-x")
        outcome: Any = "stored"
    except Exception as e:  # noqa: BLE001 - recording the seed's behaviour
        outcome = f"raised {type(e).__name__}: {e}"
    log.add(
        "sql1",
        "store(mem-x, datetime in metadata)",
        outcome,
        note="sqlite encodes metadata with plain json.dumps: non-JSON values fail the store",
    )
    log.add(
        "sql1",
        "store(mem-a) again = update",
        f.store(
            "Alice prefers vegan restaurants now.",
            metadata={"user": "u12", "session": 4, "source": "chat"},
            tags=["preference", "food"],
            memory_type="knowledge",
            record_id="mem-a",
        ),
        note="INSERT OR REPLACE: new rowid; the old FTS row is left behind",
    )
    for _ in range(2):
        got = f.retrieve("mem-b")
    log.add(
        "sql1",
        "retrieve(mem-b) x2",
        got.access_count if got else None,
        note="access_count and last_accessed are written back",
    )
    log.add("sql1", "store(mem-f)", f.store("Temporary note, deleted below.", record_id="mem-f"))
    log.add("sql1", "delete(mem-f)", f.delete("mem-f"))
    f.close()

    f = _fabric("sqlite", data, key=KEY, db_name=db_name)
    log.add(
        "sql2",
        "store(mem-g, encrypted; reopened with db_name)",
        f.store("Secret: the door code is 4711.", metadata={"user": "u1"}, tags=["personal"], record_id="mem-g"),
    )
    f.close()

    db = data / db_name
    con = sqlite3.connect(db)
    joined = "SELECT m.id FROM memory_records m JOIN memory_fts f ON m.rowid = f.rowid WHERE memory_fts MATCH ?"
    diagnostics: dict[str, Any] = {
        "memory_records": con.execute("SELECT count(*) FROM memory_records").fetchone()[0],
        "record_rowids": dict(con.execute("SELECT id, rowid FROM memory_records ORDER BY rowid")),
        "fts_rowids_for_old_mem_a_word_vegetarian": [
            r[0] for r in con.execute("SELECT rowid FROM memory_fts WHERE memory_fts MATCH 'vegetarian'")
        ],
        "seed_search_for_deleted_mem_f_word_temporary": [r[0] for r in con.execute(joined, ("temporary",))],
    }
    for label, sql in (
        ("fts_integrity_check", "INSERT INTO memory_fts(memory_fts) VALUES('integrity-check')"),
        (
            "fts_integrity_check_against_content",
            "INSERT INTO memory_fts(memory_fts, rank) VALUES('integrity-check', 1)",
        ),
    ):
        try:
            con.execute(sql)
            diagnostics[label] = "ok"
        except sqlite3.DatabaseError as e:
            diagnostics[label] = f"{type(e).__name__}: {e}"
    con.close()
    leftovers = [p.name for p in data.iterdir() if p.name != db_name]
    return {
        "dir": "sqlite",
        "db_file": db_name,
        "auto_id": auto_id,
        "other_files_left": leftovers,
        "diagnostics": diagnostics,
        "expected_live_ids": sorted(["mem-a", "mem-b", "mem-c", auto_id, "mem-g"]),
        "expected_content": {
            "mem-a": "Alice prefers vegan restaurants now.",
            "mem-b": "Café meeting moved to Friday ☕",
            "mem-c": "Embedding demo record",
            auto_id: "No explicit id: the seed makes a UUID4.",
            "mem-g": "Secret: the door code is 4711.",
        },
    }


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


class FakeS3:
    """Just enough of a boto3 S3 client for S3Store, writing objects as files under a root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.puts: list[dict[str, Any]] = []

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def head_bucket(self, Bucket: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {}

    def put_object(self, Bucket: str, Key: str, Body: Any, ContentType: str = "") -> dict[str, Any]:  # noqa: N803
        path = self._path(Bucket, Key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = Body.encode("utf-8") if isinstance(Body, str) else bytes(Body)
        path.write_bytes(data)
        self.puts.append({"key": Key, "content_type": ContentType, "body_type": type(Body).__name__})
        return {}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"Body": _Body(self._path(Bucket, Key).read_bytes())}

    def delete_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self._path(Bucket, Key).unlink(missing_ok=True)
        return {}

    def list_objects_v2(self, Bucket: str, Prefix: str) -> dict[str, Any]:  # noqa: N803
        base = self.root / Bucket
        keys = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
        return {"Contents": [{"Key": k} for k in keys if k.startswith(Prefix)]}


def s3_backend(work: Path, log: Log) -> dict[str, Any]:
    """The real S3Store code path with an in-process fake client (no server, no boto3)."""
    fake = FakeS3(work / "s3")

    def attach(f: Any) -> Any:
        f._store._s3_client = fake
        f._store._boto3_available = True
        return f

    config = {"bucket_name": BUCKET, "prefix": PREFIX}
    f = attach(_fabric("s3", work / "unused", **config))
    log.add(
        "s3a",
        "store(mem-a)",
        f.store(
            "Alice prefers vegetarian restaurants near the office.",
            metadata={"user": "u12", "session": 3, "source": "chat"},
            tags=["preference", "food"],
            memory_type="knowledge",
            record_id="mem-a",
        ),
    )
    log.add(
        "s3a",
        "store(mem-c, embedding)",
        f.store("Embedding demo record", memory_type="context", embedding=_embedding(), record_id="mem-c"),
    )
    got = f.retrieve("mem-a")
    log.add(
        "s3a",
        "retrieve(mem-a)",
        got.access_count if got else None,
        note="retrieve PUTs the whole record back with access_count+1",
    )
    log.add("s3a", "store(mem-f)", f.store("Temporary note, deleted below.", record_id="mem-f"))
    log.add("s3a", "delete(mem-f)", f.delete("mem-f"))
    f.close()
    f = attach(_fabric("s3", work / "unused", key=KEY, **config))
    log.add(
        "s3b",
        "store(mem-g, encrypted)",
        f.store("Secret: the door code is 4711.", metadata={"user": "u1"}, tags=["personal"], record_id="mem-g"),
    )
    f.close()
    return {
        "dir": "s3",
        "bucket": BUCKET,
        "prefix": PREFIX,
        "key_pattern": "<prefix><record id>.json",
        "puts": fake.puts,
        "expected_live_ids": ["mem-a", "mem-c", "mem-g"],
    }


def main() -> int:
    """Run the three scenarios in a scratch dir, then replace seed_samples/ with the results."""
    _clean_env()
    logging.disable(logging.CRITICAL)
    work = Path(tempfile.mkdtemp(prefix="seed-samples-"))
    old_cwd = os.getcwd()
    os.chdir(work)  # the seed writes ./artifacts/lens/... and ./artifacts/memory/s3_fallback here
    log = Log()
    try:
        stdout, sys.stdout = sys.stdout, io.StringIO()
        try:
            sections = {
                "local_jsonl": local_jsonl(work, log),
                "sqlite": sqlite_backend(work, log),
                "s3": s3_backend(work, log),
            }
        finally:
            sys.stdout = stdout
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        shutil.copytree(work / "local_jsonl", OUT / "local_jsonl")
        (OUT / "sqlite").mkdir()
        db = sections["sqlite"]["db_file"]
        shutil.copy2(work / "sqlite" / db, OUT / "sqlite" / db)
        shutil.copytree(work / "s3", OUT / "s3")
        manifest = {
            "generator": "tools/peers/make_seed_samples.py",
            "ioa_core_version": importlib_metadata.version("ioa-core"),
            "python": sys.version.split()[0],
            "generated_at": datetime.now(UTC).isoformat(),
            "env": "seed defaults (IOA_* and USE_4D_TIERING unset)",
            "encryption": {
                "passphrase": KEY,
                "kdf": "PBKDF2-HMAC-SHA256, 100000 iterations, 32-byte key",
                "salt_utf8": "ioa_memory_fabric_salt",
                "content_format": "base64(nonce[12] || AES-256-GCM ciphertext || tag[16]), no AAD",
            },
            **sections,
            "operations": log.ops,
        }
        (OUT / "manifest.json").write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(work, ignore_errors=True)
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size:>7}  {path.relative_to(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
