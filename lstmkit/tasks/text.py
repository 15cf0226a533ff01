"""Character-level language model on a UTF-8 text file; scored in bits per character.

The default corpus is the Python standard library's own ``.py`` files on this machine (no
download), read in sorted order up to ``--size`` characters. The text is cut into examples of
``--length`` + 1 characters (input: all but the last; target: all but the first); the first 80%
train, the next 10% validate, the last 10% test. Characters seen in training form the vocabulary;
id 0 stands for any other character.
"""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import torch
from torch import Tensor

from .base import Split, Task, TaskError

UNK = "\ufffd"


def read_text(path: str) -> str:
    """The file's text; missing, empty or non-UTF-8 files raise ``TaskError``."""
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"--data {path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskError(f"--data {path} is not UTF-8 text (bad byte at offset {e.start}): "
                        "convert it, e.g. `iconv -t UTF-8`") from None
    if not text.strip():
        raise TaskError(f"--data {path} is empty: give a text file with some content")
    return text


def stdlib_corpus(limit: int) -> str:
    """Python's own standard library sources, sorted by name, up to ``limit`` characters."""
    parts, total = [], 0
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
        total += len(parts[-1])
        if total >= limit:
            break
    if not parts:
        raise TaskError("no Python standard library sources found: give a text file with --data")
    return "".join(parts)


class TextTask(Task):
    name = "text"
    head, loss = "every", "ce"
    metric, higher_is_better = "bits_per_char", False
    option_names = ("data", "length", "size")
    defaults = {"steps": 2000, "hidden_size": 256, "embed_size": 64, "lr": 3e-3, "batch_size": 32,
                "eval_every": 100}
    quick_options = {"length": 32, "size": 20000}

    def __init__(self, options: dict, seed: int) -> None:
        super().__init__(options, seed)
        self.path = self.opt("data", None)
        self.length = self.opt("length", 128, minimum=2)
        self.size = self.opt("size", 1_000_000, minimum=100)
        self._text: str | None = None
        self._vocab: list[str] | None = None     # read from the text only when first needed

    @property
    def vocab(self) -> list[str]:
        """UNK, then the characters of the training part (the first 80%) of the text."""
        if self._vocab is None:
            text = self.text()
            self.restore_vocab(sorted(set(text[:int(len(text) * 0.8)])))
        return self._vocab

    @property
    def output_size(self) -> int:
        return len(self.vocab)

    def text(self) -> str:
        if self._text is None:
            self._text = (read_text(self.path) if self.path is not None else stdlib_corpus(self.size))[:self.size]
        return self._text

    def restore_vocab(self, chars: list[str]) -> None:
        """Use a saved vocabulary, so a run generates without its corpus at hand."""
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise TaskError("vocab.json is not a list of single characters: the run folder is damaged")
        self._vocab = [UNK] + [c for c in chars if c != UNK]

    def ids(self, text: str) -> Tensor:
        index = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([index.get(c, 0) for c in text], dtype=torch.int64)

    def build(self) -> tuple[Split, Split, Split]:
        ids = self.ids(self.text())
        L = self.length + 1
        n = len(ids) // L
        if n < 10:
            raise TaskError(f"the text has {len(ids)} characters: too few for 10 examples of --length "
                            f"{self.length}; give a longer text or a smaller --length")
        chunks = ids[:n * L].view(n, L)
        cut1, cut2 = int(n * 0.8), int(n * 0.9)
        return tuple(Split(c[:, :-1], c[:, 1:], torch.full((len(c),), L - 1, dtype=torch.int64))
                     for c in (chunks[:cut1], chunks[cut1:cut2], chunks[cut2:]))

    def metrics(self, out: Tensor, data: Split) -> dict[str, float]:
        nll = torch.nn.functional.cross_entropy(out.flatten(0, 1), data.y.flatten())
        return {"bits_per_char": float(nll) / math.log(2)}

    def summary(self, scores: dict[str, float]) -> str:
        return (f"{scores['bits_per_char']:.3f} bits per character (uniform guess over "
                f"{len(self.vocab)} characters: {math.log2(len(self.vocab)):.2f})")
