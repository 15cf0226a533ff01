"""The tutorials run as written: every ```python block of docs/tutorial.md and docs/tutorial.ko.md,
in order, in one namespace per file, prints exactly the ```text block shown right under it.

``python tests/test_tutorial.py --update`` rewrites those output blocks from a fresh run (then read
the diff: a changed number is a changed claim in the prose).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
FILES = ("tutorial.md", "tutorial.ko.md")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def blocks(text: str) -> list[tuple[str, str, re.Match | None]]:
    """(code, expected output, the output block's match or None) for every python block."""
    fences = list(FENCE.finditer(text))
    out = []
    for k, f in enumerate(fences):
        if f.group(1) != "python":
            continue
        nxt = fences[k + 1] if k + 1 < len(fences) else None
        follows = nxt is not None and nxt.group(1) == "text" and not text[f.end():nxt.start()].strip()
        out.append((f.group(2), nxt.group(2) if follows else "", nxt if follows else None))
    return out


def run_blocks(path: Path) -> list[tuple[str, str, str, re.Match | None]]:
    """Run every python block of ``path`` in one namespace: (code, expected, printed, match)."""
    namespace: dict = {"__name__": "__tutorial__"}
    results = []
    for code, expected, match in blocks(path.read_text(encoding="utf-8")):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, str(path), "exec"), namespace)  # noqa: S102 - the tutorial is our own code
        results.append((code, expected, buf.getvalue(), match))
    return results


@pytest.fixture(autouse=True)
def pure_pytorch_backend():
    """The same numbers on every machine: the pure-PyTorch recurrences, not a compiled kernel."""
    from lstmkit.kernels import backend
    with backend("torch"):
        yield


@pytest.mark.parametrize("name", FILES)
def test_every_code_block_prints_what_the_tutorial_shows(name):
    results = run_blocks(DOCS / name)
    assert len(results) >= 8, f"{name}: expected the tutorial's code blocks, found {len(results)}"
    for code, expected, printed, _ in results:
        assert printed == expected, f"{name}: the block\n{code}\nprinted\n{printed}\nbut the file shows\n{expected}"


def test_both_tutorials_run_the_same_code():
    """The Korean and the English tutorial are twins: the same code (comments aside), the same outputs."""
    def strip(code: str) -> str:
        return "\n".join(line.split("#")[0].rstrip() for line in code.splitlines())
    ko, en = (blocks((DOCS / n).read_text(encoding="utf-8")) for n in ("tutorial.ko.md", "tutorial.md"))
    assert [strip(c) for c, *_ in ko] == [strip(c) for c, *_ in en]
    assert [o for _, o, _ in ko] == [o for _, o, _ in en]


def update(path: Path) -> None:
    """Rewrite the output blocks of ``path`` with what its code prints now."""
    text = path.read_text(encoding="utf-8")
    for _, _, printed, match in reversed(run_blocks(path)):
        if match is None:
            raise SystemExit(f"{path}: a python block has no ```text block under it")
        text = text[:match.start(2)] + printed + text[match.end(2):]
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__" and "--update" in sys.argv:
    from lstmkit.kernels import backend
    with backend("torch"):
        for name in FILES:
            update(DOCS / name)
