"""Fraud metrics against hand-computed cases, and the evaluation figures render."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from training import plots
from training.evaluate import (
    CostModel,
    card_precision_top_k,
    choose_threshold,
    evaluate,
    expected_cost,
    rule_baseline_scores,
)

# Day 1: card A's two top payments count once (A had a fraud that day, at a lower score), so
# the top-2 cards are A (hit) and B (miss), not A twice; C's fraud ranks third: 1/2.
# Day 2 has a single card, a fraud: precision over the cards it has is 1/1. Mean: 0.75.
TWO_DAYS = pd.DataFrame(
    {
        "time": pd.to_datetime(
            [
                "2024-01-01T08:00",
                "2024-01-01T09:00",
                "2024-01-01T10:00",
                "2024-01-01T11:00",
                "2024-01-01T23:59",
                "2024-01-02T00:01",
            ]
        ),
        "card": ["A", "A", "A", "B", "C", "G"],
        "score": [0.90, 0.85, 0.10, 0.80, 0.70, 0.05],
        "fraud": [0, 0, 1, 0, 1, 1],
    }
)

# Alert at score >= 0.5: rows 0 and 1 (2 reviews at 5 = 10); row 2 is a missed fraud of 40.
Y = np.array([1, 0, 1, 0, 0])
S = np.array([0.9, 0.6, 0.3, 0.2, 0.1])
AMOUNT = np.array([100.0, 50.0, 40.0, 30.0, 20.0])
TIMES = pd.to_datetime(["2024-03-01T12:00"] * 5).to_numpy()
CARDS = np.array(["a", "b", "c", "d", "e"])


def test_card_precision_top_k_by_hand() -> None:
    args = (TWO_DAYS.fraud, TWO_DAYS.score, TWO_DAYS.time.to_numpy(), TWO_DAYS.card.to_numpy())
    assert card_precision_top_k(*args, k=2) == pytest.approx(0.75)
    # k=1: day 1 takes A (hit), day 2 takes G (hit).
    assert card_precision_top_k(*args, k=1) == pytest.approx(1.0)
    # k=3: day 1 takes A, B, C (2 hits of 3).
    assert card_precision_top_k(*args, k=3) == pytest.approx((2 / 3 + 1) / 2)


def test_card_precision_days_are_utc_days() -> None:
    # 23:59 UTC is 00:59 the next day in Paris; days are UTC whatever the zone of the input.
    aware = TWO_DAYS.time.dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")
    args = (TWO_DAYS.fraud, TWO_DAYS.score, aware.to_numpy(), TWO_DAYS.card.to_numpy())
    assert card_precision_top_k(*args, k=2) == pytest.approx(0.75)
    with pytest.raises(TypeError):
        card_precision_top_k(TWO_DAYS.fraud, TWO_DAYS.score, np.arange(6), TWO_DAYS.card, k=2)


def test_evaluate_by_hand() -> None:
    metrics = evaluate(Y, S, event_time=TIMES, entity=CARDS, amount=AMOUNT, threshold=0.5, k_per_day=2)
    assert metrics == pytest.approx(
        {
            # Positives 0.9 and 0.3 outrank 3 and 2 of the 3 negatives.
            "roc_auc": 5 / 6,
            # Hits at ranks 1 and 3: (1/1 + 2/3) / 2.
            "average_precision": 5 / 6,
            "card_precision_top_k": 0.5,
            "precision_at_threshold": 0.5,
            "recall_at_threshold": 0.5,
            "alert_rate": 0.4,
            "expected_cost": 50.0,
            "expected_cost_per_1k": 10_000.0,
            "n": 5.0,
            "n_positive": 2.0,
        }
    )


def test_expected_cost_variants_by_hand() -> None:
    half_lost = CostModel(review_cost=5.0, missed_fraud_share=0.5)
    assert expected_cost(Y, S, AMOUNT, 0.5, half_lost) == pytest.approx(10.0 + 20.0)
    # Blocking: one genuine payment blocked (10), the fraud at 0.3 still missed (40).
    assert expected_cost(Y, S, AMOUNT, 0.5, CostModel(), action="block") == pytest.approx(50.0)
    # Threshold at an observed score alerts on it.
    assert expected_cost(Y, S, AMOUNT, 0.3) == pytest.approx(15.0)


def test_choose_threshold_minimizes_cost() -> None:
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    amount = np.array([100.0, 10.0, 30.0, 10.0, 10.0])
    # Review cost 5 per alert + missed fraud: none 130, 0.9 35, 0.8 40, 0.7 15, 0.6 20, 0.5 25.
    assert choose_threshold(y, s, amount, CostModel(review_cost=5.0)) == 0.7
    # Blocking costs 10 per genuine payment: none 130, 0.9 30, 0.8 40, 0.7 10, 0.6 20, 0.5 30.
    assert choose_threshold(y, s, amount, CostModel(), action="block") == 0.7
    # Frauds too small to be worth a review: alerting on nothing is cheapest.
    small = np.array([1.0, 10.0, 2.0, 10.0, 10.0])
    none = choose_threshold(y, s, small, CostModel(review_cost=5.0))
    assert none > s.max()
    assert evaluate(y, s, event_time=TIMES, entity=CARDS, amount=small, threshold=none)["alert_rate"] == pytest.approx(
        0.0
    )


def test_choose_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(400) < 0.1).astype(int)
    s = np.round(np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1), 3)
    amount = rng.gamma(2.0, 40.0, 400)
    brute = min(expected_cost(y, s, amount, t) for t in np.unique(s))
    assert expected_cost(y, s, amount, choose_threshold(y, s, amount)) == pytest.approx(brute)
    coarse = choose_threshold(y, s, amount, n_candidates=20)
    assert coarse in set(s) or coarse > s.max()


@pytest.mark.filterwarnings("error")
def test_single_class_is_nan_not_a_crash() -> None:
    y = np.zeros(5, dtype=int)
    metrics = evaluate(y, S, event_time=TIMES, entity=CARDS, amount=AMOUNT, threshold=0.95)
    for key in ("roc_auc", "average_precision", "precision_at_threshold", "recall_at_threshold"):
        assert math.isnan(metrics[key])
    assert metrics["card_precision_top_k"] == 0.0
    assert metrics["expected_cost"] == 0.0
    assert metrics["n_positive"] == 0.0
    for figure in (plots.pr_curve(y, S, "pr"), plots.roc_curve(y, S, "roc")):
        assert isinstance(figure, Figure)


def test_rule_baseline_is_a_monotone_amount_cutoff() -> None:
    amount = np.array([0.0, 0.5, 12.0, 250.0, 1e6])
    scores = rule_baseline_scores(amount)
    assert np.all(np.diff(scores) > 0)
    assert scores[0] == 0.0 and scores[-1] < 1.0
    assert np.expm1(scores / (1 - scores)) == pytest.approx(amount)
    assert rule_baseline_scores(np.array([-3.0]))[0] == 0.0


def test_plots_render(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(int)
    s = np.clip(0.4 * y + 0.6 * rng.random(300), 0, 1)
    figures = {
        "PR curve": plots.pr_curve(y, s, "PR curve"),
        "ROC curve": plots.roc_curve(y, s, "ROC curve"),
        "Calibration": plots.calibration(y, s, "Calibration"),
        "Importance": plots.feature_importance([f"f{i}" for i in range(30)], rng.random(30), "Importance"),
        "Confusion": plots.confusion(y, s, 0.5, "Confusion"),
    }
    for title, figure in figures.items():
        assert isinstance(figure, Figure)
        assert figure.axes[0].get_title() == title
        assert tuple(figure.get_size_inches() * figure.dpi) == (800, 600)
        path = tmp_path / f"{title}.png"
        figure.savefig(path)
        assert path.stat().st_size > 0
    bars = [p for p in figures["Importance"].axes[0].patches if isinstance(p, Rectangle)]
    assert len(bars) == 25
    widths = [bar.get_width() for bar in bars]
    assert widths == sorted(widths, reverse=True)
    counts = [text.get_text().split("\n")[0] for text in figures["Confusion"].axes[0].texts]
    assert sum(int(c.replace(",", "")) for c in counts) == 300


def test_importances_native_and_permutation(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6_000, 2))
    y = (X[:, 0] + 0.1 * rng.normal(size=6_000) > 1.0).astype(int)
    names = ["signal", "noise"]

    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    assert np.array_equal(plots.importances(tree, names, X, y), tree.feature_importances_)

    linear = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    expected = np.abs(linear[-1].coef_).ravel()
    assert np.array_equal(plots.importances(linear, names, X, y), expected)

    rows_seen: list[int] = []
    real = plots.permutation_importance

    def recording(estimator: Any, X: Any, y: Any, **kwargs: Any) -> Any:
        rows_seen.append(len(X))
        return real(estimator, X, y, **kwargs)

    monkeypatch.setattr(plots, "permutation_importance", recording)
    # Polynomial features break the coef_-to-name alignment: permutation on the sample.
    poly = make_pipeline(PolynomialFeatures(2), LogisticRegression(max_iter=500)).fit(X, y)
    result = plots.importances(poly, names, X, y)
    assert rows_seen == [5_000]
    assert result.shape == (2,)
    assert result[0] > result[1]
