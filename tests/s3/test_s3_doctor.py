"""``fabric doctor``: the seed's promise for s3 (25 records written, read back, cleaned up, metrics,
exit 0/1/2), and chain and view checks for the local backends. Run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fabric.fabric import MemoryFabric
from fabric.objectstore import S3ObjectStore

FabricFactory = Callable[..., MemoryFabric]
ROOT = Path(__file__).resolve().parents[2]


def doctor(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, dict[str, Any], str]:
    out = subprocess.run([sys.executable, "-m", "fabric.cli", "doctor", *args, "--json"], capture_output=True,
                         text=True, env=env, cwd=cwd, timeout=120)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else {}), out.stderr


@pytest.fixture
def doctor_env(s3_env: dict[str, str], s3_config: dict[str, Any]) -> dict[str, str]:
    return {**s3_env, "IOA_FABRIC_S3_BUCKET": s3_config["bucket_name"], "IOA_FABRIC_S3_PREFIX": s3_config["prefix"]}


def test_a_healthy_bucket(doctor_env: dict[str, str], bucket_store: S3ObjectStore, tmp_path: Path) -> None:
    code, report, err = doctor("--backend", "s3", "--verbose", env=doctor_env, cwd=tmp_path)
    assert code == 0, (report, err)
    assert report["status"] == "healthy"
    checks = {c["name"]: c for c in report["checks"]}
    assert {"reach", "write", "ship", "read", "restore", "cleanup"} <= set(checks)
    assert checks["read"]["detail"].startswith("25/25")
    assert report["metrics"]["records_written"] == 25 and report["metrics"]["records_verified"] == 25
    assert list(bucket_store.list("")) == []  # cleaned up; the real prefix was never written
    lines = (tmp_path / "artifacts/lens/memory_fabric/metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["status"] == "healthy" and json.loads(lines[-1])["backend"] == "s3"


def test_an_encrypted_round_trip(doctor_env: dict[str, str], tmp_path: Path) -> None:
    code, report, err = doctor("-b", "s3", "--records", "5", "--metrics", str(tmp_path / "m.jsonl"),
                               env={**doctor_env, "IOA_FABRIC_KEY": "doctor passphrase"}, cwd=tmp_path)
    assert code == 0, (report, err)
    assert report["metrics"]["encrypted"] is True and (tmp_path / "m.jsonl").is_file()


@pytest.mark.parametrize("change, says", [
    ({"IOA_FABRIC_S3_BUCKET": ""}, "IOA_FABRIC_S3_BUCKET"),
    ({"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, "credentials refused"),
    ({"IOA_FABRIC_S3_BUCKET": "no-such-bucket-for-fabric"}, "bucket missing"),
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "unreachable"),
])
def test_misconfigurations_exit_2_and_say_which(doctor_env: dict[str, str], tmp_path: Path, change: dict[str, str],
                                                says: str) -> None:
    code, report, _err = doctor("-b", "s3", env={**doctor_env, **change}, cwd=tmp_path)
    assert code == 2 and report["status"] == "misconfigured"
    assert says in report["misconfigured"]
    assert json.loads((tmp_path / "artifacts/lens/memory_fabric/metrics.jsonl").read_text())["exit_code"] == 2


def test_a_local_backlog_is_partial(make_fabric: FabricFactory, doctor_env: dict[str, str], tmp_path: Path) -> None:
    offline = make_fabric("store", ship=False)
    offline.store_many([{"content": f"not shipped {i}"} for i in range(7)])
    offline.close()
    code, report, err = doctor("-b", "s3", "-d", str(tmp_path / "store"), env=doctor_env, cwd=tmp_path)
    assert code == 1, (report, err)
    backlog = next(c for c in report["checks"] if c["name"] == "backlog")
    assert not backlog["ok"] and "8 of 8 events are not in the bucket" in backlog["detail"]
    shipping = make_fabric("store")
    assert shipping.view.wait_shipped(30)
    shipping.close()
    code, report, err = doctor("-b", "s3", "-d", str(tmp_path / "store"), env=doctor_env, cwd=tmp_path)
    assert code == 0, (report, err)


def test_local_backends_check_the_chain_and_the_view(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOA_", "AWS_"))}
    with MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path / "db")}) as fabric:
        fabric.store_many([{"content": f"row {i}"} for i in range(10)])
        fabric.count()
    assert doctor("-b", "sqlite", "-d", str(tmp_path / "db"), env=env, cwd=tmp_path)[0] == 0
    with MemoryFabric(backend="local_jsonl", config={"data_dir": str(tmp_path / "db")}) as fabric:
        fabric.store("behind the sqlite view")
    code, report, _ = doctor("-b", "sqlite", "-d", str(tmp_path / "db"), env=env, cwd=tmp_path)
    assert code == 1 and "1 events behind" in next(c for c in report["checks"] if c["name"] == "view")["detail"]
    assert doctor("-b", "local_jsonl", "-d", str(tmp_path / "db"), env=env, cwd=tmp_path)[0] == 0
    seg = next((tmp_path / "db").glob("memory_run_*.jsonl"))
    seg.write_bytes(seg.read_bytes().replace(b"row 3", b"row 8"))
    code, report, _ = doctor("-b", "local_jsonl", "-d", str(tmp_path / "db"), env=env, cwd=tmp_path)
    assert code == 1 and not next(c for c in report["checks"] if c["name"] == "chain")["ok"]
    assert doctor("-b", "local_jsonl", "-d", str(tmp_path / "nowhere"), env=env, cwd=tmp_path)[0] == 2
