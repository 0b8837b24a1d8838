"""The hyperparameter search and the prequential folds' geometry (no data, no model store)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from training.datasets import Windows
from training.prequential import FOLD_VALIDATION_DAYS, fold_splits
from training.tuning import tune


def space(trial):
    return {"x": trial.suggest_float("x", -4.0, 4.0)}


def test_the_defaults_are_the_first_trial_and_win_when_nothing_beats_them() -> None:
    seen = []

    def objective(params):
        seen.append(params)
        return 1.0 if not params else 0.5

    tuned = tune(objective, space, trials=6, seed=1)
    assert seen[0] == {} and len(seen) == 6
    assert tuned.params == {} and tuned.default_value == tuned.best_value == 1.0


def test_the_search_finds_a_better_configuration_and_skips_undefined_values() -> None:
    def objective(params):
        if not params:
            return -10.0
        x = params["x"]
        return math.nan if x < -3.0 else -((x - 1.0) ** 2)

    tuned = tune(objective, space, trials=40, seed=3)
    assert tuned.default_value == -10.0 and tuned.best_value > -0.5
    assert abs(tuned.params["x"] - 1.0) < 0.7


def test_a_budget_below_one_trial_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one trial"):
        tune(lambda p: 0.0, space, trials=0, seed=1)


def test_folds_end_at_the_training_end_and_start_no_earlier_than_the_training_start() -> None:
    start = datetime(2026, 1, 8)
    windows = Windows(
        start,
        start + timedelta(days=45),
        start + timedelta(days=55),
        start + timedelta(days=69),
        start + timedelta(days=83),
    )
    folds = fold_splits(windows, n_folds=4, delay_days=14)
    assert len(folds) == 4 and folds[0].validation_end == windows.train_end
    assert folds[-1].train_start == windows.train_start
    for fold in folds:
        assert fold.validation_end - fold.validation_start == timedelta(days=FOLD_VALIDATION_DAYS)
        assert fold.validation_start - fold.train_end == timedelta(days=14)
        assert fold.train_end - fold.train_start == timedelta(days=55 - 14 - 4 * FOLD_VALIDATION_DAYS)
    with pytest.raises(ValueError, match="use fewer folds"):
        fold_splits(windows, n_folds=6, delay_days=14)
