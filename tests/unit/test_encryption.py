"""Encrypted stores end to end: what is on disk, what comes back, and every key error.

Real stores under tmp_path. scrypt runs with a tiny cost (n=16) except in the one test
that checks the defaults are strong and derived once per open.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import raw_lines, rechain, segment_files

from fabric import MemoryFabric, crypto
from fabric.crypto_codec import (
    EncryptedCodec,
    PlainStoreCodec,
    StoreOpener,
    open_record_object,
    seal_record_object,
)
from fabric.errors import (
    CryptoError,
    MissingKeyError,
    RecordNotFoundError,
    TamperedDataError,
    UnexpectedKeyError,
    WrongKeyError,
)
from fabric.log import EventLog

KEY = "correct horse battery staple"
SECRET = "Dana's passport number is X1234567"
META_VALUE = "metadata-marker-7f3a"
META_KEY = "metakey_9c2e"
TAG = "tagmarker-5b1d"


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "SCRYPT_N", 2**4)
    monkeypatch.delenv("IOA_FABRIC_KEY", raising=False)
    monkeypatch.delenv("IOA_FABRIC_ROOT", raising=False)
    monkeypatch.delenv("IOA_FABRIC_BACKEND", raising=False)


def open_store(path: Path, key: str | None = KEY, **config: Any) -> MemoryFabric:
    return MemoryFabric(config={"data_dir": str(path), **config}, encryption_key=key)


def every_file_bytes(root: Path) -> Iterator[tuple[Path, bytes]]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            yield p, p.read_bytes()


def assert_absent(root: Path, *needles: bytes) -> None:
    for path, data in every_file_bytes(root):
        for needle in needles:
            assert needle not in data, f"{needle!r} found in {path}"


def lines_of(path: Path, type_: str) -> list[dict[str, Any]]:
    return [line.env for line in raw_lines(path) if line.env["type"] == type_]


# --- what is on disk and what comes back --------------------------------------------------


def test_the_log_holds_no_plaintext_of_content_metadata_tags_or_embedding(tmp_path: Path) -> None:
    with open_store(tmp_path) as m:
        rid = m.store(SECRET, {META_KEY: META_VALUE, "nested": {"deep": META_VALUE}}, [TAG], "knowledge",
                      embedding=[0.1234567, 0.7654321])
        m.store_many([{"content": SECRET + " again", "metadata": {META_KEY: 1}, "tags": [TAG]}])
        m.update(rid, content=SECRET + " updated", metadata={META_KEY: META_VALUE + "2"}, tags=[TAG, "t2"],
                 embedding=[0.5555111, 0.25])
        m.update(rid, storage_tier="cold")  # nothing secret: stays a plain update
        m.retrieve(rid)
    assert_absent(tmp_path, SECRET.encode(), b"passport", META_VALUE.encode(), META_KEY.encode(), TAG.encode(),
                  b"1234567", b"7654321", b"5555111")
    stored = lines_of(tmp_path, "stored")
    assert stored and all({"sealed", "dek", "kid"} <= set(e["data"]) for e in stored)
    assert all(set(e["data"]).isdisjoint({"content", "tags", "embedding"}) for e in stored)
    updated = lines_of(tmp_path, "updated")
    assert {"sealed", "dek", "kid"} <= set(updated[0]["data"])
    assert updated[1]["data"] == {"storage_tier": "cold"}
    assert stored[0]["data"]["memory_type"] == "knowledge"  # not secret, and stays plaintext


def test_records_read_back_exactly_as_without_encryption(tmp_path: Path) -> None:
    items = [{"content": f"note {i} about peanuts", "metadata": {"i": i, "x": [1.5, None, "é"]},
              "tags": ["a", f"t{i}"], "embedding": [float(i), 0.5]} for i in range(20)]

    def fill(m: MemoryFabric) -> list[str]:
        ids = m.store_many([{**it, "record_id": f"r{i}"} for i, it in enumerate(items)])
        m.update("r3", content="changed peanuts", tags=["z"])
        m.update("r4", metadata={"new": True})
        m.delete("r5")
        return ids

    with open_store(tmp_path / "plain", key=None) as p, open_store(tmp_path / "enc") as e:
        fill(p)
        fill(e)
    with open_store(tmp_path / "plain", key=None) as p, open_store(tmp_path / "enc") as e:
        assert e.encrypted and not p.encrypted
        strip = lambda rs: [msgspec.structs.replace(r, timestamp=None, last_accessed=None) for r in rs]  # noqa: E731
        assert strip(e.list_all()) == strip(p.list_all())
        assert [r.id for r in e.search("peanuts")] == [r.id for r in p.search("peanuts")]
        assert e.retrieve("r4").metadata == {"new": True}  # type: ignore[union-attr]
        assert e.get_stats()["encryption"] == "aes-256-gcm"


def test_each_record_has_its_own_data_key_and_updates_carry_it(tmp_path: Path) -> None:
    with open_store(tmp_path) as m:
        a = m.store("a")
        b = m.store("b")
        m.update(a, content="a2")
    stored = {e["id"]: e["data"] for e in lines_of(tmp_path, "stored")}
    assert stored[a]["dek"] != stored[b]["dek"]
    updated = lines_of(tmp_path, "updated")[0]["data"]
    assert updated["dek"] == stored[a]["dek"]  # the record's own key, same wrapping
    assert updated["sealed"] != stored[a]["sealed"]


def test_update_of_a_record_another_handle_stored_finds_its_key_in_the_log(tmp_path: Path) -> None:
    with open_store(tmp_path) as first, open_store(tmp_path) as second:
        rid = first.store("written by the first handle")
        codec = second._codec
        assert isinstance(codec, EncryptedCodec)
        assert rid not in codec._deks  # second never decoded it: a cache miss
        second.update(rid, content="changed by the second handle")
        assert rid in codec._deks
        assert first.retrieve(rid).content == "changed by the second handle"  # type: ignore[union-attr]
        assert codec.index._upto > 0
        before = codec.index._upto
        other = second.store("another")  # cached at encode: no lookup
        second.update(other, content="x")
        assert codec.index._upto == before  # the index was not extended for a write it did not need
    with pytest.raises(RecordNotFoundError):
        with open_store(tmp_path) as third:
            third.update("no-such-record", content="x")


def test_lookup_survives_a_rewrite_that_moved_the_line(tmp_path: Path) -> None:
    with open_store(tmp_path) as m:
        doomed = m.store("to be forgotten " * 20)
        keep = m.store("kept")
        m.flush()
    with open_store(tmp_path) as reader:
        codec = reader._codec
        assert isinstance(codec, EncryptedCodec)
        codec.index.refresh()  # remembers byte positions
        with open_store(tmp_path) as m:
            m.forget(doomed)  # shortens the segment: positions after the redacted line move
        codec._deks.clear()
        reader.update(keep, content="kept and changed")
    with open_store(tmp_path) as m:
        assert m.retrieve(keep).content == "kept and changed"  # type: ignore[union-attr]


def test_empty_environment_key_means_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOA_FABRIC_KEY", "")
    with open_store(tmp_path, key=None) as m:
        assert not m.encrypted
    monkeypatch.setenv("IOA_FABRIC_KEY", KEY)
    with open_store(tmp_path / "env", key=None) as m:
        assert m.encrypted
        m.store(SECRET)
    assert_absent(tmp_path / "env", SECRET.encode())


# --- errors ---------------------------------------------------------------------------------


def test_wrong_missing_and_unexpected_keys_fail_on_open_naming_what_is_wrong(tmp_path: Path) -> None:
    with open_store(tmp_path / "enc") as m:
        m.store(SECRET)
        kid = m._codec.keyring.current_key_id  # type: ignore[union-attr]
    with open_store(tmp_path / "plain", key=None) as m:
        m.store("plain")
    with pytest.raises(WrongKeyError, match=kid):
        open_store(tmp_path / "enc", key="not the key")
    with pytest.raises(MissingKeyError, match=f"encrypted.*{kid}"):
        open_store(tmp_path / "enc", key=None)
    with pytest.raises(UnexpectedKeyError, match="without encryption"):
        open_store(tmp_path / "plain", key=KEY)
    for err in (WrongKeyError, MissingKeyError, UnexpectedKeyError, TamperedDataError):
        assert issubclass(err, CryptoError)


def _rewrite_line(path: Path, type_: str, change: Any, nth: int = 0) -> None:
    """Change the data of the nth line of ``type_`` in place, as an attacker with the file would."""
    lines = [ln for ln in raw_lines(path) if ln.env["type"] == type_]
    line = lines[nth]
    env = json.loads(line.raw)
    change(env["data"])
    new = json.dumps(env, separators=(",", ":")).encode() + b"\n"
    data = line.segment.read_bytes()
    line.segment.write_bytes(data[:line.offset] + new + data[line.offset + len(line.raw):])
    rechain(path)  # the chain has no secret: encryption must catch what a forged chain hides


def _flip_b64(value: str, at: int = 20) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("tamper", ["sealed", "dek", "swap", "plaintext", "no_dek", "kid"])
def test_tampered_records_are_a_typed_error_never_ciphertext_or_plaintext(tmp_path: Path, tamper: str) -> None:
    with open_store(tmp_path) as m:
        a = m.store("first secret", record_id="rec-a")
        m.store("second secret", record_id="rec-b")
    other = lines_of(tmp_path, "stored")[1]["data"]

    def change(data: dict[str, Any]) -> None:
        if tamper in ("sealed", "dek"):
            data[tamper] = _flip_b64(data[tamper])
        elif tamper == "swap":  # the other record's ciphertext and key: AAD binds the record id
            data["sealed"], data["dek"] = other["sealed"], other["dek"]
        elif tamper == "plaintext":  # an attacker's plaintext event: never accepted
            for k in ("sealed", "dek", "kid"):
                data.pop(k)
            data["content"] = "injected"
        elif tamper == "no_dek":
            data.pop("dek")
        elif tamper == "kid":
            data["kid"] = "0" * 16

    _rewrite_line(tmp_path, "stored", change)
    err = MissingKeyError if tamper == "kid" else TamperedDataError  # kid: names a key id nobody has
    with pytest.raises((TamperedDataError, CryptoError)) as info:
        open_store(tmp_path)  # the in-memory view decodes everything on open
    assert "rec-a" in str(info.value)
    if tamper != "kid":
        assert isinstance(info.value, err)
    assert a == "rec-a"


def test_ciphertext_in_a_plaintext_store_is_refused(tmp_path: Path) -> None:
    with open_store(tmp_path / "enc") as m:
        m.store("x", record_id="r")
    sealed = lines_of(tmp_path / "enc", "stored")[0]["data"]
    with open_store(tmp_path / "plain", key=None) as m:
        m.store("plain", record_id="r")
    _rewrite_line(tmp_path / "plain", "stored", lambda d: d.update(sealed))
    with pytest.raises(TamperedDataError, match="without encryption"):
        open_store(tmp_path / "plain", key=None)


# --- the key is derived once, with strong defaults ------------------------------------------


def test_defaults_are_strong_and_scrypt_runs_once_per_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "SCRYPT_N", 2**17)  # the real default, this once
    calls: list[int] = []
    real = crypto._scrypt

    def counting(*args: Any) -> bytes:
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(crypto, "_scrypt", counting)
    with open_store(tmp_path) as m:
        m.store("x")
    assert calls == [2**17]
    created = next(iter(EventLog(tmp_path).read(1, 1)))
    params = crypto.load_key_params(msgspec.json.decode(created.data)["encryption"])
    assert (params.n, params.r, params.p) == (2**17, 8, 1) and len(params.salt) >= 16
    calls.clear()
    with open_store(tmp_path) as m:
        assert m.count() == 1
    assert calls == [2**17]


def test_a_second_store_gets_another_salt_and_key_id(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        with open_store(tmp_path / name) as m:
            ids.append(m._codec.keyring.current_key_id)  # type: ignore[union-attr]
    assert ids[0] != ids[1]


# --- S3 record objects ------------------------------------------------------------------------


def test_record_objects_for_s3_are_sealed_with_the_record_key(tmp_path: Path) -> None:
    with open_store(tmp_path) as m:
        rid = m.store(SECRET)
        codec = m._codec
        body = json.dumps({"id": rid, "content": SECRET}).encode()
        blob = codec.seal_record_object(rid, body)
        assert SECRET.encode() not in blob
        assert codec.open_record_object(rid, blob) == body
        with pytest.raises(TamperedDataError):
            codec.open_record_object("another-id", blob)  # bound to its record
        obj = json.loads(blob)
        obj["sealed"] = _flip_b64(obj["sealed"])
        with pytest.raises(TamperedDataError):
            codec.open_record_object(rid, json.dumps(obj).encode())
        with pytest.raises(TamperedDataError):
            codec.open_record_object(rid, body)  # plaintext where an encrypted object is due
        ring = codec.keyring
        assert ring is not None
    # a machine that only has the passphrase (and the store's params) opens it
    with open_store(tmp_path) as again:
        assert open_record_object(again._codec.keyring, rid, blob) == body  # type: ignore[arg-type]
    ring2, _ = crypto.Keyring.create("x", n=16)
    dek = crypto.new_data_key()
    assert open_record_object(ring2, "r", seal_record_object(ring2, "r", b"payload", dek)) == b"payload"


def test_plaintext_codec_passes_record_objects_through(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    codec = StoreOpener(None).open(log)
    assert isinstance(codec, PlainStoreCodec)
    assert codec.seal_record_object("r", b"x") == b"x" == codec.open_record_object("r", b"x")
    log.close()


@pytest.mark.skipif(importlib.util.find_spec("projections.sqlite_fts") is None, reason="no sqlite view in this tree")
def test_sqlite_view_of_an_encrypted_store_holds_plaintext_and_the_log_does_not(tmp_path: Path) -> None:
    """As the README says: a full-text index must hold the words; the log (what gets copied) must not."""
    with MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path)}, encryption_key=KEY) as m:
        rid = m.store(SECRET, {META_KEY: META_VALUE}, [TAG])
        m.update(rid, tags=[TAG, "x"])
        assert [r.id for r in m.search("passport")] == [rid]
    with MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path)}, encryption_key=KEY) as m:
        assert m.retrieve(rid).content == SECRET  # type: ignore[union-attr]
    for seg in segment_files(tmp_path):
        assert SECRET.encode() not in seg.read_bytes() and TAG.encode() not in seg.read_bytes()
    view_bytes = b"".join(data for p, data in every_file_bytes(tmp_path) if p.name.startswith("fabric.db"))
    assert SECRET.encode() in view_bytes
