"""A trained run's model on new input: ``load`` a run folder whose files agree, ``generate`` text
from a ``text`` run, ``predict`` the answer of a sentence, classify or forecast run.

What it is: the library behind ``lstmkit evaluate | generate | predict`` (the command line only
parses and checks the options, then calls these).
What it is not: training (``lstmkit.train``) or the reading of run folders (``lstmkit.runs``).
"""

from __future__ import annotations

import sys

import torch

from lstmkit.errors import RunError, UsageError
from lstmkit.runs import LoadedRun, load_run


def load(run: str) -> LoadedRun:
    """``load_run``, then refuse a run whose files do not belong together (vocab.json vs the model)."""
    loaded = load_run(run)
    task, model = loaded.task, loaded.config["model"]
    vocab = task.vocab
    if vocab is not None and model["vocab_size"] and (
            model["vocab_size"] != len(vocab) or (task.head == "every" and model["output_size"] != len(vocab))):
        raise RunError(f"{run}: its vocabulary has {len(vocab)} entries (vocab.json) but its model was built "
                       f"for {model['vocab_size']} (config.json): the run folder's files do not belong together")
    classes = getattr(task, "classes", None)
    if classes is not None and len(classes) != model["output_size"]:
        raise RunError(f"{run}: config.json names {len(classes)} classes but the model has {model['output_size']} "
                       "outputs: the run folder is damaged")
    return loaded


@torch.no_grad()
def generate(loaded: LoadedRun, prompt: str, length: int, temperature: float, seed: int) -> str:
    """``prompt`` followed by ``length`` characters sampled from a text run's model."""
    if loaded.config["task"] != "text":
        raise UsageError(f"generate needs a run of task text, this one is {loaded.config['task']!r}: "
                         "use `lstmkit predict`")
    task, model = loaded.task, loaded.model
    index = {c: i for i, c in enumerate(task.vocab)}
    unknown = sorted({c for c in prompt if c not in index})
    if unknown:
        print(f"lstmkit: note: {len(unknown)} prompt character(s) not in the run's vocabulary, read as "
              f"unknown: {''.join(unknown)!r}", file=sys.stderr)
    ids = [index.get(c, 0) for c in prompt] or [0]  # no prompt: start from the unknown-character id
    g = torch.Generator().manual_seed(seed)
    logits, state = model.stream(torch.tensor([ids]))  # (1, T, V): read the prompt once
    out = []
    for _ in range(length):  # then one step at a time, carrying the recurrent state
        nxt = int(torch.multinomial((logits[0, -1] / temperature).softmax(-1), 1, generator=g))
        out.append(task.vocab[nxt])
        logits, state = model.stream(torch.tensor([[nxt]]), state)
    return prompt + "".join(out)


@torch.no_grad()
def predict(loaded: LoadedRun, text: str) -> str:
    """The model's answer for one input, as the task writes it."""
    example = loaded.task.encode(text)
    return loaded.task.decode(loaded.model(example.x, example.lengths))
