"""The README's Python examples run, in a fresh directory, exactly as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_examples() -> None:
    assert BLOCKS, "README.md should show the API in at least one python block"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("IOA_FABRIC_BACKEND", "IOA_FABRIC_ROOT", "IOA_FABRIC_KEY", "IOA_FABRIC_DURABILITY"):
        monkeypatch.delenv(var, raising=False)
    code = compile(BLOCKS[index], f"README.md[python block {index}]", "exec")
    exec(code, {"__name__": f"readme_{index}"})
