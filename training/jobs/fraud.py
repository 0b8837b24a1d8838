"""Fraud: simulate payments and labels; classify payments against the amount rule.

The decision policy is two thresholds on the fraud score, chosen together on validation to
minimize the cost of all three decisions (`choose_thresholds`): approve below `threshold_review`,
send to an analyst from it, block from `threshold_block`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from rich.console import RenderableType
from sklearn.metrics import average_precision_score, roc_auc_score

from features.featureset import FeatureSet
from training import plots
from training.candidates import CANDIDATES
from training.datasets import Splits, Windows, splits
from training.evaluate import CostModel, evaluate, rule_baseline_scores
from training.harness import Column, Evaluation, Predict, Selection, TrainReport, WindowDays, number
from training.jobs import Advance, TrainOptions
from training.protocol import field_card_precision_top_k, known_compromised
from training.pyfunc import ProbabilityModel
from training.store import connect

THRESHOLD_CANDIDATES = 1000


def decision_costs(
    y: np.ndarray, scores: np.ndarray, amount: np.ndarray, review: float, block: float, cost: CostModel
) -> float:
    """Total cost of approving below `review`, reviewing up to `block` and blocking from it.

    A reviewed payment costs `review_cost` (the analyst stops its fraud), a blocked genuine one
    `blocked_genuine_cost`, an approved fraud `missed_fraud_share` of its amount.
    """
    y = np.asarray(y, dtype=np.int8)
    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(amount, dtype=np.float64)
    approved, blocked = s < review, s >= block
    reviewed = ~approved & ~blocked
    return float(
        cost.missed_fraud_share * (a * y)[approved].sum()
        + cost.review_cost * reviewed.sum()
        + cost.blocked_genuine_cost * (1 - y)[blocked].sum()
    )


def choose_thresholds(
    y: np.ndarray, scores: np.ndarray, amount: np.ndarray, cost: CostModel | None = None
) -> tuple[float, float]:
    """(review, block) thresholds of the lowest `decision_costs` on a validation set.

    The cost of a pair splits into a part that depends on the review threshold only and one that
    depends on the block threshold only, so every block threshold is paired with the best review
    threshold at or below it in one pass over sorted scores. Candidates are score quantiles plus
    one above the maximum (no review, or no block). Ties go to the higher thresholds.

    A review band exists where an analyst is cheaper than both other decisions: where the fraud
    loss expected per payment exceeds `review_cost`, yet the share of genuine payments is above
    `review_cost / blocked_genuine_cost` (50 % with the defaults). A model whose scores jump
    from clearly genuine to mostly fraud, or a review costlier than a blocked genuine payment,
    leaves no such band: then the two thresholds are equal and the scorer never says "review".
    """
    cost = cost or CostModel()
    y = np.asarray(y, dtype=np.int8)
    s = np.asarray(scores, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("cannot choose thresholds on an empty set")
    candidates = np.unique(np.quantile(s, np.linspace(0.0, 1.0, THRESHOLD_CANDIDATES), method="inverted_cdf"))
    candidates = np.append(candidates, np.nextafter(s.max(), np.inf))
    order = np.argsort(s, kind="stable")
    below = np.searchsorted(s[order], candidates, side="left")
    fraud_loss = np.concatenate(([0.0], np.cumsum((cost.missed_fraud_share * np.asarray(amount) * y)[order])))
    genuine = np.concatenate(([0], np.cumsum(1 - y[order])))
    # cost(r, b) = missed(r) + review_cost * (n_below(b) - n_below(r)) + blocked_genuine(b)
    review_part = fraud_loss[below] - cost.review_cost * below
    block_part = cost.review_cost * below + cost.blocked_genuine_cost * (genuine[-1] - genuine[below])
    # best review index at or below each block index, the later one on ties
    best_review = np.zeros(len(candidates), dtype=np.int64)
    for j in range(1, len(candidates)):
        previous = best_review[j - 1]
        best_review[j] = j if review_part[j] <= review_part[previous] else previous
    total = review_part[best_review] + block_part
    j = len(total) - 1 - int(np.argmin(total[::-1]))
    return float(candidates[best_review[j]]), float(candidates[j])


class FraudTask:
    """Binary classification of payments; champion by validation average precision."""

    kind = "binary_classification"
    window_days = WindowDays(warmup=7, validation=10, delay=14, test=14)
    selection = Selection("average_precision", higher_is_better=True, heading="val AP")
    baseline_name = "rule_amount_threshold"
    importance_scoring = "average_precision"
    threads = None
    noun = "models"
    row_unit = "payments"

    def __init__(self, fs: FeatureSet, cost: CostModel | None = None, top_k: int = 100) -> None:
        if top_k < 1:
            raise ValueError(f"top-k must be at least 1 card a day, got {top_k}")
        self.fs = fs
        self.cost = cost or CostModel()
        self.top_k = top_k
        self.field_selection = Selection(
            "prequential_field_card_precision_top_k", higher_is_better=True, heading=f"preq. card prec. top-{top_k}"
        )

    def inputs(self) -> tuple[str, ...]:
        return tuple(self.fs.feature_names)

    def candidates(self, seed: int) -> dict[str, Any]:
        return {name: make(seed) for name, make in CANDIDATES.items()}

    def load(self, db: Path, windows: Windows) -> Splits:
        con = connect(db, read_only=True)
        try:
            return splits(con, self.fs, windows)
        finally:
            con.close()

    def params(self) -> dict[str, Any]:
        return {
            "cost_review": self.cost.review_cost,
            "cost_missed_fraud_share": self.cost.missed_fraud_share,
            "cost_blocked_genuine": self.cost.blocked_genuine_cost,
            "field_top_k": self.top_k,
        }

    def fit_baseline(self, frame: pd.DataFrame) -> Predict:
        """Flag payments by amount alone (`training.evaluate.rule_baseline_scores`): nothing to fit."""

        def predict(rows: pd.DataFrame) -> np.ndarray:
            return rule_baseline_scores(rows["amount_eur"].to_numpy())

        return predict

    def evaluate(
        self, name: str, validation: Predict, test: Predict, data: Splits, reference: Evaluation | None
    ) -> Evaluation:
        val_scores = np.asarray(validation(data.validation), dtype=np.float64)
        review, block = choose_thresholds(
            data.validation["label"].to_numpy(), val_scores, data.validation["amount_eur"].to_numpy(), self.cost
        )
        test_scores = np.asarray(test(data.test), dtype=np.float64)
        y = data.test["label"].to_numpy()
        return Evaluation(
            validation=self._metrics(data.validation, val_scores, review, block),
            test=self._metrics(data.test, test_scores, review, block) | self._field(data, test_scores),
            policy={"threshold_review": repr(review), "threshold_block": repr(block)},
            metrics={"threshold_review": review, "threshold_block": block},
            figures={
                "pr_curve.png": plots.pr_curve(y, test_scores, f"{name}: precision-recall (test)"),
                "roc_curve.png": plots.roc_curve(y, test_scores, f"{name}: ROC (test)"),
                "calibration.png": plots.calibration(y, test_scores, f"{name}: calibration (test)"),
                "confusion.png": plots.confusion(
                    y, test_scores, review, f"{name}: confusion at review threshold (test)"
                ),
            },
        )

    def _metrics(self, frame: pd.DataFrame, scores: np.ndarray, review: float, block: float) -> dict[str, float]:
        y, amount = frame["label"].to_numpy(), frame["amount_eur"].to_numpy()
        metrics = evaluate(
            y,
            scores,
            event_time=frame["event_time"].to_numpy(),
            entity=frame[self.fs.entity_column].to_numpy(),
            amount=amount,
            threshold=review,
            cost=self.cost,
        )
        decided = decision_costs(y, scores, amount, review, block, self.cost)
        return metrics | {
            "review_rate": float(((scores >= review) & (scores < block)).mean()),
            "block_rate": float((scores >= block).mean()),
            "decision_cost_per_1k": decided / len(y) * 1000.0,
        }

    def _field(self, data: Splits, scores: np.ndarray) -> dict[str, float]:
        """The field's figures (`training.protocol`) on the test payments of cards not known compromised.

        Training and validation hold the labels known at the cut-off; the windows already leave a
        delay period as long as the feedback delay between them and the test window.
        """
        card = self.fs.entity_column
        known = known_compromised(
            np.concatenate([data.train[card].to_numpy(), data.validation[card].to_numpy()]),
            np.concatenate([data.train["label"].to_numpy(), data.validation["label"].to_numpy()]),
        )
        keep = ~data.test[card].isin(known).to_numpy()
        y = data.test["label"].to_numpy()[keep]
        both = 0 < y.sum() < len(y)
        return {
            "field_roc_auc": float(roc_auc_score(y, scores[keep])) if both else float("nan"),
            "field_ap": float(average_precision_score(y, scores[keep])) if both else float("nan"),
            "field_card_precision_top_k": field_card_precision_top_k(
                y, scores[keep], data.test["event_time"].to_numpy()[keep], data.test[card].to_numpy()[keep], self.top_k
            ),
            "field_excluded_payments": float((~keep).sum()),
        }

    def fold_score(self, validation: pd.DataFrame, scores: np.ndarray, train: pd.DataFrame) -> dict[str, float]:
        """A prequential fold's figures: AP, and the field's card precision top-k on the cards its
        training period did not already know compromised."""
        card = self.fs.entity_column
        known = known_compromised(train[card].to_numpy(), train["label"].to_numpy())
        keep = ~validation[card].isin(known).to_numpy()
        y = validation["label"].to_numpy()
        return {
            "average_precision": float(average_precision_score(y, scores)) if 0 < y.sum() < len(y) else float("nan"),
            "field_card_precision_top_k": field_card_precision_top_k(
                y[keep],
                scores[keep],
                validation["event_time"].to_numpy()[keep],
                validation[card].to_numpy()[keep],
                self.top_k,
            ),
        }

    def wrap(self, estimator: Any, evaluation: Evaluation | None) -> PythonModel:
        return ProbabilityModel(estimator, self.inputs())

    def columns(self) -> list[Column]:
        return [
            ("val AP", lambda r: number(r.validation["average_precision"], ".3f")),
            ("test ROC AUC", lambda r: number(r.test["roc_auc"], ".3f")),
            ("test AP", lambda r: number(r.test["average_precision"], ".3f")),
            ("card prec. top-k", lambda r: number(r.test["card_precision_top_k"], ".3f")),
            ("field AP", lambda r: number(r.test["field_ap"], ".3f")),
            (f"field card prec. top-{self.top_k}", lambda r: number(r.test["field_card_precision_top_k"], ".3f")),
            (
                "review / block from",
                lambda r: (
                    f"{r.evaluation.metrics['threshold_review']:.2g} / {r.evaluation.metrics['threshold_block']:.2g}"
                ),
            ),
            ("cost / 1k payments", lambda r: number(r.test["decision_cost_per_1k"], ".1f")),
        ]

    def tables(self, report: TrainReport) -> list[RenderableType]:
        return []


class FraudJob:
    unit = "payments"
    default_size = 500_000
    default_days = 90

    def simulate(
        self, out_dir: Path, *, size: int, days: int, seed: int, fmt: str, advance: Advance, difficulty: str = "hard"
    ) -> str:
        from training.simulators.fraud import simulate_fraud

        result = simulate_fraud(
            out_dir,
            n_payments=size,
            days=days,
            seed=seed,
            fmt=fmt,  # type: ignore[arg-type]
            progress=advance,
            difficulty=difficulty,  # type: ignore[arg-type]
        )
        return (
            f"{result.n_payments:,} payments ({result.n_fraud:,} fraud) to {result.payments}, "
            f"labels to {result.labels}, merchants to {result.merchants}"
        )

    def task(self, fs: FeatureSet, db: Path, options: TrainOptions) -> FraudTask:
        return FraudTask(fs, top_k=options.top_k)


JOB = FraudJob()
