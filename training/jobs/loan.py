"""Loan offers: simulate applications and their world; learn P(accept | features, rate) and value its rates.

The training rows are the application features joined to their outcome as known at the cut-off
(`training.datasets.splits`), plus the rate that was offered (from the same outcome). Besides ROC
AUC, log loss and Brier score, each run values the rates the model's pricing would choose
(`features.loan.pricing.choose_rates`) by the ground truth and offline (`training.loan_policy`)
against the best fixed rate; the naive baseline knows the rate and nothing of the customer. The
pricing policy is tagged on every version; the lowest validation log loss is `champion`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.pyfunc import PythonModel
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from features.featureset import FeatureSet
from features.loan.featureset import RATE_FEATURE
from features.loan.pricing import PricingPolicy, choose_rates
from training import candidates as shared_candidates
from training import plots
from training.datasets import Splits, Windows, splits
from training.harness import Column, Evaluation, Predict, Selection, TrainReport, WindowDays, number
from training.jobs import Advance, TrainOptions
from training.loan_policy import (
    Baselines,
    Truth,
    acceptance_matrix,
    align_truth,
    baselines,
    best_fixed_rate_offline,
    load_truth,
    policy_metrics,
    truth_value,
)
from training.plots import _figure
from training.pyfunc import ProbabilityModel
from training.store import connect, table_names

TRUTH_FILE = "ground_truth.parquet"


def load_loan_splits(db_path: str | Path, fs: FeatureSet, windows: Windows) -> Splits:
    """Point-in-time splits, each row with the rate it was offered and that rate's propensity."""
    con = connect(db_path, read_only=True)
    try:
        data = splits(con, fs, windows)
        offers = con.execute(
            f"SELECT application_id, arg_max(offered_rate, known_at) AS {RATE_FEATURE}, "
            f"arg_max(rate_propensity, known_at) AS rate_propensity FROM {table_names(fs.name)['labels']} GROUP BY 1"
        ).df()
    finally:
        con.close()
    for name in ("train", "validation", "test"):
        frame = getattr(data, name).merge(offers, on="application_id", how="left", validate="one_to_one")
        frame["rate_propensity"] = frame["rate_propensity"].astype("float64")
        setattr(data, name, frame)
    return data


def _classification(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    both = 0 < y.sum() < len(y)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "acceptance_rate": float(y.mean()),
        "mean_p_accept": float(p.mean()),
    }


class _Scored:
    """One split scored by one model: metrics, scores at the offered rates, and pricing."""

    def __init__(
        self, metrics: dict[str, float], scores: np.ndarray, accept: np.ndarray, rates: np.ndarray, fixed_rate: float
    ) -> None:
        self.metrics = metrics
        self.scores = scores
        self.accept = accept
        """P(accept) of each application at each grid rate."""
        self.rates = rates
        """The rates the model's pricing chooses."""
        self.fixed_rate = fixed_rate
        """The fixed rate it is compared with offline."""


