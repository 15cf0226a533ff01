"""The task registry: name -> Task class, imported only when used.

Generated: sentence (the article's example), adding, copy, reber, temporal-order.
From data: text (character LM), classify (sequence classification), forecast (time series).
Each task lives in its own file; ``base.py`` says what a task provides.
"""

from __future__ import annotations

import importlib

from lstmkit.tasks.base import Split, Task, TaskError

# name -> (module, class)
TASKS: dict[str, tuple[str, str]] = {
    "sentence": ("sentence", "SentenceTask"),
    "adding": ("adding", "AddingTask"),
    "copy": ("copy", "CopyTask"),
    "reber": ("reber", "ReberTask"),
    "temporal-order": ("temporal_order", "TemporalOrderTask"),
    "text": ("text", "TextTask"),
    "classify": ("classify", "ClassifyTask"),
    "forecast": ("forecast", "ForecastTask"),
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(f"lstmkit.tasks.{module}"), cls)


def make_task(name: str, options: dict, seed: int) -> Task:
    """The task ``name`` with its options (None values mean "the task's default")."""
    return task_class(name)(options, seed)


__all__ = ["TASKS", "Split", "Task", "TaskError", "make_task", "task_class"]
