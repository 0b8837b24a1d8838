"""The training harness's pure parts: windows from the dates given, the fraud thresholds."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from training.datasets import default_windows
from training.evaluate import CostModel
from training.harness import Selection, WindowDays, resolve_windows
from training.jobs.fraud import choose_thresholds, decision_costs

FIRST = datetime(2026, 1, 1)
LAST = datetime(2026, 3, 31, 23, 59)
DAYS = WindowDays(warmup=7, validation=10, delay=14, test=14)


def test_no_date_given_gives_the_default_windows() -> None:
    assert resolve_windows(FIRST, LAST, DAYS) == default_windows(FIRST, LAST, 7, 10, 14, 14)


def test_dates_inside_the_data_derive_the_other_bounds_from_them() -> None:
    w = resolve_windows(FIRST, LAST, DAYS, train_start=datetime(2026, 1, 10), test_end=datetime(2026, 2, 28))
    assert w.train_start == datetime(2026, 1, 10)
    assert w.test_end == datetime(2026, 2, 28)
    assert w.test_start == datetime(2026, 2, 14)
    assert w.train_end == datetime(2026, 1, 31)
    assert w.validation_start == datetime(2026, 1, 21)


def test_a_later_bound_is_derived_forwards_and_kept_inside_the_data() -> None:
    w = resolve_windows(FIRST, LAST, DAYS, train_end=datetime(2026, 2, 1))
    assert w.validation_start == datetime(2026, 1, 22)
    assert w.test_start == datetime(2026, 2, 15) and w.test_end == datetime(2026, 3, 1)
    late = resolve_windows(FIRST, LAST, DAYS, test_start=datetime(2026, 3, 25))
    assert late.test_end == LAST + timedelta(microseconds=1)
    assert late.train_end == datetime(2026, 3, 11)


def test_a_validation_fraction_splits_the_training_window() -> None:
    w = resolve_windows(FIRST, LAST, DAYS, train_start=datetime(2026, 1, 11), validation_fraction=0.25)
    assert w.train_end - w.validation_start == (w.train_end - w.train_start) * 0.25
    with pytest.raises(ValueError, match="either a validation start or a validation fraction"):
        resolve_windows(FIRST, LAST, DAYS, validation_start=datetime(2026, 2, 1), validation_fraction=0.2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        resolve_windows(FIRST, LAST, DAYS, validation_fraction=1.5)


def test_inconsistent_dates_say_what_was_expected() -> None:
    with pytest.raises(ValueError, match="train_start < validation_start"):
        resolve_windows(FIRST, LAST, DAYS, train_start=datetime(2026, 3, 1), test_end=datetime(2026, 2, 1))


def test_selection_ranks_the_best_first_and_undefined_last() -> None:
    lower = Selection("wape", higher_is_better=False, heading="val WAPE")
    ranked = sorted([{"wape": 0.3}, {"wape": float("nan")}, {"wape": 0.2}], key=lower.rank)
    assert [m["wape"] for m in ranked[:2]] == [0.2, 0.3]
    higher = Selection("average_precision", higher_is_better=True, heading="val AP")
    assert sorted([0.1, 0.5], key=lambda v: higher.rank({"average_precision": v})) == [0.5, 0.1]


def _validation(n: int = 4_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores with three bands: clearly genuine, uncertain (20 % fraud, large amounts), mostly fraud."""
    rng = np.random.default_rng(seed)
    band = rng.choice(3, size=n, p=[0.9, 0.07, 0.03])
    fraud_rate = np.array([0.001, 0.2, 0.9])[band]
    y = (rng.random(n) < fraud_rate).astype(np.int8)
    scores = np.array([0.01, 0.3, 0.8])[band] + rng.uniform(-0.005, 0.005, n)
    amount = rng.uniform(50.0, 500.0, n)
    return y, scores, amount


def test_thresholds_leave_a_review_band_where_an_analyst_is_cheapest() -> None:
    y, scores, amount = _validation()
    review, block = choose_thresholds(y, scores, amount, CostModel())
    assert 0.02 < review <= 0.3 < block <= 0.8
    best = decision_costs(y, scores, amount, review, block, CostModel())
    for r, b in ((review, review), (block, block), (0.0, block), (review, 1.1)):
        assert best <= decision_costs(y, scores, amount, r, b, CostModel())
    reviewed = (scores >= review) & (scores < block)
    assert 0.05 < reviewed.mean() < 0.1


def test_without_a_band_worth_reviewing_the_thresholds_are_equal() -> None:
    """A review that costs more than blocking a genuine payment is never the cheapest decision."""
    y, scores, amount = _validation()
    review, block = choose_thresholds(y, scores, amount, CostModel(review_cost=20.0, blocked_genuine_cost=10.0))
    assert review == block
