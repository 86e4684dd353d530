"""``fabric audit`` (verify, history, log, as-of, report) run as a subprocess on real stores.

The HTML report is rendered by a real headless Chromium, and the screenshot is decoded
(zlib + struct, no imaging library) to check it is a page, not a blank: Chromium is a
test dependency (Debian package ``chromium``); a missing one fails the test.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, segment_files

from fabric import MemoryFabric


def fabric_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric.cli", *args], capture_output=True, text=True, timeout=120,
                          env=child_env())


def ok_json(*args: str) -> Any:
    out = fabric_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("audit") / "store"
    info: dict[str, Any] = {}
    with MemoryFabric(config={"data_dir": str(d), "writer": "agent-1"}) as a, \
            MemoryFabric(config={"data_dir": str(d), "writer": "ingest-2"}) as b:
        info["x"] = a.store("Dana prefers dark mode.\nShe uses a monospace font.", {"user": "dana"}, ["prefs"],
                            "knowledge")
        info["evil"] = b.store("<script>alert('pwned')</script> & <b>bold</b> [/x] [red]", {"src": "<img src=x>"},
                               ["<tag>"])
        info["seq_before_update"] = a.log.refresh()
        a.update(info["x"], content="Dana prefers light mode.\nShe uses a monospace font.", tags=["prefs", "ui"],
                 metadata={"user": "dana", "checked": True})
        info["gone"] = b.store("temporary")
        b.delete(info["gone"])
        a.flush()
        b.flush()
    return d, info


def test_verify_ok(store: tuple[Path, dict[str, Any]]) -> None:
    d, _ = store
    result = ok_json("audit", "verify", "-d", str(d))
    assert result["ok"] and result["events"] == result["last_seq"] == 6 and len(result["head"]) == 64
    human = fabric_cli("audit", "verify", "-d", str(d))
    assert human.returncode == 0 and "chain verified" in human.stdout and result["head"] in human.stdout


def test_verify_damage_exits_4_with_segment_and_offset(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with MemoryFabric(config={"data_dir": str(d), "segment_bytes": 1024}) as f:
        for i in range(30):
            f.store(f"line {i} " + "k" * 50)
    seg = segment_files(d)[1]
    data = seg.read_bytes()
    at = data.index(b"\n") + 1
    word = data.index(b"line", at)
    seg.write_bytes(data[:word] + b"LINE" + data[word + 4:])  # the payload changed, its hash did not
    out = fabric_cli("audit", "verify", "-d", str(d), "--json")
    assert out.returncode == 4
    failure = json.loads(out.stdout)
    assert failure["ok"] is False and failure["segment"] == seg.name and failure["offset"] == at
    human = fabric_cli("audit", "verify", "-d", str(d))
    assert human.returncode == 4 and seg.name in human.stdout and f"byte offset {at}" in human.stdout


def test_verify_damage_in_the_active_segment(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with MemoryFabric(config={"data_dir": str(d)}) as f:
        for i in range(5):
            f.store(f"line {i}")
    seg = segment_files(d)[-1]
    data = bytearray(seg.read_bytes())
    at = data.index(b"\n") + 1
    data[at] = ord("!")
    seg.write_bytes(bytes(data))
    out = fabric_cli("audit", "verify", "-d", str(d), "--json")
    assert out.returncode == 4 and json.loads(out.stdout)["offset"] == at


def test_history_with_diffs(store: tuple[Path, dict[str, Any]]) -> None:
    d, info = store
    result = ok_json("audit", "history", info["x"], "-d", str(d))
    versions = result["versions"]
    assert [v["type"] for v in versions] == ["stored", "updated"]
    assert versions[1]["content_diff"][2:] == ["@@ -1,2 +1,2 @@", "-Dana prefers dark mode.",
                                               "+Dana prefers light mode.", " She uses a monospace font."]
    changes = {c["field"]: (c["old"], c["new"]) for c in versions[1]["changes"]}
    assert changes == {"tags": (["prefs"], ["prefs", "ui"]), "metadata.checked": (None, True)}
    assert versions[1]["writer"] == "agent-1" and versions[1]["record"]["tags"] == ["prefs", "ui"]
    human = fabric_cli("audit", "history", info["x"], "-d", str(d))
    assert human.returncode == 0
    assert "-Dana prefers dark mode." in human.stdout and "+Dana prefers light mode." in human.stdout
    assert "metadata.checked" in human.stdout
    gone = ok_json("audit", "history", info["gone"], "-d", str(d))
    assert [v["type"] for v in gone["versions"]] == ["stored", "deleted"] and gone["versions"][1]["record"] is None


def test_stored_text_is_never_taken_for_markup(store: tuple[Path, dict[str, Any]]) -> None:
    """Rich markup in records ("[/x]") prints as text in every human output, instead of crashing it."""
    d, info = store
    for args in (["audit", "history", info["evil"]], ["audit", "as-of", "now"], ["audit", "log"], ["replay"],
                 ["tail", "--no-follow"], ["list"]):
        out = fabric_cli(*args, "-d", str(d))
        assert out.returncode == 0, (args, out.stderr)
        assert "[/x]" in out.stdout, args


def test_history_of_an_unknown_id_exits_3(store: tuple[Path, dict[str, Any]]) -> None:
    d, _ = store
    out = fabric_cli("audit", "history", "no-such-id", "-d", str(d))
    assert out.returncode == 3 and "no-such-id" in out.stderr


def test_log_filters_by_writer_type_and_time(store: tuple[Path, dict[str, Any]]) -> None:
    d, info = store
    ingest = [json.loads(x) for x in fabric_cli("audit", "log", "-d", str(d), "--writer", "ingest-2",
                                                "--json").stdout.splitlines()]
    assert {e["writer"] for e in ingest} == {"ingest-2"} and {e["type"] for e in ingest} == {"stored", "deleted"}
    last2 = fabric_cli("audit", "log", "-d", str(d), "--last", "2", "--json").stdout.splitlines()
    assert [json.loads(x)["seq"] for x in last2] == [5, 6]
    human = fabric_cli("audit", "log", "-d", str(d), "--type", "deleted", "--since", "1d")
    assert human.returncode == 0 and info["gone"] in human.stdout and "1 event(s)" in human.stdout


def test_as_of_seq_time_and_search(store: tuple[Path, dict[str, Any]]) -> None:
    d, info = store
    before = ok_json("audit", "as-of", str(info["seq_before_update"]), "-d", str(d))
    old = {r["id"]: r for r in before["records"]}
    assert old[info["x"]]["content"].startswith("Dana prefers dark mode.") and before["count"] == 2
    hits = ok_json("audit", "as-of", str(info["seq_before_update"]), "--search", "dark", "-d", str(d))
    assert [r["id"] for r in hits["records"]] == [info["x"]]
    assert ok_json("audit", "as-of", "now", "--search", "dark", "-d", str(d))["records"] == []
    assert ok_json("audit", "as-of", "1d", "-d", str(d))["count"] == 0  # a day ago: nothing yet
    human = fabric_cli("audit", "as-of", "3", "-d", str(d))
    assert human.returncode == 0 and "as of seq 3" in human.stdout


def _png_pixels(data: bytes, rows: int) -> tuple[int, int, list[bytes]]:
    """Width, bytes per pixel, and the first ``rows`` decoded scanlines of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = depth = colour = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat.append(body)
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    rows = min(rows, height)
    raw = zlib.decompress(b"".join(idat))
    prev = bytearray(stride)
    out: list[bytes] = []
    for y in range(rows):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a, b, c = (line[i - bpp] if i >= bpp else 0), prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line))
        prev = line
    return width, bpp, out


