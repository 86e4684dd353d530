"""Key rotation: KeyRotated with escrowed old keys, the newest passphrase alone reads everything,
and a re-encrypting compaction that rewraps every data key and retires the old keys."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, raw_lines

from fabric import MemoryFabric, crypto
from fabric.cli import main as cli_main
from fabric.errors import ConfigurationError, MissingKeyError, WrongKeyError

OLD, NEW, NEWER = "old passphrase", "new passphrase", "newer passphrase"


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "SCRYPT_N", 2**4)
    for var in ("IOA_FABRIC_KEY", "IOA_FABRIC_ROOT", "IOA_FABRIC_BACKEND"):
        monkeypatch.delenv(var, raising=False)


def open_store(path: Path, key: str | None, **config: Any) -> MemoryFabric:
    return MemoryFabric(config={"data_dir": str(path), **config}, encryption_key=key)


def key_id(m: MemoryFabric) -> str:
    ring = m._codec.keyring
    assert ring is not None
    return ring.current_key_id


def wrapped_kids(path: Path) -> dict[int, str]:
    """seq -> key id wrapping the DEK carried by that line, for every line that carries one."""
    return {ln.env["seq"]: crypto.wrapped_key_id(base64.b64decode(ln.env["data"]["dek"]))
            for ln in raw_lines(path) if "dek" in ln.env["data"]}


def sealed_blobs(path: Path) -> dict[int, str]:
    return {ln.env["seq"]: ln.env["data"]["sealed"] for ln in raw_lines(path) if "sealed" in ln.env["data"]}


def test_after_rotation_the_new_passphrase_alone_reads_old_and_new(tmp_path: Path) -> None:
    with open_store(tmp_path, OLD) as m:
        old_id = m.store("written under the old key")
        m.update(old_id, tags=["t"])
        k0 = key_id(m)
        k1 = m.rotate_key(NEW)
        assert key_id(m) == k1 != k0
        new_id = m.store("written under the new key")
        m.update(old_id, content="updated after the rotation")
        assert m.retrieve(old_id).content == "updated after the rotation"  # type: ignore[union-attr]
    kids = wrapped_kids(tmp_path)
    assert set(kids.values()) == {k0, k1}
    assert max(kids.items())[1] == k1  # the last update re-wrapped the old record's key: new key only
    rotated = [ln.env for ln in raw_lines(tmp_path) if ln.env["type"] == "key_rotated"]
    assert len(rotated) == 1 and rotated[0]["data"]["encryption"]["key_id"] == k1
    assert len(rotated[0]["data"]["wrapped_keys"]) == 1
    with open_store(tmp_path, NEW) as m:
        assert m.retrieve(old_id).content == "updated after the rotation"  # type: ignore[union-attr]
        assert m.retrieve(old_id).tags == ["t"]  # type: ignore[union-attr]
        assert m.retrieve(new_id) is not None
        assert m.as_of(3).retrieve(old_id).content == "written under the old key"  # type: ignore[union-attr]
    with pytest.raises(WrongKeyError, match=k1):
        open_store(tmp_path, OLD)
    with pytest.raises(MissingKeyError):
        open_store(tmp_path, None)


def test_two_rotations_chain_the_escrow(tmp_path: Path) -> None:
    ids = []
    with open_store(tmp_path, OLD) as m:
        ids.append(m.store("zero"))
        m.rotate_key(NEW)
        ids.append(m.store("one"))
    with open_store(tmp_path, NEW) as m:
        m.rotate_key(NEWER)
        ids.append(m.store("two"))
    with open_store(tmp_path, NEWER) as m:
        assert [m.retrieve(i).content for i in ids] == ["zero", "one", "two"]  # type: ignore[union-attr]
        assert len(m._codec.keyring) == 3  # type: ignore[arg-type]


def test_reencrypting_compaction_rewraps_every_key_and_retires_the_old_ones(tmp_path: Path) -> None:
    with open_store(tmp_path, OLD, segment_bytes=2048) as m:
        ids = [m.store(f"record {i} " + "x" * 50) for i in range(20)]
        m.update(ids[0], content="changed")
        k0 = key_id(m)
    with open_store(tmp_path, OLD) as m:
        k1 = m.rotate_key(NEW)
    sealed_before = sealed_blobs(tmp_path)
    with open_store(tmp_path, NEW) as m:
        dry = m.compact(reencrypt=True, dry_run=True)
        assert dry.keys_rewrapped == 21 and dry.escrows_removed == 1 and dry.retired_keys == [k0]
        assert wrapped_kids(tmp_path) and set(wrapped_kids(tmp_path).values()) == {k0}  # dry: nothing changed
        report = m.compact(reencrypt=True)
        assert report.keys_rewrapped == 21 and report.retired_keys == [k0] and report.current_key == k1
        assert k0 not in m._codec.keyring  # type: ignore[operator]
        assert m.retrieve(ids[0]).content == "changed"  # type: ignore[union-attr]
        m.log.verify()
    assert set(wrapped_kids(tmp_path).values()) == {k1}
    assert sealed_blobs(tmp_path) == sealed_before  # payloads untouched: only the DEK wrapping changed
    rotated = [ln.env for ln in raw_lines(tmp_path) if ln.env["type"] == "key_rotated"]
    assert all(not r["data"].get("wrapped_keys") for r in rotated)  # no escrow of the old key left
    assert rotated[-1]["data"]["retired"] == [k0]
    redone = [ln.env for ln in raw_lines(tmp_path) if ln.env.get("dd")]
    assert len(redone) == 21 + 1  # 21 rewrapped lines + 1 KeyRotated without its escrow
    with open_store(tmp_path, NEW) as m:
        assert len(m._codec.keyring) == 1  # type: ignore[arg-type]
        assert len(m.list_all()) == 20
        assert m.compact(reencrypt=True).keys_rewrapped == 0  # idempotent
        m.log.verify()


def test_a_handle_with_the_old_key_cannot_write_after_another_rotated(tmp_path: Path) -> None:
    with open_store(tmp_path, OLD) as stale, open_store(tmp_path, OLD) as rotator:
        stale.store("before")
        rotator.rotate_key(NEW)
        n = stale.log.refresh()
        with pytest.raises(WrongKeyError, match="rotated"):
            stale.store("after")
        assert stale.log.refresh() == n  # nothing written
        rotator.store("rotator still writes")


def test_rotation_needs_an_encrypted_store(tmp_path: Path) -> None:
    with open_store(tmp_path, None) as m:
        with pytest.raises(ConfigurationError, match="not encrypted"):
            m.rotate_key(NEW)
        with pytest.raises(ConfigurationError):
            m.compact(reencrypt=True)


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        cli_main(list(args))
    return int(info.value.code or 0)


def test_cli_rotate_key_then_compact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(tmp_path, OLD) as m:
        rid = m.store("cli record")
    assert run_cli("rotate-key", "--data-dir", str(tmp_path), "--new-key", NEW) == 2  # no current key: a usage error
    assert "needs the current passphrase" in capsys.readouterr().err
    monkeypatch.setenv("IOA_FABRIC_KEY", OLD)
    assert run_cli("rotate-key", "--data-dir", str(tmp_path), "--new-key", NEW, "--json") == 0
    k1 = json.loads(capsys.readouterr().out)["key_id"]
    assert run_cli("compact", "--data-dir", str(tmp_path), "--reencrypt") == 2  # old key: refused as a key error
    assert "does not open this store" in capsys.readouterr().err
    monkeypatch.setenv("IOA_FABRIC_KEY", NEW)
    assert run_cli("compact", "--data-dir", str(tmp_path), "--reencrypt", "--dry-run", "--json") == 0
    assert json.loads(capsys.readouterr().out)["keys_rewrapped"] == 1
    assert run_cli("compact", "--data-dir", str(tmp_path), "--reencrypt") == 0
    assert "retired" in capsys.readouterr().out
    assert set(wrapped_kids(tmp_path).values()) == {k1}
    with open_store(tmp_path, None) as m:  # IOA_FABRIC_KEY=NEW
        assert m.retrieve(rid).content == "cli record"  # type: ignore[union-attr]


def test_cli_rotate_key_prompts_for_the_new_passphrase(tmp_path: Path) -> None:
    """A real subprocess: the current key from the environment, the new one typed twice (real scrypt cost)."""
    with open_store(tmp_path, OLD) as m:
        rid = m.store("prompted")
    out = subprocess.run([sys.executable, "-m", "fabric.cli", "rotate-key", "--data-dir", str(tmp_path)],
                         input=f"{NEW}\n{NEW}\n", capture_output=True, text=True, timeout=120,
                         env=child_env(IOA_FABRIC_KEY=OLD))
    assert out.returncode == 0, out.stderr
    assert NEW not in out.stdout  # not echoed
    with open_store(tmp_path, NEW) as m:
        assert m.retrieve(rid).content == "prompted"  # type: ignore[union-attr]
