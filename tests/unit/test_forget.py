"""Forgetting: the record leaves every view and the log, the chain still verifies, history says when.

Proved by searching every byte of every file under data_dir (segments, view databases,
their WAL and shared-memory files, free pages) for the forgotten text and, in encrypted
stores, for the record's data key in every form it ever had. Both plaintext and
encrypted stores, every backend with a local view.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import raw_lines, segment_files

from fabric import MemoryFabric, crypto
from fabric.cli import main as cli_main
from fabric.crypto_codec import EncryptedCodec
from fabric.errors import LogError, ReadOnlyError
from fabric.forget import REDACTED, find_lines, id_needle, is_redacted
from fabric.log import EventLog, data_digest, envelope_hash

KEY = "forget-me passphrase"
SECRET = "Dana lives at 42 Wallaby Way"
META = "meta-needle-71d0"
TAG = "tag-needle-c3a9"
BACKENDS = ["local_jsonl"] + (["sqlite"] if importlib.util.find_spec("projections.sqlite_fts") else [])


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "SCRYPT_N", 2**4)
    for var in ("IOA_FABRIC_KEY", "IOA_FABRIC_ROOT", "IOA_FABRIC_BACKEND"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(params=[None, KEY], ids=["plaintext", "encrypted"])
def key(request: pytest.FixtureRequest) -> str | None:
    value: str | None = request.param
    return value


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def open_store(path: Path, key: str | None, backend: str = "local_jsonl", **config: Any) -> MemoryFabric:
    return MemoryFabric(backend=backend, config={"data_dir": str(path), **config}, encryption_key=key)


def every_file(root: Path) -> Iterator[tuple[Path, bytes]]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            yield p, p.read_bytes()


def find_anywhere(root: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
    return [(str(p), n) for p, data in every_file(root) for n in needles if n in data]


def key_material(data_dir: Path, rid: str, key: str | None) -> list[bytes]:
    """Every on-disk form of the record's data key and ciphertext (wrapped, raw, base64)."""
    if key is None:
        return []
    out: list[bytes] = []
    with open_store(data_dir, key) as m:
        codec = m._codec
        assert isinstance(codec, EncryptedCodec)
        for line in raw_lines(data_dir):
            env = line.env
            if env["id"] != rid or "dek" not in env["data"]:
                continue
            wrapped = base64.b64decode(env["data"]["dek"])
            dek = crypto.unwrap_data_key(codec.keyring, rid, wrapped)
            out += [env["data"]["dek"].encode(), env["data"]["sealed"].encode(), wrapped, dek,
                    base64.b64encode(dek), dek.hex().encode()]
    assert out, "the record should have had a key"
    return out


def test_forget_erases_the_record_from_views_and_log(tmp_path: Path, key: str | None, backend: str) -> None:
    with open_store(tmp_path, key, backend) as m:
        keep = m.store("keep this one about a wallaby", {"k": 1}, ["keep"])
        rid = m.store(SECRET, {"where": META}, [TAG], "knowledge")
        m.update(rid, content=SECRET + " (updated)", metadata={"where": META, "v": 2})
        m.retrieve(rid)
        m.flush()
        before = m.log.last_seq
        assert m.search("Wallaby")
    needles = [SECRET.encode(), b"Wallaby Way", META.encode(), TAG.encode()]
    material = key_material(tmp_path, rid, key)
    if key is None:
        assert find_anywhere(tmp_path, needles)  # the premise: it was on disk
    with open_store(tmp_path, key, backend) as m:
        assert m.forget(rid, reason="GDPR request 17") is True
        assert m.retrieve(rid) is None
        assert [r.id for r in m.search("wallaby")] == [keep]
        assert m.count() == 1
        for seq in range(0, m.log.last_seq + 1):  # no point of history brings it back
            assert m.as_of(seq).retrieve(rid) is None
        assert m.as_of(before).retrieve(keep) is not None
        report = m.log.verify()
        assert report.last_seq == m.log.last_seq
        history = m.history(rid)
        assert [(h["type"], h["erased"]) for h in history] == [
            ("stored", True), ("updated", True), ("accessed", True), ("forgotten", False)]
        assert history[-1]["reason"] == "GDPR request 17" and history[-1]["time"] >= history[0]["time"]
    assert find_anywhere(tmp_path, needles + material) == []
    with open_store(tmp_path, key, backend) as m:  # reopened: still gone, still verifies
        assert m.retrieve(rid) is None and m.retrieve(keep) is not None
        m.log.verify()
    # history keeps that it happened, when, and to which id
    lines = [ln.env for ln in raw_lines(tmp_path) if ln.env["id"] == rid]
    assert [e["type"] for e in lines] == ["stored", "updated", "accessed", "forgotten"]
    assert lines[-1]["data"] == {"reason": "GDPR request 17"} and lines[-1]["ts"] > lines[0]["ts"]
    for e in lines[:-1]:
        assert e["data"] == {} and len(e["dd"]) == 64


