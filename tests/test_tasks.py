"""Each task's data checked against the task's definition (not against the generator's own code)."""

import math
import random
import re

import pytest
import torch

from lstmkit.tasks import TaskError, make_task
from lstmkit.tasks.adding import make_adding
from lstmkit.tasks.base import IGNORE
from lstmkit.tasks.copy import make_copy
from lstmkit.tasks.reber import SYMBOLS, accepts, embedded_reber
from lstmkit.tasks.sentence import CUE, EVENTS, FILLERS, MOODS, PLACES, SentenceTask
from lstmkit.tasks.temporal_order import make_temporal_order

# The embedded Reber language as a regular expression, derived by hand from the graph
# (state elimination), independent of the generator's walk.
R3 = r"(?:T*VPX)*T*V(?:V|PS)"  # from state 3 to the end state
REBER = rf"B(?:TS*X(?:S|X{R3})|P{R3})E"
EMBEDDED = re.compile(rf"^B(?:T{REBER}T|P{REBER}P)E$")


def words(task, split, n):
    return [task.vocab[i] for i in split.x[n, :split.lengths[n]].tolist()]


def test_sentence_structure_follows_the_definition():
    task = SentenceTask({"distance": 17, "size": 200}, seed=3)
    train, _, test = task.build()
    openings = {}  # every allowed opening clause -> its mood, built from the definition
    for mood, events in EVENTS.items():
        for e in map(str.split, events):
            openings[tuple(e)] = mood
            for p in PLACES:
                openings[tuple(e[:-1] + p.split() + e[-1:])] = mood
    filler_words = {w for f in FILLERS for w in f.split()}
    for split in (train, test):
        for n in range(len(split)):
            w = words(task, split, n)
            assert w[-4:] == CUE
            filler = w[-4 - 17:-4]
            assert len(filler) == 17 and set(filler) <= filler_words
            assert MOODS[int(split.y[n])] == openings[tuple(w[:-4 - 17])]


def test_sentence_has_five_moods_dozens_of_clauses_and_a_held_out_seed():
    assert len(MOODS) >= 4 and sum(len(e) for e in EVENTS.values()) >= 36 and len(FILLERS) >= 24
    task = SentenceTask({"distance": 5, "size": 400}, seed=0)
    train, val, test = task.build()
    assert not torch.equal(train.x[:len(test)], test.x[:, :train.x.shape[1]])
    counts = torch.bincount(train.y, minlength=5).float() / len(train)
    assert counts.min() > 0.12  # every mood is common


def test_adding_target_is_the_sum_of_the_two_marked_values():
    d = make_adding(500, 30, seed=1)
    values, marks = d.x[..., 0], d.x[..., 1]
    assert torch.all(marks.sum(1) == 2)
    assert torch.all(marks[:, :3].sum(1) >= 1)  # one mark in the first tenth
    assert torch.all(marks[:, 15:].sum(1) == 0)  # both in the first half
    for n in range(500):
        i, j = marks[n].nonzero().flatten().tolist()
        assert math.isclose(float(d.y[n, 0]), float(values[n, i] + values[n, j]), rel_tol=1e-6)


def test_copy_targets_repeat_the_ten_symbols_after_the_delimiter():
    T = 15
    d = make_copy(50, T, seed=2)
    assert d.x.shape == (50, T + 20)
    assert torch.all((d.x[:, :10] >= 1) & (d.x[:, :10] <= 8))
    assert torch.all(d.x[:, T + 9] == 9) and torch.all(d.x[:, 10:T + 9] == 0) and torch.all(d.x[:, T + 10:] == 0)
    assert torch.equal(d.y[:, T + 10:], d.x[:, :10]) and torch.all(d.y[:, :T + 10] == 0)
    task = make_task("copy", {"length": T}, 0)
    assert math.isclose(task.baseline(), 10 * math.log(8) / (T + 20))


def test_reber_strings_are_accepted_by_the_grammar_and_targets_are_legal():
    rng = random.Random(0)
    strings = [embedded_reber(rng) for _ in range(300)]
    assert all(EMBEDDED.match(s) and accepts(s) for s in strings)
    assert not accepts("BTBTXSETE".replace("TE", "PE")) and not EMBEDDED.match("BTBTXSEPE")
    task = make_task("reber", {"size": 100}, 0)
    d, _, _ = task.build()
    legal = d.extra["legal"]
    for n in range(len(d)):
        L = int(d.lengths[n])
        s = "".join(SYMBOLS[i] for i in d.x[n, :L].tolist()) + "E"
        assert EMBEDDED.match(s)
        for t in range(L):  # the true next symbol is always legal; only the branch step is forced
            assert legal[n, t, d.y[n, t]]
        assert legal[n, L - 2].sum() == 1 and SYMBOLS[int(legal[n, L - 2].nonzero())] == s[1]
        assert torch.all(d.y[n, L:] == IGNORE)


