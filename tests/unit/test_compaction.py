"""Compaction and the log's sealed-segment rewrite it stands on: atomic, chain-preserving, lock-holding."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import raw_lines, segment_files

from fabric import MemoryFabric, crypto
from fabric.cli import main as cli_main
from fabric.errors import ChainBrokenError, LogWriteError
from fabric.events import Forgotten, encode_payload
from fabric.forget import REDACTED
from fabric.log import Envelope, EventLog, data_digest

KEY = "compaction passphrase"


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "SCRYPT_N", 2**4)
    for var in ("IOA_FABRIC_KEY", "IOA_FABRIC_ROOT", "IOA_FABRIC_BACKEND"):
        monkeypatch.delenv(var, raising=False)


def open_store(path: Path, key: str | None = None, **config: Any) -> MemoryFabric:
    return MemoryFabric(config={"data_dir": str(path), **config}, encryption_key=key)


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def sealed_log(path: Path, n: int = 6) -> EventLog:
    log = EventLog(path)
    for i in range(n):
        log.append([("stored", f"r{i}", b'{"content":"secret %d"}' % i)])
    log.seal_segment()
    return log


# --- EventLog.rewrite_sealed_segment ------------------------------------------------------------


def test_rewrite_changes_only_the_chosen_payloads_and_the_chain_verifies(tmp_path: Path) -> None:
    log = sealed_log(tmp_path)
    before = raw_lines(tmp_path)
    first = log.segments()[0]
    changed = log.rewrite_sealed_segment(first, lambda env: REDACTED if env.id == "r2" else None)
    assert changed == 1
    after = raw_lines(tmp_path)
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        if old.env["id"] == "r2":
            assert new.env["data"] == {} and new.env["dd"] == data_digest(json.dumps(old.env["data"],
                                                                                   separators=(",", ":")).encode())
            assert {k: v for k, v in new.env.items() if k not in ("data", "dd")} == \
                   {k: v for k, v in old.env.items() if k != "data"}
        else:
            assert new.raw == old.raw  # byte for byte
    log.verify()
    # a second rewrite of a rewritten line keeps the digest of the ORIGINAL payload
    assert log.rewrite_sealed_segment(first, lambda env: b'{"x":1}' if env.id == "r2" else None) == 1
    assert [ln.env["dd"] for ln in raw_lines(tmp_path) if ln.env["id"] == "r2"] == \
           [ln.env["dd"] for ln in after if ln.env["id"] == "r2"]
    log.verify()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".rewrite")]
    log.close()


def test_rewrite_refuses_a_line_that_was_altered_and_writes_nothing(tmp_path: Path) -> None:
    log = sealed_log(tmp_path)
    seg = segment_files(tmp_path)[0]
    seg.write_bytes(seg.read_bytes().replace(b"secret 3", b"secret 9"))  # hash no longer matches
    before = snapshot(tmp_path)
    with pytest.raises(ChainBrokenError, match="altered"):
        log.rewrite_sealed_segment(log.segments()[0], lambda env: REDACTED if env.id == "r3" else None)
    assert snapshot(tmp_path) == before
    log.close()


def test_a_failed_rewrite_leaves_the_segment_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = sealed_log(tmp_path)
    before = snapshot(tmp_path)

    def broken(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(LogWriteError, match="unchanged"):
        log.rewrite_sealed_segment(log.segments()[0], lambda env: REDACTED)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before  # and no temp file left behind
    log.close()


def test_rewrite_is_durable_temp_fsync_rename_fsync_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = sealed_log(tmp_path)
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("rename"), real_replace(a, b))[1])
    log.rewrite_sealed_segment(log.segments()[0], lambda env: REDACTED if env.id == "r1" else None)
    assert calls == ["fsync", "rename", "fsync"]
    log.close()


def test_a_reader_handle_keeps_reading_after_a_rewrite(tmp_path: Path) -> None:
    log = sealed_log(tmp_path, 50)
    reader = EventLog(tmp_path)
    assert [e.seq for e in reader.read(40, 45)] == list(range(40, 46))  # remembers positions in segment 1
    log.rewrite_sealed_segment(log.segments()[0], lambda env: REDACTED if env.seq < 30 else None)
    assert [e.seq for e in reader.read(46)] == list(range(46, log.last_seq + 1))
    assert [e.seq for e in reader.read(40, 45)] == list(range(40, 46))
    reader.verify()
    reader.close()
    log.close()


# --- compaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, KEY], ids=["plaintext", "encrypted"])
def test_compaction_erases_what_a_forgotten_event_left_behind(tmp_path: Path, key: str | None) -> None:
    with open_store(tmp_path, key) as m:
        rid = m.store("left behind by a crash")
        keep = m.store("kept")
        # a Forgotten appended without the rewrite that should follow it (a crash in between)
        m._append([(rid, Forgotten(reason="crash test"))])
        assert m.retrieve(rid) is None
        dry = m.compact(dry_run=True)
        assert dry.lines_redacted == 1
        n = m.log.last_seq
        report = m.compact()
        assert report.lines_redacted == 1 and report.segments_rewritten == 1
        assert m.compact().lines_redacted == 0  # idempotent
        m.log.verify()
        assert [r.id for r in m.list_all()] == [keep]
    assert all(b"left behind" not in data for data in snapshot(tmp_path).values())
    assert n + 1 == max(ln.env["seq"] for ln in raw_lines(tmp_path))  # one SegmentSealed, nothing else


def test_compaction_with_nothing_to_do_writes_nothing(tmp_path: Path) -> None:
    with open_store(tmp_path, KEY) as m:
        m.store("x")
        m.flush()
        before = snapshot(tmp_path)
        report = m.compact(reencrypt=True)
        assert (report.lines_redacted, report.keys_rewrapped, report.segments_rewritten) == (0, 0, 0)
        assert report.retired_keys == []
    assert snapshot(tmp_path) == before


def test_dry_run_changes_no_byte(tmp_path: Path) -> None:
    with open_store(tmp_path, KEY) as m:
        rid = m.store("x")
        m._append([(rid, Forgotten())])
        m.rotate_key("another")
        m.flush()
        before = snapshot(tmp_path)
        report = m.compact(reencrypt=True, dry_run=True)
        assert report.dry_run and report.lines_redacted == 1 and report.escrows_removed == 1
    assert snapshot(tmp_path) == before


def test_cli_compact_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(tmp_path) as m:
        rid = m.store("cli compaction")
        m._append([(rid, Forgotten())])
    with pytest.raises(SystemExit) as info:
        cli_main(["compact", "--data-dir", str(tmp_path), "--json"])
    assert info.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lines_redacted"] == 1 and out["dry_run"] is False
    with pytest.raises(SystemExit) as info:
        cli_main(["compact", "--data-dir", str(tmp_path), "--reencrypt"])
    assert info.value.code == 2  # not an encrypted store: a usage error
    assert "needs an encrypted store" in capsys.readouterr().err


def test_envelope_round_trip_of_a_rewritten_line(tmp_path: Path) -> None:
    log = sealed_log(tmp_path, 2)
    log.rewrite_sealed_segment(log.segments()[0], lambda env: encode_payload(Forgotten()) if env.id == "r0" else None)
    env = next(e for e in log.read() if e.id == "r0")
    assert isinstance(env, Envelope) and env.dd is not None
    assert msgspec.json.decode(bytes(env.data)) == {}
    log.close()


def test_a_remembered_position_past_the_end_of_a_shrunk_segment_is_not_trusted(tmp_path: Path) -> None:
    """A reader remembers where seq 11 starts; a rewrite then shrinks the segment below that offset.
    The reader must not take "end of file" there for "nothing more in this segment"."""
    log = EventLog(tmp_path)
    for i in range(9):
        log.append([("stored", f"r{i}", b'{"content":"%s"}' % (b"x" * 1000))])
    reader = EventLog(tmp_path)
    assert [e.seq for e in reader.read(1)] == list(range(1, 11))  # remembers the position of seq 11
    log.append([("forgotten", "r0", b'{"reason":"a"}')])
    log.seal_segment()
    assert log.rewrite_sealed_segment(log.segments()[0], lambda env: REDACTED if env.type == "stored" else None) == 9
    assert [e.seq for e in reader.read(11)] == [11, 12]
    assert [e.type for e in reader.read(11)] == ["forgotten", "segment_sealed"]
    reader.close()
    log.close()