def test_redacted_lines_keep_the_chain_verifiable(tmp_path: Path, key: str | None) -> None:
    with open_store(tmp_path, key) as m:
        rid = m.store(SECRET)
        original = {ln.env["seq"]: ln.raw for ln in raw_lines(tmp_path)}
        m.forget(rid)
        log = m.log
        redacted = [env for env in log.read() if env.dd is not None]
        assert [env.id for env in redacted] == [rid]
        env = redacted[0]
        assert is_redacted(env) and bytes(env.data) == REDACTED
        assert env.dd == data_digest(_data_of(original[env.seq]))
        assert envelope_hash(env) == env.hash
        log.verify()


def _data_of(raw: bytes) -> bytes:
    import msgspec

    from fabric.log import Envelope

    return bytes(msgspec.json.decode(raw, type=Envelope).data)


def test_delete_keeps_history_forget_erases_it(tmp_path: Path, key: str | None) -> None:
    with open_store(tmp_path, key) as m:
        rid = m.store(SECRET)
        seq = m.log.last_seq
        assert m.delete(rid)
        assert m.retrieve(rid) is None
        assert m.as_of(seq).retrieve(rid).content == SECRET  # type: ignore[union-attr]
        assert m.forget(rid) is True  # a deleted record can be forgotten: its history goes
        assert m.as_of(seq).retrieve(rid) is None
    assert find_anywhere(tmp_path, [SECRET.encode()]) == []


def test_forget_unknown_or_twice(tmp_path: Path, key: str | None) -> None:
    with open_store(tmp_path, key) as m:
        assert m.forget("never-was") is False
        rid = m.store(SECRET)
        assert m.forget(rid) is True
        n = m.log.last_seq
        assert m.forget(rid) is False
        assert m.log.last_seq == n  # nothing appended
        with pytest.raises(ReadOnlyError):
            m.as_of(n).forget(rid)  # type: ignore[attr-defined]


def test_an_id_stored_again_after_forget_is_a_new_record(tmp_path: Path, key: str | None) -> None:
    with open_store(tmp_path, key) as m:
        m.store("first life " + SECRET, record_id="same")
        m.forget("same")
        m.store("second life", record_id="same")
        m.update("same", tags=["again"])
        assert m.retrieve("same").content == "second life"  # type: ignore[union-attr]
    with open_store(tmp_path, key) as m:
        assert m.retrieve("same").tags == ["again"]  # type: ignore[union-attr]
        assert m.forget("same") is True
        assert m.retrieve("same") is None
    assert find_anywhere(tmp_path, [b"first life", b"second life", b"again"]) == []