def test_reber_metric_is_solved_by_a_perfect_predictor_and_not_by_a_wrong_branch():
    task = make_task("reber", {"size": 50}, 0)
    d, _, _ = task.build()
    perfect = d.extra["legal"].float()  # argmax picks some legal symbol everywhere
    assert task.metrics(perfect, d)["solved"] == 1.0
    wrong = perfect.clone()
    rows = torch.arange(len(d))
    wrong[rows, d.lengths - 2] = 1 - wrong[rows, d.lengths - 2]
    assert task.metrics(wrong, d)["solved"] == 0.0


def test_temporal_order_class_is_the_order_of_x_and_y():
    T = 100
    d = make_temporal_order(300, T, seed=4)
    assert torch.all(d.x[:, 0] == 6) and torch.all(d.x[:, -1] == 7)
    for n in range(300):
        pos = ((d.x[n] == 4) | (d.x[n] == 5)).nonzero().flatten().tolist()
        assert len(pos) == 2 and 10 <= pos[0] <= 20 and 50 <= pos[1] <= 60
        first, second = (int(d.x[n, p]) - 4 for p in pos)
        assert int(d.y[n]) == {(0, 0): 0, (0, 1): 1, (1, 0): 2, (1, 1): 3}[(first, second)]


def test_text_targets_are_the_next_characters_and_bpc_of_uniform_is_log2_v(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("hello world, 안녕 세상. " * 50, encoding="utf-8")
    task = make_task("text", {"data": str(f), "length": 16}, 0)
    train, val, test = task.build()
    assert torch.equal(train.x[:, 1:], train.y[:, :-1])
    uniform = torch.zeros(*test.y.shape, len(task.vocab))
    assert math.isclose(task.metrics(uniform, test)["bits_per_char"], math.log2(len(task.vocab)), rel_tol=1e-5)


def test_text_default_corpus_is_the_standard_library():
    task = make_task("text", {"size": 5000}, 0)
    assert "import" in task.text() and len(task.text()) == 5000


def test_classify_reads_csv_and_jsonl_and_default_digits(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("sequence,label\n" + "".join(f"{i} {i+1} {i+2},{'up' if i % 2 else 'down'}\n"
                                                for i in range(40)), encoding="utf-8")
    task = make_task("classify", {"data": str(csv)}, 0)
    assert task.classes == ["down", "up"] and task.input_size == 1
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(f'{{"sequence": [[{i}, 1], [2, 3]], "label": {i % 3}}}\n' for i in range(40)))
    task = make_task("classify", {"data": str(jsonl)}, 0)
    assert task.input_size == 2 and task.classes == ["0", "1", "2"]
    digits = make_task("classify", {}, 0)
    train, val, test = digits.build()
    assert digits.input_size == 8 and train.x.shape[1:] == (8, 8) and len(digits.classes) == 10
    assert len(train) + len(val) + len(test) == 1797


def test_forecast_windows_and_naive_baseline(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("t,v\n" + "".join(f"{i},{i * 2.0}\n" for i in range(100)), encoding="utf-8")
    task = make_task("forecast", {"data": str(f), "column": "v", "window": 5}, 0)
    train, val, test = task.build()
    z = lambda v: (v - task.mean) / task.std  # noqa: E731
    assert torch.allclose(train.x[0, :, 0], z(torch.tensor([0., 2, 4, 6, 8])))
    assert math.isclose(float(train.y[0, 0]), float(z(torch.tensor(10.0))), rel_tol=1e-5)
    assert math.isclose(task.metrics(test.y, test)["naive_rmse"], 2.0, rel_tol=1e-4)  # last value is 2 short
    assert task.metrics(test.y, test)["rmse"] == 0.0
    assert len(make_task("forecast", {}, 0).series) == 309  # statsmodels' sunspots


@pytest.mark.parametrize("name,options,message", [
    ("sentence", {"distance": -1}, "--distance must be >= 0"),
    ("adding", {"distance": 3}, "does not use --distance"),
    ("text", {"data": "/nonexistent/x.txt"}, "no such file"),
    ("forecast", {"window": 0}, "--window must be >= 1"),
])
def test_task_options_are_checked(name, options, message):
    with pytest.raises(TaskError, match=re.escape(message)):
        make_task(name, options, 0).build()   # a text file is read when first needed