class LoanTask:
    """P(accept | features, rate) for the pricing; champion by validation log loss."""

    kind = "acceptance_at_rate"
    window_days = WindowDays(warmup=30, validation=20, delay=30, test=30)
    """A month of warm-up, and a gap of one offer validity (30 days) before the test."""
    selection = Selection("log_loss", higher_is_better=False, heading="val log loss")
    baseline_name = "rate_only_logistic"
    importance_scoring = "average_precision"
    threads = None
    noun = "acceptance models"
    row_unit = "applications"

    def __init__(self, fs: FeatureSet, truth: pd.DataFrame | None = None, policy: PricingPolicy | None = None) -> None:
        """`truth` is the simulator's ground truth (`training.loan_policy.load_truth`); without it the
        rates are valued offline only."""
        self.fs = fs
        self.truth = truth
        self.policy = policy or PricingPolicy()
        self._references: tuple[Splits, dict[str, Truth | None], dict[str, Baselines]] | None = None

    def inputs(self) -> tuple[str, ...]:
        return (*self.fs.feature_names, RATE_FEATURE)

    def candidates(self, seed: int) -> dict[str, Any]:
        """The shared candidates, boosted trees constrained to accept less as the rate rises.

        Without the constraint a tree can learn a bump in acceptance at some rate from noise, and
        the pricing would chase it.
        """
        monotone = [0] * (len(self.inputs()) - 1) + [-1]
        return {
            "logistic_regression": shared_candidates.logistic_regression(seed),
            "hist_gradient_boosting": shared_candidates.hist_gradient_boosting(seed).set_params(monotonic_cst=monotone),
            "xgboost": shared_candidates.xgboost(seed).set_params(
                monotone_constraints=tuple(monotone), eval_metric="logloss"
            ),
        }

    def load(self, db: Path, windows: Windows) -> Splits:
        return load_loan_splits(db, self.fs, windows)

    def params(self) -> dict[str, Any]:
        return {"rate_feature": RATE_FEATURE, "ground_truth": self.truth is not None, **self.policy.as_params()}

    def fit_baseline(self, frame: pd.DataFrame) -> Predict:
        """Acceptance from the offered rate alone."""
        rate_only = LogisticRegression(max_iter=1000).fit(
            frame[[RATE_FEATURE]].to_numpy(np.float64), frame["label"].to_numpy()
        )

        def predict(rows: pd.DataFrame) -> np.ndarray:
            return rate_only.predict_proba(rows[[RATE_FEATURE]].to_numpy(np.float64))[:, 1]  # type: ignore[no-any-return]

        return predict

    def references(self, data: Splits) -> tuple[dict[str, Truth | None], dict[str, Baselines]]:
        """Ground truth aligned with validation and test, and the reference policies' values."""
        if self._references is None or self._references[0] is not data:
            frames = {"val": data.validation, "test": data.test}
            truths = {k: align_truth(self.truth, f) if self.truth is not None else None for k, f in frames.items()}
            reference = {k: baselines(f, truths[k], self.policy) for k, f in frames.items()}
            self._references = (data, truths, reference)
        return self._references[1], self._references[2]

    def _score(
        self, predict: Predict, frame: pd.DataFrame, split: str, data: Splits, fixed_rate: float | None
    ) -> _Scored:
        """Score one split; `fixed_rate` None picks the best fixed rate offline on this split."""
        truths, reference = self.references(data)
        names = list(self.inputs())

        def on_arrays(x: np.ndarray) -> np.ndarray:
            return np.asarray(predict(pd.DataFrame(x, columns=names)), dtype=np.float64)

        x = frame[names].to_numpy(dtype=np.float64)
        scores = on_arrays(x)
        accept = acceptance_matrix(on_arrays, x[:, :-1], self.policy.grid())
        rates, _, chosen = choose_rates(
            accept, frame["amount_eur"], frame["term_months"], frame["pd_annual"], self.policy
        )
        if fixed_rate is None:
            fixed_rate = best_fixed_rate_offline(accept, scores, frame, self.policy)
        metrics = _classification(frame["label"].to_numpy(), scores) | policy_metrics(
            accept, chosen, scores, frame, truths[split], reference[split], self.policy, fixed_rate
        )
        return _Scored(metrics | reference[split].metrics(), scores, accept, rates, fixed_rate)

    def evaluate(
        self, name: str, validation: Predict, test: Predict, data: Splits, reference: Evaluation | None
    ) -> Evaluation:
        val = self._score(validation, data.validation, "val", data, None)
        scored = self._score(test, data.test, "test", data, val.fixed_rate)
        truths, references = self.references(data)
        return Evaluation(
            validation=val.metrics,
            test=scored.metrics,
            policy={key: str(value) for key, value in self.policy.as_params().items()} | {"rate_feature": RATE_FEATURE},
            figures=_policy_plots(name, data.test, truths["test"], references["test"], scored, self.policy),
        )

    def wrap(self, estimator: Any, evaluation: Evaluation | None) -> PythonModel:
        return ProbabilityModel(estimator, self.inputs())

    def columns(self) -> list[Column]:
        truth = self.truth is not None
        return [
            ("val log loss", lambda r: number(r.validation["log_loss"], ".4f")),
            ("test ROC AUC", lambda r: number(r.test["roc_auc"], ".3f")),
            ("test log loss", lambda r: number(r.test["log_loss"], ".4f")),
            ("test Brier", lambda r: number(r.test["brier"], ".4f")),
            ("EV/app truth", lambda r: number(r.test.get("ev_truth", float("nan")), ",.1f")),
            (
                "EV/app offline",
                lambda r: f"{number(r.test['ev_offline'], ',.1f')} (n={int(r.test['offline_matches'])})",
            ),
            ("vs best fixed: truth", lambda r: f"{r.test['uplift_vs_best_fixed_truth']:+.1%}" if truth else "-"),
            ("offline", lambda r: f"{r.test['uplift_vs_fixed_offline']:+.1%}"),
            ("mean rate", lambda r: f"{r.test['mean_rate']:.2%}"),
        ]

    def tables(self, report: TrainReport) -> list[RenderableType]:
        assert report.baseline is not None
        ref = self.references_of(report)
        policies = Table(title="pricing policies on the test window: expected value per application")
        for column in ("policy", "EV/app truth", "EV/app offline"):
            policies.add_column(column, justify="left" if column == "policy" else "right")
        champion = report.champion
        if champion is not None:
            policies.add_row(
                f"champion's rates ({champion.candidate})",
                number(champion.test.get("ev_truth", float("nan")), ",.1f"),
                number(champion.test["ev_offline"], ",.1f"),
            )
            policies.add_row(
                f"best fixed rate (by truth {ref['best_fixed_rate_truth']:.2%}; "
                f"offline, chosen on validation {champion.test['fixed_rate_offline']:.2%})",
                number(ref["best_fixed_truth"], ",.1f"),
                number(champion.test["fixed_offline"], ",.1f"),
            )
        policies.add_row(
            "historical randomized rates",
            number(ref["historical_truth"], ",.1f"),
            number(ref["historical_offline"], ",.1f"),
        )
        policies.add_row("oracle (true acceptance and PD)", number(ref["oracle_truth"], ",.1f"), "-")
        p = self.policy
        note = Text(
            f"rates {p.floor:.2%}–{p.cap:.2%} in steps of {p.step:.2%}, funding {p.funding_rate:.2%}, LGD {p.lgd:.0%}"
            + ("" if self.truth is not None else f"; no ground truth ({TRUTH_FILE}), so rates are valued offline only")
        )
        return [policies, note]

    @staticmethod
    def references_of(report: TrainReport) -> dict[str, float]:
        """The reference policies' test values, as every run logged them."""
        assert report.baseline is not None
        test = report.baseline.test
        nan = float("nan")
        keys = ("best_fixed_rate_truth", "best_fixed_truth", "historical_truth", "oracle_truth", "historical_offline")
        return {k: test.get(k, nan) for k in keys}


