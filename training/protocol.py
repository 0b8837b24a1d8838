"""The fraud-detection field's evaluation protocol, next to samestream's own figures.

Published card-fraud results (for example the *Reproducible Machine Learning for Credit Card
Fraud Detection* handbook) follow one protocol, so their figures can only be compared with
figures measured the same way:

- a training period, then a delay period as long as the feedback delay (its labels are not yet
  known when the model is trained, so it is neither trained on nor tested on), then a test period;
- test payments of cards already known compromised by the end of the training period are left
  out: the bank has blocked those cards, no model gets credit for finding them again;
- *card precision top-k*: each test day, the k cards with the highest score (a card's score is its
  highest payment score that day) go to the analysts; the day's precision is the number of
  defrauded cards among them divided by k. A card found on one day is blocked and leaves the later
  days, so each defrauded card is counted once;
- model selection by prequential validation: several train/validation pairs of the same lengths,
  shifted back in time by the validation length, their scores averaged.

Every figure of this protocol is named ``field_*`` so it is never mixed with samestream's own
(``test_ap``, ``card_precision_top_k``: every card counted each day, precision over the cards a
day has).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

__all__ = ["PrequentialSplit", "field_card_precision_top_k", "known_compromised", "prequential_splits"]

DAY_MS = 86_400_000


def _days(event_time: np.ndarray) -> np.ndarray:
    """Whole UTC days since the epoch, from datetime64 values or epoch milliseconds."""
    values = np.asarray(event_time)
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[D]").astype(np.int64)
    return np.floor_divide(values.astype(np.int64), DAY_MS)


def known_compromised(cards: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cards with at least one fraud known by the end of the training period.

    `cards` and `labels` are the training rows with the labels known at that time (samestream's
    training frames read labels as of the cut-off, so a fraud whose chargeback arrives later is
    not there and its card is not excluded, as at a bank).
    """
    y = np.asarray(labels).astype(bool)
    return np.unique(np.asarray(cards)[y])


def field_card_precision_top_k(
    y_true: np.ndarray,
    scores: np.ndarray,
    event_time: np.ndarray,
    card: np.ndarray,
    k: int = 100,
    exclude: np.ndarray | None = None,
) -> float:
    """Mean over test days of (defrauded cards among the day's top-k cards) / k.

    A card's score on a day is its highest payment score, and it is defrauded if any of its
    payments that day is fraud. Cards in `exclude` (already known compromised) are dropped first;
    a defrauded card in a day's top k is blocked and leaves every later day. Ties in score go to
    the smaller card key so the figure is deterministic. Days without payments are not counted.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    frame = pd.DataFrame(
        {
            "day": _days(event_time),
            "card": np.asarray(card),
            "score": np.asarray(scores, dtype=np.float64),
            "fraud": np.asarray(y_true).astype(np.int8),
        }
    )
    if exclude is not None and len(exclude):
        frame = frame[~frame["card"].isin(exclude)]
    if frame.empty:
        return float("nan")
    daily = frame.groupby(["day", "card"], as_index=False).agg(score=("score", "max"), fraud=("fraud", "max"))
    detected: set = set()
    precisions = []
    for _, day in daily.groupby("day", sort=True):
        day = day[~day["card"].isin(detected)]
        top = day.sort_values(["score", "card"], ascending=[False, True]).head(k)
        hits = top.loc[top["fraud"] == 1, "card"]
        detected.update(hits.tolist())
        precisions.append(len(hits) / k)
    return float(np.mean(precisions))


@dataclass(frozen=True)
class PrequentialSplit:
    """One shifted pair: fit on [train_start, train_end), validate on [validation_start, validation_end).

    The gap between `train_end` and `validation_start` is the delay period.
    """

    train_start: datetime
    train_end: datetime
    validation_start: datetime
    validation_end: datetime


def prequential_splits(
    validation_end: datetime,
    *,
    n_folds: int = 4,
    train_days: int,
    delay_days: int,
    validation_days: int,
    earliest: datetime | None = None,
) -> list[PrequentialSplit]:
    """`n_folds` train/delay/validation triples ending at `validation_end`, each shifted back by
    `validation_days` from the one before (newest first).

    Folds whose training period would start before `earliest` are dropped; at least the newest
    fold is always returned if it fits, else `ValueError`.
    """
    if n_folds < 1 or train_days < 1 or validation_days < 1 or delay_days < 0:
        raise ValueError("n_folds, train_days and validation_days must be positive, delay_days not negative")
    folds = []
    for fold in range(n_folds):
        v_end = validation_end - timedelta(days=fold * validation_days)
        v_start = v_end - timedelta(days=validation_days)
        t_end = v_start - timedelta(days=delay_days)
        t_start = t_end - timedelta(days=train_days)
        if earliest is not None and t_start < earliest:
            break
        folds.append(PrequentialSplit(t_start, t_end, v_start, v_end))
    if not folds:
        raise ValueError("not even one prequential fold fits after the earliest date")
    return folds
