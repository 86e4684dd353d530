"""What reaches the bucket from an encrypted store is ciphertext; forgetting reaches the bucket too."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fabric.errors import TamperedDataError
from fabric.fabric import MemoryFabric
from fabric.migrate import store_digests
from fabric.objectstore import S3ObjectStore
from fabric.s3_layout import record_key
from fabric.s3_restore import restore

FabricFactory = Callable[..., MemoryFabric]
KEY = "correct horse battery staple"
SECRETS = ["Zanzibar-passport-X1234567", "allergic-to-kumquats", "tag-confidential-9", "meta-value-hush-42",
           "updated-secret-Qwerty", "embedding-model-secret"]


def every_object(store: S3ObjectStore) -> dict[str, bytes]:
    return {k: store.get(k) for k in store.list("")}


def test_every_byte_in_the_bucket_is_ciphertext(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                tmp_path: Path, shipped: Callable[..., None]) -> None:
    fabric = make_fabric(key=KEY)
    rid = fabric.store(f"Dana's passport: {SECRETS[0]}, {SECRETS[1]}", {"note": SECRETS[3]}, [SECRETS[2]],
                       embedding={"vector": [0.1, 0.2], "model": SECRETS[5]})
    fabric.store_many([{"content": f"{SECRETS[1]} record {i}", "tags": [SECRETS[2]]} for i in range(20)])
    fabric.update(rid, content=f"now {SECRETS[4]}")
    shipped(fabric)
    objects = every_object(bucket_store)
    assert any(k.startswith("record_") for k in objects) and any(k.endswith(".jsonl") for k in objects)
    for key, data in objects.items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret!r} in plaintext in {key}"
    body = fabric.view.fetch_record_object(rid)  # the store's key opens them
    assert body is not None and body["content"] == f"now {SECRETS[4]}" and body["tags"] == [SECRETS[2]]
    sealed = json.loads(objects[record_key(rid)])
    assert set(sealed) == {"v", "kid", "dek", "sealed"}

    # a record object moved to another record's name does not open
    other = next(k for k in objects if k.startswith("record_") and k != record_key(rid))
    bucket_store.put(other, objects[record_key(rid)])
    try:
        fabric.view.fetch_record_object(other[len("record_"):-len(".json")])
        raise AssertionError("a moved record object opened")
    except TamperedDataError:
        pass

    digests = store_digests(fabric)
    fabric.close()
    restore(bucket_store, tmp_path / "restored")
    copy = make_fabric("restored", key=KEY, ship=False)
    assert store_digests(copy) == digests


def test_restore_of_an_encrypted_bucket_needs_the_key(make_fabric: FabricFactory, s3_config: dict[str, Any],
                                                      s3_env: dict[str, str], tmp_path: Path,
                                                      shipped: Callable[..., None]) -> None:
    fabric = make_fabric(key=KEY)
    fabric.store("sealed")
    shipped(fabric)
    env = {k: v for k, v in s3_env.items() if k != "IOA_FABRIC_KEY"}
    out = subprocess.run([sys.executable, "-m", "fabric.cli", "restore", "--from", "s3", "-d", str(tmp_path / "r"),
                          "--bucket", s3_config["bucket_name"], "--prefix", s3_config["prefix"]],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "encrypted" in out.stderr and not (tmp_path / "r").exists()


def test_forgetting_erases_the_record_object_and_the_shipped_lines(make_fabric: FabricFactory,
                                                                   bucket_store: S3ObjectStore, tmp_path: Path,
                                                                   wait_for: Callable[..., None],
                                                                   shipped: Callable[..., None]) -> None:
    fabric = make_fabric()
    keep = fabric.store("an ordinary note")
    secret = fabric.store(f"please forget {SECRETS[0]}", {"why": SECRETS[3]}, [SECRETS[2]])
    fabric.update(secret, content=f"still {SECRETS[4]}")
    shipped(fabric)
    assert any(SECRETS[0].encode() in data for data in every_object(bucket_store).values())
    assert fabric.forget(secret, reason="user request")
    wait_for(lambda: fabric.get_stats()["views"]["s3"]["requests"]["chunks_reshipped"] > 0, what="re-shipping")
    shipped(fabric)
    objects = every_object(bucket_store)
    assert record_key(secret) not in objects and record_key(keep) in objects
    for key, data in objects.items():
        for s in (SECRETS[0], SECRETS[2], SECRETS[3], SECRETS[4]):
            assert s.encode() not in data, f"{s!r} is still in {key}"
    fabric.close()
    restore(bucket_store, tmp_path / "restored")  # the erased lines still chain
    copy = make_fabric("restored", ship=False)
    assert copy.retrieve(secret) is None and copy.retrieve(keep) is not None
    assert [e["type"] for e in copy.history(secret)] == ["stored", "updated", "forgotten"]


def test_a_reencrypting_compaction_reaches_the_bucket(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                      tmp_path: Path, wait_for: Callable[..., None],
                                                      shipped: Callable[..., None]) -> None:
    fabric = make_fabric(key=KEY)
    ids = fabric.store_many([{"content": f"{SECRETS[1]} {i}"} for i in range(10)])
    shipped(fabric)
    fabric.rotate_key("a brand new passphrase")
    fabric.log.seal_segment()
    fabric.compact(reencrypt=True)  # rewrites sealed segments in place: every data key rewrapped
    wait_for(lambda: fabric.get_stats()["views"]["s3"]["requests"]["chunks_reshipped"] > 0, what="re-shipping")
    fabric.store("after the compaction")
    shipped(fabric)
    fabric.close()
    restore(bucket_store, tmp_path / "restored")
    local = {p.name: p.read_bytes() for p in Path(fabric.data_dir).glob("memory_run_*.jsonl")}
    assert {p.name: p.read_bytes() for p in (tmp_path / "restored").glob("memory_run_*.jsonl")} == local
    copy = make_fabric("restored", key="a brand new passphrase", ship=False)
    assert copy.retrieve(ids[3]).content == f"{SECRETS[1]} 3"  # type: ignore[union-attr]
