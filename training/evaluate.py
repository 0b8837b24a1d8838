"""Metrics that fit fraud detection, as pure functions over arrays.

Fraud is rare and costs money, so ROC AUC alone says little: average precision follows the
rare class, card precision top-k measures what an analyst team with a fixed daily capacity
actually finds, and the expected cost prices alerts against missed fraud at the operating
threshold. A payment raises an alert when `score >= threshold`, everywhere in this module.
The keys `evaluate` returns are the MLflow metric names, so keep them stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

Action = Literal["review", "block"]


@dataclass(frozen=True)
class CostModel:
    """What an alert and a miss cost, in the currency of `amount`.

    `review` alerts send a payment to an analyst, who catches the fraud among them; `block`
    alerts stop the payment outright, so a blocked fraud costs nothing and a blocked genuine
    payment costs the customer friction (`blocked_genuine_cost`) instead of a review.
    """

    review_cost: float = 5.0
    missed_fraud_share: float = 1.0
    blocked_genuine_cost: float = 10.0


def _labels(y_true: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 (genuine) and 1 (fraud)")
    return y.astype(np.int8)


def _scores(scores: np.ndarray, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"scores has shape {s.shape}, expected ({n},)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s


def _days(event_time: np.ndarray) -> np.ndarray:
    """UTC calendar day of each event; naive times are taken as UTC."""
    if np.issubdtype(np.asarray(event_time).dtype, np.number):
        raise TypeError("event_time must be datetimes, not numbers (epoch units are ambiguous)")
    return pd.to_datetime(event_time, utc=True).floor("D").to_numpy()


def _costs(
    y: np.ndarray,
    s: np.ndarray,
    amount: np.ndarray,
    thresholds: np.ndarray,
    cost: CostModel,
    action: Action,
) -> np.ndarray:
    """Total cost at each threshold in one pass: sort once, read counts off cumulative sums."""
    order = np.argsort(s, kind="stable")
    below = np.searchsorted(s[order], thresholds, side="left")
    fraud_loss = cost.missed_fraud_share * np.asarray(amount, dtype=np.float64) * y
    missed = np.concatenate(([0.0], np.cumsum(fraud_loss[order])))[below]
    if action == "review":
        return cost.review_cost * (len(s) - below) + missed
    genuine_below = np.concatenate(([0], np.cumsum(1 - y[order])))[below]
    blocked_genuine = (len(y) - y.sum()) - genuine_below
    return cost.blocked_genuine_cost * blocked_genuine + missed


def expected_cost(
    y_true: np.ndarray,
    scores: np.ndarray,
    amount: np.ndarray,
    threshold: float,
    cost: CostModel = CostModel(),
    *,
    action: Action = "review",
) -> float:
    """Total cost of acting on every payment with `score >= threshold` (see `CostModel`)."""
    y = _labels(y_true)
    s = _scores(scores, len(y))
    return float(_costs(y, s, amount, np.array([threshold], dtype=np.float64), cost, action)[0])


def card_precision_top_k(
    y_true: np.ndarray,
    scores: np.ndarray,
    event_time: np.ndarray,
    entity: np.ndarray,
    k: int = 100,
) -> float:
    """Mean over days of the fraud share among the k most suspicious cards of that day.

    Analysts investigate cards, not payments, and only so many a day: each card counts once
    with its highest score of the day, and it is a hit if any of its payments that day was
    fraud. A day with fewer than k cards is scored over the cards it has. Ties in score are
    broken by card, so the result is deterministic.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    y = _labels(y_true)
    frame = pd.DataFrame(
        {
            "day": _days(event_time),
            "card": np.asarray(entity),
            "score": _scores(scores, len(y)),
            "fraud": y,
        }
    )
    cards = frame.groupby(["day", "card"], sort=False, as_index=False).agg(
        score=("score", "max"), fraud=("fraud", "max")
    )
    ranked = cards.sort_values(["day", "score", "card"], ascending=[True, False, True])
    top = ranked.groupby("day", sort=False).head(k)
    return float(top.groupby("day")["fraud"].mean().mean())


