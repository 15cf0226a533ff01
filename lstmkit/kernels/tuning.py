"""The limits that choose between a kernel's paths, measured on the user's machine (``tuning.h``).

What it is: each of the C++ kernels' path choices that a constant used to make is a limit in
``tuning.h``, one table per thread count. ``ensure(ext, folder, threads)`` gives the table for a
thread count the values this machine measured: read from ``tuning.json`` beside the built kernel
(``folder``, the build's cache folder: one per source, compiler, CPU and torch), or, the first time
a thread count is seen, measured (about 8 s) and written there (a temporary file, then a
rename: a reader never sees half of one). ``measure(ext, threads)`` times each choice side by
side, the two paths interleaved in one process (the median of per-round ratios). At each candidate
a path keeps the side the built-in value gives it unless the other is more than TOLERANCE (5%)
faster ("won" below): near-ties keep the built-in value, and measuring twice gives the same table.

- ``small_forward_rows`` / ``small_backward_rows``: rows up to which a step takes the hand-written
  product rather than a GEMM per step (forward; backward). The largest of 32, 64, 128, 256 up to
  which the hand-written one won (16 if it lost at 32), at H = 512 (8 steps) and 1000 (2 steps):
  where the built-in value admits it, it is dropped only if it lost at both; elsewhere taken only
  if it won at both.
- ``fuse_min_rows``: rows from which inference takes each step's input projection in the step
  (where the weights fit in L2) rather than one GEMM per chunk: the smallest of 1, 2, 4, 8, 16 from
  which the fused one won (never, if it lost at 16), H = 128, I = 64, 48 steps. (The kernel also
  asks for a full register block of rows a member, lstm_cpu.cpp's rows_per_pass: below it both
  sides of this limit run the same path.)
- ``rows_per_member``: rows a thread from which a team splits by rows (no barrier per step, all of
  W read by each thread) rather than by units: as fuse_min_rows, over 2, 3, 4, 5, 6, 8 (16 if it
  lost at 8), H = 300 (the middle of the sizes users pick; at 512 by units does best), 16 steps.
  Not measured at one thread.
- ``team_step_work``: multiply-adds a step from which a loop over time takes a team of threads
  rather than one (a barrier a step against half the work): the smallest of 4 H^2 for H = 64, 100,
  128, 181, 256 (an LSTM step of one row, 128 steps) from which the team won (1 M, H = 512, if it
  lost at 256). Not measured at one thread.
- ``onednn_min_work``: multiply-adds from which a float32 product goes to oneDNN rather than ATen:
  the smallest of 1 M, 4 M, 16 M, 64 M from which oneDNN won (never, if it lost at 64 M).
  Not measured where oneDNN is not usable.

``LSTMKIT_TUNING``: ``measure`` (default) as above; ``defaults`` keeps the built-in values (those
measured on the machine lstmkit was written on, 2 threads) and measures and reads nothing (the test
suite runs so, for paths that do not depend on the machine). ``lstmkit bench --tune`` measures anew
and shows the table.

Measured only where nothing records what runs (``kernels._tune_if_new``), on generators of its own
(the user's random stream untouched), with real tensors whatever mode the asking call is in.
What it is not: a correctness switch. Both sides of every limit are the same function, tested
against the same oracle; a limit moves only where one path stops and the other starts.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily

FILE = "tuning.json"
FORMAT = 2                            # 2: rows limits at H = 512 and 1000, team_step_work (a 1 is measured over)
NEVER = 1 << 62                       # a limit no call reaches (the path past it is never taken)
MODES = ("measure", "defaults")

LIMITS = ("small_forward_rows", "small_backward_rows", "fuse_min_rows", "rows_per_member", "onednn_min_work",
          "team_step_work")


def mode() -> str:
    value = os.environ.get("LSTMKIT_TUNING", "measure")
    if value not in MODES:
        raise ValueError(f"LSTMKIT_TUNING must be one of {', '.join(MODES)}; got {value!r}")
    return value


# ---- timing -------------------------------------------------------------------------------------

def _seconds(f: Callable[[], object], min_s: float) -> float:
    """Seconds a call of f, averaged over enough calls to last min_s."""
    n, t0 = 0, time.perf_counter()
    while True:
        f()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_s:
            return elapsed / n


def ratio(a: Callable[[], object], b: Callable[[], object], rounds: int = 7, min_s: float = 0.003) -> float:
    """Median over rounds of time(a) / time(b), a and b alternating (each warmed up first)."""
    a(), b()
    return statistics.median(_seconds(a, min_s) / _seconds(b, min_s) for _ in range(rounds))


# ---- the measurements -----------------------------------------------------------------------------

# A path keeps the side of a limit the built-in value gives it unless the other is faster by more
# than this (the same call timed twice on these machines differs by a few percent): a limit moves
# only where the machine clearly disagrees, and measuring twice gives the same table.
TOLERANCE = 0.05


def _admitted_wins(r: float, admitted_by_default: bool) -> bool:
    """Whether the path a limit admits wins, at time ratio r (admitted / other)."""
    return r <= 1 + TOLERANCE if admitted_by_default else r < 1 - TOLERANCE


def _largest_won(candidates: list[int], wins: Callable[[int], float], below: int, default: int, log: dict) -> int:
    """A limit "up to n": the largest candidate up to which (ascending) every one won; below if the
    first lost."""
    best = below
    for n in candidates:
        r = wins(n)
        log[str(n)] = round(r, 3)
        if not _admitted_wins(r, n <= default):
            break
        best = n
    return best


def _smallest_won(candidates: list[int], wins: Callable[[int], float], above: int, default: int, log: dict) -> int:
    """A limit "from n": the smallest candidate from which (descending) every one won; above if the
    last lost."""
    best = above
    for n in reversed(candidates):
        r = wins(n)
        log[str(n)] = round(r, 3)
        if not _admitted_wins(r, n >= default):
            break
        best = n
    return best


def _under_limit(ext, threads: int, name: str, value: int, run: Callable[[], object]) -> Callable[[], None]:
    """A call of run with the limit `name` set to value for this thread count, restored after."""
    def call():
        old = ext.get_tuning(threads)[name]
        ext.set_tuning(threads, name, value)
        try:
            run()
        finally:
            ext.set_tuning(threads, name, old)
    return call


def _lstm_case(B: int, H: int, T: int = 16, I: int | None = None) -> dict:
    g = torch.Generator().manual_seed(0)
    I = H if I is None else I

    def rand(*shape):
        return torch.rand(*shape, generator=g) * 0.2 - 0.1

    return dict(x=rand(T, B, I), zx=rand(T, B, 4 * H), h0=rand(B, H), c0=rand(B, H), w_ih=rand(4 * H, I),
                w_hh=rand(4 * H, H), b=rand(4 * H))


# The hidden sizes (and steps) a rows limit is measured at: the hand-written product's lead over a
# GEMM per step grows with H, and the limit matters for large batches of large H. Measured, forward,
# B = 256, time hand-written / GEMM per step: H = 256 1.10, 512 0.86-1.01, 650 0.89-0.95, 1000
# 0.79-0.94 (B = 128: 0.87-0.91, 0.72, 0.76-0.80, 0.57). At (256, 512) a run that found 512 a tie
# by noise dropped 256 rows, and B = 256, H = 1000 then ran 1.3-1.45x torch.nn's time: so 512 and
# 1000 (few steps: a call there is large). At H = 256, B = 256 the built-in 256 rows then costs ~10%.
ROWS_SIZES = ((512, 8), (1000, 2))


def _at_sizes(one: Callable[[int, int], float], default_side: bool) -> float:
    """A path's time ratio over ROWS_SIZES, the size most in favour of the built-in side: the path a
    limit admits by default must lose at every size to be dropped, and the other must win at every
    size to be taken."""
    rs = [one(H, T) for H, T in ROWS_SIZES]
    return min(rs) if default_side else max(rs)


def _small_forward(ext, threads: int, log: dict) -> int:
    default = ext.default_tuning()["small_forward_rows"]

    def wins(B):
        def one(H, T):
            c = _lstm_case(B, H, T)
            run = lambda path: ext.lstm_forward(c["zx"], c["h0"], c["c0"], c["w_hh"], None, None, path, False)  # noqa: E731
            return ratio(lambda: run(1), lambda: run(2))
        return _at_sizes(one, B <= default)
    return _largest_won([32, 64, 128, 256], wins, 16, default, log)


def _small_backward(ext, threads: int, log: dict) -> int:
    default = ext.default_tuning()["small_backward_rows"]

    def wins(B):
        def one(H, T):
            c = _lstm_case(B, H, T)
            gates, cs, hs = ext.lstm_forward(c["zx"], c["h0"], c["c0"], c["w_hh"], None, None, 0, True)
            dhs, dc = torch.ones_like(hs), torch.zeros_like(c["c0"])
            run = lambda path: ext.lstm_backward(dhs, dc, gates, cs, c["h0"], c["c0"], c["w_hh"], None,  # noqa: E731
                                                 None, path, False)
            return ratio(lambda: run(1), lambda: run(2))
        return _at_sizes(one, B <= default)
    return _largest_won([32, 64, 128, 256], wins, 16, default, log)


def _fuse_min(ext, threads: int, log: dict) -> int:
    def wins(B):
        c = _lstm_case(B, 128, T=48, I=64)
        run = lambda: ext.lstm_layer_forward(c["x"], c["h0"], c["c0"], c["w_ih"], c["w_hh"], c["b"], None,  # noqa: E731
                                             None, 0, False, 1 << 20, None)
        return ratio(_under_limit(ext, threads, "fuse_min_rows", B, run),
                     _under_limit(ext, threads, "fuse_min_rows", B + 1, run))
    return _smallest_won([1, 2, 4, 8, 16], wins, NEVER, ext.default_tuning()["fuse_min_rows"], log)


def _rows_per_member(ext, threads: int, log: dict) -> int:
    def wins(k):
        c = _lstm_case(k * threads, 300, T=16)
        run = lambda: ext.lstm_forward(c["zx"], c["h0"], c["c0"], c["w_hh"], None, None, 1, False)  # noqa: E731
        return ratio(_under_limit(ext, threads, "rows_per_member", k, run),
                     _under_limit(ext, threads, "rows_per_member", k + 1, run))
    # (team.h's split_by_rows: by rows is the robust side where the cores' crossing is slow or busy)
    return _smallest_won([2, 3, 4, 5, 6, 8], wins, 16, ext.default_tuning()["rows_per_member"], log)


# Hidden sizes whose one-row LSTM step (4 H^2 multiply-adds) team_step_work is measured at, and the
# steps: enough that every call passes kParallelCall (cpu_math.h, 2 M multiply-adds a call).
TEAM_SIZES, TEAM_STEPS = (64, 100, 128, 181, 256), 128


def _team_step(ext, threads: int, log: dict) -> int:
    def wins(work):
        c = _lstm_case(1, round((work // 4) ** 0.5), T=TEAM_STEPS)
        run = lambda: ext.lstm_forward(c["zx"], c["h0"], c["c0"], c["w_hh"], None, None, 1, False)  # noqa: E731
        return ratio(_under_limit(ext, threads, "team_step_work", work, run),
                     _under_limit(ext, threads, "team_step_work", work + 1, run))
    return _smallest_won([4 * H * H for H in TEAM_SIZES], wins, 1 << 20, ext.default_tuning()["team_step_work"], log)


def _onednn_min(ext, threads: int, log: dict) -> int:
    shapes = {1 << 20: (64, 128, 128), 1 << 22: (64, 256, 256), 1 << 24: (256, 256, 256), 1 << 26: (256, 512, 512)}

    def wins(work):
        M, K, N = shapes[work]
        g = torch.Generator().manual_seed(0)                     # (the user's random stream untouched)
        a, b = torch.rand(M, K, generator=g), torch.rand(K, N, generator=g)
        run = lambda: ext.gemm(a, b)  # noqa: E731
        return ratio(_under_limit(ext, threads, "onednn_min_work", 0, run),
                     _under_limit(ext, threads, "onednn_min_work", NEVER, run))
    return _smallest_won(list(shapes), wins, NEVER, ext.default_tuning()["onednn_min_work"], log)


def onednn_usable(ext) -> bool:
    """Whether products may go to oneDNN at all here (else its limit decides nothing)."""
    return ext.gemm_backend("float32", 4096, 4096, 4096) == "onednn"


def measure(ext, threads: int) -> dict:
    """Measure every limit at this thread count (torch's is set to it meanwhile). Returns
    {"limits": {name: value}, "ratios": {name: {candidate: time ratio}}, "seconds": s}: each ratio
    is the time of the path the limit admits over the other's."""
    before, t0 = torch.get_num_threads(), time.perf_counter()
    torch.set_num_threads(threads)
    limits, ratios = dict(ext.get_tuning(threads)), {}
    # real tensors, whatever mode the call that asked is in (a fake-tensor trace, autocast)
    with unset_fake_temporarily(), torch.autocast("cpu", enabled=False):
        try:
            steps = {"small_forward_rows": _small_forward, "small_backward_rows": _small_backward,
                     "fuse_min_rows": _fuse_min}
            if threads > 1:
                steps["rows_per_member"] = _rows_per_member
                steps["team_step_work"] = _team_step
            if onednn_usable(ext):
                steps["onednn_min_work"] = _onednn_min
            for name, step in steps.items():
                ratios[name] = {}
                with torch.no_grad():
                    limits[name] = step(ext, threads, ratios[name])
        finally:
            torch.set_num_threads(before)
    return {"limits": limits, "ratios": ratios, "seconds": round(time.perf_counter() - t0, 2)}


# ---- the cache beside the built kernel -----------------------------------------------------------

def read(folder: Path) -> dict:
    """{threads: entry} from folder's tuning.json; {} where there is none, or it is not one of ours
    (a corrupt or foreign file is measured over, never trusted)."""
    try:
        data = json.loads((folder / FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("threads"), dict):
        return {}
    out = {}
    for key, entry in data["threads"].items():
        limits = entry.get("limits") if isinstance(entry, dict) else None
        if key.isdigit() and isinstance(limits, dict) and set(limits) == set(LIMITS) \
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in limits.values()):
            out[int(key)] = entry
    return out


def write(folder: Path, entries: dict) -> None:
    """Write {threads: entry} as folder's tuning.json (a temporary file, then a rename)."""
    text = json.dumps({"format": FORMAT, "threads": {str(k): v for k, v in sorted(entries.items())}}, indent=1)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tuning-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, folder / FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(ext, threads: int, limits: dict) -> None:
    for name in LIMITS:
        ext.set_tuning(threads, name, int(limits[name]))


def ensure(ext, folder: Path | None, threads: int, again: bool = False) -> dict | None:
    """The entry for this thread count, applied to the kernel: read from folder's cache, else (or
    with again) measured and written there. None under LSTMKIT_TUNING=defaults (nothing changed).
    A cache that cannot be written (a read-only folder) only means measuring again next time."""
    if mode() == "defaults" and not again:
        return None
    entries = read(folder) if folder is not None else {}
    entry = None if again else entries.get(threads)
    if entry is None:
        entry = measure(ext, threads)
        entry["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if folder is not None:
            try:
                write(folder, {**read(folder), threads: entry})
            except OSError:
                pass
    apply(ext, threads, entry["limits"])
    return entry
