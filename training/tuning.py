"""Time-aware hyperparameter search: optuna over a candidate's search space, judged on the
prequential folds (`training.prequential`), never on the test window.

The candidate's default configuration is the first trial, so the search reports what it gained
over the defaults and never returns a configuration worse than them on the folds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

Space = Callable[[optuna.Trial], dict[str, Any]]
"""A candidate's search space: a trial -> `set_params` keyword arguments."""


@dataclass(frozen=True)
class Tuned:
    params: dict[str, Any]
    """The best configuration's `set_params` arguments ({} when the defaults won)."""
    default_value: float
    best_value: float
    trials: int


def tune(objective: Callable[[dict[str, Any]], float], space: Space, *, trials: int, seed: int) -> Tuned:
    """Maximize `objective(params)` over `trials` trials, the defaults (`{}`) first."""
    if trials < 1:
        raise ValueError(f"the tuning budget must be at least one trial, got {trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    default = objective({})
    best_params: dict[str, Any] = {}
    best = default
    for _ in range(trials - 1):
        trial = study.ask()
        params = space(trial)
        value = objective(params)
        if not math.isfinite(value):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, value)
        if not math.isfinite(best) or value > best:
            best, best_params = value, params
    return Tuned(best_params, default, best, trials)