def evaluate(
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    event_time: np.ndarray,
    entity: np.ndarray,
    amount: np.ndarray,
    threshold: float,
    k_per_day: int = 100,
    cost: CostModel = CostModel(),
) -> dict[str, float]:
    """All metrics of one scored set, keyed by their MLflow metric names.

    Undefined values are NaN rather than errors, so a degenerate split (one class, no alerts)
    still logs: ROC AUC and average precision need both classes, precision needs an alert,
    recall needs a fraud.
    """
    y = _labels(y_true)
    n = len(y)
    if n == 0:
        raise ValueError("cannot evaluate an empty set")
    s = _scores(scores, n)
    amount = np.asarray(amount, dtype=np.float64)
    if amount.shape != (n,):
        raise ValueError(f"amount has shape {amount.shape}, expected ({n},)")

    both_classes = 0 < y.sum() < n
    alert = s >= threshold
    n_alerts = int(alert.sum())
    n_positive = int(y.sum())
    caught = int((alert & (y == 1)).sum())
    total_cost = expected_cost(y, s, amount, threshold, cost)
    return {
        "roc_auc": float(roc_auc_score(y, s)) if both_classes else float("nan"),
        "average_precision": float(average_precision_score(y, s)) if both_classes else float("nan"),
        "card_precision_top_k": card_precision_top_k(y, s, event_time, entity, k_per_day),
        "precision_at_threshold": caught / n_alerts if n_alerts else float("nan"),
        "recall_at_threshold": caught / n_positive if n_positive else float("nan"),
        "alert_rate": n_alerts / n,
        "expected_cost": total_cost,
        "expected_cost_per_1k": total_cost / n * 1000.0,
        "n": float(n),
        "n_positive": float(n_positive),
    }


def choose_threshold(
    y_true: np.ndarray,
    scores: np.ndarray,
    amount: np.ndarray,
    cost: CostModel = CostModel(),
    *,
    action: Action = "review",
    n_candidates: int = 1000,
) -> float:
    """The threshold with the lowest expected cost on a validation set.

    Cost only changes at observed scores, so candidates are the scores themselves (their
    quantiles when there are more than `n_candidates` distinct ones), plus one just above the
    maximum that alerts on nothing, which wins when alerts cost more than the fraud they stop.
    Ties go to the higher threshold: the same cost for fewer alerts.
    """
    y = _labels(y_true)
    if len(y) == 0:
        raise ValueError("cannot choose a threshold on an empty set")
    s = _scores(scores, len(y))
    candidates = np.unique(s)
    if len(candidates) > n_candidates:
        levels = np.linspace(0.0, 1.0, n_candidates)
        candidates = np.unique(np.quantile(s, levels, method="inverted_cdf"))
    candidates = np.append(candidates, np.nextafter(s.max(), np.inf))
    costs = _costs(y, s, amount, candidates, cost, action)
    best = len(costs) - 1 - int(np.argmin(costs[::-1]))
    return float(candidates[best])


def rule_baseline_scores(amount: np.ndarray) -> np.ndarray:
    """Scores of the rule "flag payments above an amount", for comparison with models.

    The score is log1p(amount) / (1 + log1p(amount)): strictly increasing in amount, so every
    threshold on it is an amount cutoff and ranking metrics (ROC AUC, average precision, card
    precision top-k) are those of the rule; it is fixed per payment, so a threshold chosen on
    validation carries over to test; and it lies in [0, 1) like a model's probability. The
    cutoff of a score threshold t is expm1(t / (1 - t)). Negative amounts count as zero.
    """
    log_amount = np.log1p(np.clip(np.asarray(amount, dtype=np.float64), 0.0, None))
    return log_amount / (1.0 + log_amount)