def test_report_is_one_safe_page_that_chromium_renders(store: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    d, info = store
    page = tmp_path / "audit.html"
    result = ok_json("audit", "report", "--html", str(page), "-d", str(d))
    assert result["ok"] and result["events"] == 6 and result["records_shown"] == 3
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in text
    assert "&lt;img src=x&gt;" in text and "&lt;tag&gt;" in text and "<b>bold" not in text
    assert "Hash chain verified" in text and info["x"] in text

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is required: apt-get update && apt-get install -y chromium"
    png = tmp_path / "audit.png"
    profile = tmp_path / "chromium-profile"
    shot = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1280,1600",
                           page.as_uri()], capture_output=True, text=True, timeout=90)
    assert png.exists(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert len(data) > 20_000  # a blank 1280x1600 page compresses to a few KB
    width, bpp, rows = _png_pixels(data, 700)
    assert width == 1280
    colours = {row[x:x + 3] for row in rows[::4] for x in range(0, width * bpp, bpp * 4)}
    assert len(colours) > 50, f"only {len(colours)} distinct colours: is the page blank?"
    green_banner = {c for c in colours if c[1] > 140 and c[0] < 90 and c[2] < 110}
    assert green_banner, "the verified banner (green) is not on the screenshot"


def test_report_on_broken_chain_exits_4(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with MemoryFabric(config={"data_dir": str(d)}) as f:
        f.store("one")
        f.store("two")
    seg = segment_files(d)[-1]
    data = seg.read_bytes()
    seg.write_bytes(data.replace(b'"two"', b'"TWO"'))
    out = fabric_cli("audit", "report", "--html", str(tmp_path / "r.html"), "-d", str(d))
    assert out.returncode == 4
    assert "BROKEN" in (tmp_path / "r.html").read_text()


def test_audit_errors(tmp_path: Path) -> None:
    for args in (["verify"], ["history", "x"], ["log"], ["as-of", "1"], ["report", "--html", str(tmp_path / "r")]):
        out = fabric_cli("audit", *args, "-d", str(tmp_path / "missing"))
        assert out.returncode == 2 and "does not exist" in out.stderr, args
    assert fabric_cli("audit", "as-of", "when pigs fly", "-d", str(tmp_path)).returncode == 2
    assert "Traceback" not in fabric_cli("audit", "verify", "-d", str(tmp_path)).stderr