def test_a_forget_cut_short_by_a_crash_is_finished_later(tmp_path: Path, key: str | None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from fabric import forget as forgetting

    with open_store(tmp_path, key) as m:
        a = m.store(SECRET)
        b = m.store(SECRET + " b")

        def crash(*args: Any) -> int:
            raise KeyboardInterrupt("power cut")

        monkeypatch.setattr(forgetting, "redact", crash)
        with pytest.raises(KeyboardInterrupt):
            m.forget(a)
        with pytest.raises(KeyboardInterrupt):
            m.forget(b)
        monkeypatch.undo()
        assert m.retrieve(a) is None  # the Forgotten event is there: views dropped it
        assert find_anywhere(tmp_path, [SECRET.encode()]) or key is not None
        assert m.forget(a) is False  # already forgotten, but the erasure gets finished
        report = m.compact()  # and compaction finishes every pending one
        assert report.lines_redacted == 1
        m.log.verify()
    assert find_anywhere(tmp_path, [SECRET.encode()]) == []


def test_rewriting_the_active_segment_is_refused(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        with pytest.raises(LogError, match="active"):
            log.rewrite_sealed_segment(log.segments()[-1], lambda env: REDACTED)


def test_other_handles_keep_reading_and_writing_across_a_forget(tmp_path: Path, key: str | None) -> None:
    """A second handle's current segment is sealed and rewritten under it; it must move on, not
    write into the replaced file, and its remembered read positions must not mislead it."""
    with open_store(tmp_path, key, durability="none") as a, open_store(tmp_path, key, durability="none") as b:
        victims = [a.store(f"{SECRET} {i}") for i in range(5)]
        ids = [b.store(f"b record {i}") for i in range(5)]
        assert b.retrieve(victims[0]) is not None  # b has read positions in the segment
        for v in victims:
            a.forget(v)
        ids += [b.store(f"b record after {i}") for i in range(5)]  # b writes on
        assert all(b.retrieve(v) is None for v in victims)
        assert {r.id for r in a.list_all()} == set(ids) == {r.id for r in b.list_all()}
        a.log.verify()
        b.log.verify()
    assert find_anywhere(tmp_path, [SECRET.encode()]) == []


def test_forget_while_others_write(tmp_path: Path, key: str | None) -> None:
    with open_store(tmp_path, key, segment_bytes=4096) as m:
        victims = [m.store(f"{SECRET} {i}") for i in range(30)]
    stop = threading.Event()
    written: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with open_store(tmp_path, key, segment_bytes=4096) as w:
                while not stop.is_set():
                    written.append(w.store("concurrent " + "x" * 100))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        with open_store(tmp_path, key, segment_bytes=4096) as m:
            for v in victims:
                assert m.forget(v)
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors
    with open_store(tmp_path, key) as m:
        m.log.verify()
        assert m.count() == len(written)
    assert find_anywhere(tmp_path, [SECRET.encode()]) == []


def test_find_lines_is_exact(tmp_path: Path) -> None:
    with open_store(tmp_path, None) as m:
        m.store('looks like "id":"r1","data": inside content', record_id="r2")
        m.store("one", record_id="r1")
        hits = [env for env in find_lines(m.log, id_needle("r1")) if env.id == "r1"]
        assert [env.type for env in hits] == ["stored"]
    assert len(segment_files(tmp_path)) == 1


def test_cli_forget(tmp_path: Path, key: str | None, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    if key is not None:
        monkeypatch.setenv("IOA_FABRIC_KEY", key)
    with open_store(tmp_path, None) as m:
        rid = m.store(SECRET)
    before = {p: d for p, d in every_file(tmp_path)}

    def run(*args: str) -> int:
        with pytest.raises(SystemExit) as info:
            cli_main(list(args))
        return int(info.value.code or 0)

    assert run("forget", rid, "--data-dir", str(tmp_path), "--dry-run", "--json") == 0
    out = capsys.readouterr().out
    assert '"events_to_erase":1' in out and '"forgotten":false' in out
    assert {p: d for p, d in every_file(tmp_path)} == before  # a dry run changes nothing
    assert run("forget", rid, "--data-dir", str(tmp_path), "--reason", "asked") == 0
    assert "forgotten" in capsys.readouterr().out
    assert run("forget", rid, "--data-dir", str(tmp_path)) == 0
    assert "already forgotten" in capsys.readouterr().out
    assert run("forget", "nope", "--data-dir", str(tmp_path)) == 3
    assert find_anywhere(tmp_path, [SECRET.encode()]) == []


WRITER = """
import os, sys
from fabric import MemoryFabric
path, key, stop = sys.argv[1], sys.argv[2] or None, sys.argv[3]
i = 0
with MemoryFabric(config={"data_dir": path, "segment_bytes": 4096}, encryption_key=key) as m:
    while not os.path.exists(stop) or i < 50:
        m.store(f"process record {i} " + "y" * 80)
        if i % 25 == 0:
            m.search("process")  # reads too: replays what the other process rewrote
        i += 1
print(i)
"""


def test_forget_while_another_process_writes_and_reads(tmp_path: Path, key: str | None) -> None:
    import subprocess
    import sys
    import time

    from helpers import child_env

    data = tmp_path / "store"
    stop = tmp_path / "stop"
    with open_store(data, key, segment_bytes=4096) as m:
        victims = [m.store(f"{SECRET} {i} " + "z" * 80) for i in range(25)]
        base = m.log.last_seq
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(data), key or "", str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        with open_store(data, key, segment_bytes=4096) as m:
            deadline = time.monotonic() + 60
            while m.log.refresh() < base + 20 and time.monotonic() < deadline:
                time.sleep(0.01)  # the writer is under way
            for v in victims:
                assert m.forget(v)
            during = m.log.refresh() - base
    finally:
        stop.touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    written = int(out)
    assert during >= 20 + 25  # writes and forgets did interleave
    with open_store(data, key) as m:
        m.log.verify()
        assert m.count() == written
    assert find_anywhere(data, [SECRET.encode()]) == []
