"""The field's protocol: card precision top-k, the exclusion of known compromised cards, prequential folds."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from training.evaluate import card_precision_top_k
from training.protocol import field_card_precision_top_k, known_compromised, prequential_splits

DAY = 86_400_000

# day, card, score, fraud
ROWS = [
    (0, "A", 0.9, 1),
    (0, "A", 0.3, 1),  # the same card twice on a day counts once
    (0, "B", 0.8, 0),
    (0, "C", 0.1, 1),
    (1, "A", 0.95, 1),  # found on day 0: gone from day 1
    (1, "C", 0.7, 1),
    (1, "D", 0.6, 0),
    (2, "C", 0.9, 1),  # found on day 1: gone from day 2
    (2, "E", 0.2, 0),
]


def _columns(rows=ROWS):
    day, card, score, fraud = zip(*rows, strict=True)
    return np.array(fraud), np.array(score), np.array(day) * DAY + 3_600_000, np.array(card)


def test_card_precision_removes_detected_cards_and_divides_by_k() -> None:
    y, s, t, c = _columns()
    # day 0: top 2 = A (fraud), B -> 1/2; day 1: A gone, C (fraud), D -> 1/2; day 2: C gone, E -> 0/2
    assert field_card_precision_top_k(y, s, t, c, k=2) == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    # samestream's own figure keeps found cards and counts precision over the cards a day has
    assert card_precision_top_k(y, s, t.astype("datetime64[ms]"), c, k=2) == pytest.approx((0.5 + 1.0 + 0.5) / 3)


def test_card_precision_excludes_known_compromised_cards() -> None:
    y, s, t, c = _columns()
    # without A: day 0: B, C (fraud) -> 1/2; day 1: C gone, D -> 0/2; day 2: C gone, E -> 0/2
    assert field_card_precision_top_k(y, s, t, c, k=2, exclude=np.array(["A"])) == pytest.approx(0.5 / 3)


def test_card_precision_accepts_datetimes_and_rejects_bad_k() -> None:
    y, s, t, c = _columns()
    assert field_card_precision_top_k(y, s, t.astype("datetime64[ms]"), c, k=2) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        field_card_precision_top_k(y, s, t, c, k=0)


def test_known_compromised_are_cards_with_a_known_fraud() -> None:
    cards = np.array(["x", "y", "x", "z", "y"])
    labels = np.array([0, 0, 1, 0, 0])
    assert known_compromised(cards, labels).tolist() == ["x"]


def test_prequential_splits_shift_back_by_the_validation_length() -> None:
    end = datetime(2026, 3, 1, tzinfo=UTC)
    folds = prequential_splits(end, n_folds=3, train_days=20, delay_days=7, validation_days=7)
    assert [(f.train_start.day, f.train_start.month) for f in folds] == [(26, 1), (19, 1), (12, 1)]
    newest = folds[0]
    assert newest.validation_end == end
    assert newest.validation_start == datetime(2026, 2, 22, tzinfo=UTC)
    assert newest.train_end == datetime(2026, 2, 15, tzinfo=UTC)
    assert folds[1].validation_end == datetime(2026, 2, 22, tzinfo=UTC)
    # folds starting before the data are dropped
    short = prequential_splits(
        end, n_folds=3, train_days=20, delay_days=7, validation_days=7, earliest=datetime(2026, 1, 19, tzinfo=UTC)
    )
    assert len(short) == 2
    with pytest.raises(ValueError):
        prequential_splits(end, n_folds=1, train_days=90, delay_days=7, validation_days=7, earliest=end)