def _policy_plots(
    candidate: str,
    frame: pd.DataFrame,
    truth: Truth | None,
    reference: Baselines,
    scored: _Scored,
    policy: PricingPolicy,
) -> dict[str, Figure]:
    """ROC and calibration of acceptance, acceptance by rate, and the value of the chosen rates."""
    y = frame["label"].to_numpy()
    scores, rates = scored.scores, scored.rates
    calibration = plots.calibration(y, scores, f"{candidate}: calibration (test)")
    calibration.axes[0].set_ylabel("Observed acceptance rate", fontsize=11)
    grid = policy.grid()
    percent = grid * 100

    by_rate, ax = _figure(f"{candidate}: acceptance by offered rate (test)", "Offered rate (%)", "P(accept)")
    offered = frame[RATE_FEATURE].to_numpy()
    bins = np.unique(np.round(offered, 2))
    ax.plot(
        bins * 100, [y[np.round(offered, 2) == b].mean() for b in bins], "o", color=plots.REFERENCE, label="observed"
    )
    ax.plot(
        bins * 100,
        [scores[np.round(offered, 2) == b].mean() for b in bins],
        "-",
        color=plots.COLOR,
        lw=2,
        label="model",
    )
    ax.plot(percent, scored.accept.mean(axis=0), "--", color=plots.COLOR, label="model, everyone offered this rate")
    if truth is not None:
        ax.plot(
            percent, truth.acceptance(grid).mean(axis=0), ":", color="black", label="truth, everyone offered this rate"
        )
    ax.set_ylim(0.0, 1.0)
    ax.legend(loc="upper right", fontsize=10)

    value, ax = _figure(
        f"{candidate}: value per application (test)", "Fixed rate (%)", "Expected value per application"
    )
    if truth is not None:
        ax.plot(percent, reference.fixed_truth, color=plots.REFERENCE, lw=2, label="fixed rate (truth)")
        for name, level, style in (
            ("model's rates", float(np.mean(truth_value(rates, frame, truth, policy))), "-"),
            ("historical randomized", reference.historical_truth, "--"),
            ("oracle", reference.oracle_truth, ":"),
        ):
            ax.axhline(
                level, color=plots.COLOR if name == "model's rates" else "black", ls=style, label=f"{name} (truth)"
            )
    else:
        ax.text(0.5, 0.5, "no ground truth: see the ev_offline metrics", ha="center", transform=ax.transAxes)
    ax.legend(loc="lower right", fontsize=10)

    chosen, ax = _figure(f"{candidate}: rates chosen vs offered historically (test)", "Rate (%)", "Applications")
    edges = (np.append(percent, percent[-1] + policy.step * 100) - policy.step * 50).tolist()
    ax.hist(offered * 100, bins=edges, color=plots.REFERENCE, alpha=0.6, label="historical (randomized)")
    ax.hist(rates * 100, bins=edges, color=plots.COLOR, alpha=0.6, label="model's choice")
    ax.axvline(policy.floor * 100, color="black", ls="--", label="floor")
    ax.legend(loc="upper right", fontsize=10)

    return {
        "roc_curve.png": plots.roc_curve(y, scores, f"{candidate}: ROC of acceptance (test)"),
        "calibration.png": calibration,
        "acceptance_by_rate.png": by_rate,
        "policy_value.png": value,
        "chosen_rates.png": chosen,
    }


class LoanJob:
    unit = "applications"
    default_size = 50_000
    default_days = 180

    def simulate(self, out_dir: Path, *, size: int, days: int, seed: int, fmt: str, advance: Advance) -> str:
        from training.simulators.loan import simulate_loan

        result = simulate_loan(out_dir, n_applications=size, days=days, seed=seed, fmt=fmt, progress=advance)  # type: ignore[arg-type]
        return (
            f"{result.n_applications:,} applications ({result.n_accepted:,} offers taken), "
            f"{result.n_events:,} events in {', '.join(p.name for p in result.files.values())}, "
            f"master scale and ground truth to {result.folder}"
        )

    def task(self, fs: FeatureSet, db: Path, options: TrainOptions) -> LoanTask:
        """Rates are valued by the ground truth when the data folder has one (a simulation)."""
        truth = options.data_dir / TRUTH_FILE
        return LoanTask(fs, load_truth(truth) if truth.exists() else None)


JOB = LoanJob()
