"""Many training runs at once: each in its own spawned process, one thread each, with one progress bar.

What it is: ``run_jobs(work, jobs, processes)`` for the commands that train a grid of runs
(``lstmkit demo``, ``lstmkit ablate``): ``work`` is a module-level function taking one job (a
dict) and returning its row; the rows come back in the order of ``jobs``. With one process the
jobs run here, one after the other, with their own progress bars.
What it is not: a scheduler. Jobs should be given longest first, so that the last to finish is a short one.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context


def run_jobs(work: Callable[[dict], dict], jobs: list[dict], processes: int, quiet: bool, desc: str) -> list[dict]:
    """``[work(job) for job in jobs]``, in ``processes`` spawned workers (1: here); each job gets
    ``progress`` (a bar of its own only when run here)."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, disable=quiet, dynamic_ncols=True)
    rows: list[dict | None] = [None] * len(jobs)
    if processes == 1:
        for k, job in enumerate(jobs):
            rows[k] = work({**job, "progress": not quiet})
            bar.update(1)
    else:
        from lstmkit import kernels

        kernels.tune(1)      # the kernels' path limits at one thread, measured here once, not by every worker at once
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(work, {**job, "progress": False}): k for k, job in enumerate(jobs)}
            for future in as_completed(futures):
                rows[futures[future]] = future.result()
                bar.update(1)
    bar.close()
    return rows

