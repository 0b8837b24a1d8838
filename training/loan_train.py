"""Fit acceptance models P(accept | features, rate), value the rates they choose, register them.

The training rows are the application features joined to their outcome as known at the
cut-off (`training.datasets.splits`), plus the rate that was offered (from the same outcome).
Every candidate is logged to the `loan` experiment with the same params, metric names and
plots; the naive baseline (acceptance from the rate alone) gets a run too. Besides ROC AUC, log
loss and Brier score, each run values the rates the model would choose
(`features.loan.pricing.choose_rates`) by the ground truth and offline (`training.loan_policy`)
against the best fixed rate. Models are registered as versions of one registered model with
their pricing policy as tags; the lowest validation log loss gets `champion`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from features.featureset import FeatureSet
from features.loan.featureset import MODEL_INPUTS, RATE_FEATURE
from features.loan.pricing import PricingPolicy, choose_rates
from training import candidates as shared_candidates
from training import plots
from training.candidates import model_params
from training.datasets import Splits, Windows, default_windows, splits, time_span
from training.loan_policy import (
    Baselines,
    Predict,
    Truth,
    acceptance_matrix,
    align_truth,
    baselines,
    best_fixed_rate_offline,
    policy_metrics,
    truth_value,
)
from training.plots import _figure
from training.pyfunc import ProbabilityModel
from training.store import connect, table_names
from training.train import PIP_REQUIREMENTS

WARMUP_DAYS = 30
VALIDATION_DAYS = 20
OFFER_VALID_DAYS = 30
TEST_DAYS = 30
BASELINE = "rate_only_logistic"


def loan_windows(first: Any, last: Any) -> Windows:
    """Windows for loans: a month of warm-up, and a gap of one offer validity before the test."""
    return default_windows(
        first,
        last,
        warmup_days=WARMUP_DAYS,
        validation_days=VALIDATION_DAYS,
        delay_days=OFFER_VALID_DAYS,
        test_days=TEST_DAYS,
    )


def default_loan_windows(db_path: str | Path, fs: FeatureSet) -> Windows:
    con = connect(db_path, read_only=True)
    try:
        return loan_windows(*time_span(con, fs))
    finally:
        con.close()


def load_loan_splits(db_path: str | Path, fs: FeatureSet, windows: Windows | None = None) -> Splits:
    """Point-in-time splits, each row with the rate it was offered and that rate's propensity."""
    con = connect(db_path, read_only=True)
    try:
        windows = windows or loan_windows(*time_span(con, fs))
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


def loan_candidates(seed: int) -> dict[str, Any]:
    """The shared candidates, boosted trees constrained to accept less as the rate rises.

    Without the constraint a tree can learn a bump in acceptance at some rate from noise, and
    the pricing would chase it.
    """
    monotone = [0] * (len(MODEL_INPUTS) - 1) + [-1]
    return {
        "logistic_regression": shared_candidates.logistic_regression(seed),
        "hist_gradient_boosting": shared_candidates.hist_gradient_boosting(seed).set_params(monotonic_cst=monotone),
        "xgboost": shared_candidates.xgboost(seed).set_params(
            monotone_constraints=tuple(monotone), eval_metric="logloss"
        ),
    }


CANDIDATES = tuple(loan_candidates(0))


@dataclass
class LoanResult:
    candidate: str
    run_id: str
    version: str | None
    validation: dict[str, float]
    test: dict[str, float]
    fit_seconds: float
    alias: str = ""


@dataclass
class LoanTrainReport:
    experiment: str
    model_name: str
    windows: Windows
    policy: PricingPolicy
    n_rows: dict[str, int]
    reference: dict[str, Baselines]
    """Split -> values of the baseline policies."""
    has_truth: bool
    results: list[LoanResult] = field(default_factory=list)
    baseline: LoanResult | None = None


def fingerprint(frame: pd.DataFrame) -> str:
    """Hash of the exact rows, inputs and labels a model saw."""
    hashed = pd.util.hash_pandas_object(frame[["application_id", *MODEL_INPUTS, "label"]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


def _x(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(MODEL_INPUTS)].to_numpy(dtype="float64")


def _classification(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    both = 0 < y.sum() < len(y)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "acceptance_rate": float(y.mean()),
        "mean_p_accept": float(p.mean()),
    }


@dataclass
class Scored:
    """One split scored by one model: metrics, scores at the offered rates, and pricing."""

    metrics: dict[str, float]
    scores: np.ndarray
    accept: np.ndarray
    """P(accept) of each application at each grid rate."""
    rates: np.ndarray
    """The rates the model's pricing chooses."""
    fixed_rate: float
    """The fixed rate it is compared with offline."""


def _score_split(
    predict: Predict,
    frame: pd.DataFrame,
    truth: Truth | None,
    reference: Baselines,
    policy: PricingPolicy,
    fixed_rate: float | None = None,
) -> Scored:
    """Score one split; `fixed_rate` None picks the best fixed rate offline on this split."""
    x = _x(frame)
    scores = np.asarray(predict(x), dtype=np.float64)
    accept = acceptance_matrix(predict, x[:, :-1], policy.grid())
    rates, _, chosen = choose_rates(accept, frame["amount_eur"], frame["term_months"], frame["pd_annual"], policy)
    if fixed_rate is None:
        fixed_rate = best_fixed_rate_offline(accept, scores, frame, policy)
    metrics = _classification(frame["label"].to_numpy(), scores) | policy_metrics(
        accept, chosen, scores, frame, truth, reference, policy, fixed_rate
    )
    return Scored(metrics | reference.metrics(), scores, accept, rates, fixed_rate)


def train_loan(
    fs: FeatureSet,
    data: Splits,
    model_name: str,
    candidates: Sequence[str] = CANDIDATES,
    seed: int = 7,
    policy: PricingPolicy | None = None,
    truth: pd.DataFrame | None = None,
    on_fitted: Callable[[str], None] | None = None,
) -> LoanTrainReport:
    """Fit, evaluate, log and register every candidate; set the aliases.

    `truth` is the simulator's ground truth (`training.loan_policy.load_truth`); without it the
    rates are valued offline only.
    """
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown:
        raise ValueError(f"unknown candidates {unknown}; expected some of {sorted(CANDIDATES)}")
    policy = policy or PricingPolicy()
    frames = {"val": data.validation, "test": data.test}
    truths = {k: align_truth(truth, f) if truth is not None else None for k, f in frames.items()}
    reference = {k: baselines(f, truths[k], policy) for k, f in frames.items()}
    experiment = mlflow.set_experiment(fs.name)
    report = LoanTrainReport(
        experiment=experiment.name,
        model_name=model_name,
        windows=data.windows,
        policy=policy,
        n_rows={"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
        reference=reference,
        has_truth=truth is not None,
    )
    common = {
        "use_case": fs.name,
        "featureset_version": fs.version,
        **{f"dataset_fingerprint_{k}": fingerprint(getattr(data, k)) for k in ("train", "validation", "test")},
        **data.windows.as_params(),
        "n_train": len(data.train),
        "n_validation": len(data.validation),
        "n_test": len(data.test),
        "rate_feature": RATE_FEATURE,
        "ground_truth": truth is not None,
        **policy.as_params(),
    }
    tags = {"featureset_version": fs.version, "use_case": fs.name}
    x_train, y_train = _x(data.train), data.train["label"].to_numpy()

    def evaluate(candidate: str, predict: Predict) -> tuple[dict[str, float], dict[str, float]]:
        val = _score_split(predict, data.validation, truths["val"], reference["val"], policy)
        test = _score_split(predict, data.test, truths["test"], reference["test"], policy, val.fixed_rate)
        mlflow.log_metrics(
            {f"val_{k}": v for k, v in val.metrics.items()} | {f"test_{k}": v for k, v in test.metrics.items()}
        )
        _log_policy_plots(candidate, data.test, truths["test"], reference["test"], test, policy)
        return val.metrics, test.metrics

    with mlflow.start_run(run_name=BASELINE, tags=tags | {"candidate": BASELINE}) as run:
        mlflow.log_params(common | {"candidate": BASELINE})
        started = time.perf_counter()
        rate_only = LogisticRegression(max_iter=1000).fit(x_train[:, -1:], y_train)
        fit_seconds = time.perf_counter() - started
        val, test = evaluate(BASELINE, lambda x: rate_only.predict_proba(x[:, -1:])[:, 1])
        mlflow.log_metric("fit_seconds", fit_seconds)
        report.baseline = LoanResult(BASELINE, run.info.run_id, None, val, test, fit_seconds)

    built = loan_candidates(seed)
    for candidate in candidates:
        with mlflow.start_run(run_name=candidate, tags=tags | {"candidate": candidate}) as run:
            estimator = built[candidate]
            mlflow.log_params(
                common | {"candidate": candidate} | {f"model_{k}": v for k, v in model_params(estimator).items()}
            )
            _log_inputs(fs, data)
            started = time.perf_counter()
            estimator.fit(x_train, y_train)
            fit_seconds = time.perf_counter() - started
            mlflow.log_metric("fit_seconds", fit_seconds)
            wrapped = ProbabilityModel(estimator, MODEL_INPUTS)
            val, test = evaluate(candidate, _positive_class(estimator))
            _log_importance(candidate, estimator, data.validation)
            sample = data.validation[list(MODEL_INPUTS)].head(100).astype("float64")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=wrapped,
                signature=infer_signature(sample, wrapped.predict(None, sample)),
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=model_name,
            )
            version = str(info.registered_model_version) if info.registered_model_version else None
            if version:
                client = MlflowClient()
                version_tags = tags | {"candidate": candidate, "run_id": run.info.run_id, "rate_feature": RATE_FEATURE}
                for key, value in (version_tags | policy.as_params()).items():
                    client.set_model_version_tag(model_name, version, key, str(value))
            report.results.append(LoanResult(candidate, run.info.run_id, version, val, test, fit_seconds))
        if on_fitted is not None:
            on_fitted(candidate)
    _set_aliases(report)
    return report


def _positive_class(estimator: Any) -> Predict:
    def predict(x: np.ndarray) -> np.ndarray:
        return estimator.predict_proba(x)[:, 1]  # type: ignore[no-any-return]

    return predict


def _log_inputs(fs: FeatureSet, data: Splits) -> None:
    for context, frame in (("training", data.train), ("validation", data.validation), ("test", data.test)):
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            frame[[*MODEL_INPUTS, "label"]], targets="label", name=f"{fs.name}-{context}-{fs.version}"
        )
        mlflow.log_input(dataset, context=context)


def _log_importance(candidate: str, estimator: Any, frame: pd.DataFrame) -> None:
    sample = frame.head(5000)
    values = plots.importances(estimator, list(MODEL_INPUTS), _x(sample), sample["label"].to_numpy())
    figure = plots.feature_importance(list(MODEL_INPUTS), values, f"{candidate}: feature importance")
    mlflow.log_figure(figure, "plots/feature_importance.png")


def _log_policy_plots(
    candidate: str,
    frame: pd.DataFrame,
    truth: Truth | None,
    reference: Baselines,
    scored: Scored,
    policy: PricingPolicy,
) -> None:
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

    figures = {
        "roc_curve.png": plots.roc_curve(y, scores, f"{candidate}: ROC of acceptance (test)"),
        "calibration.png": calibration,
        "acceptance_by_rate.png": by_rate,
        "policy_value.png": value,
        "chosen_rates.png": chosen,
    }
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}")


def _set_aliases(report: LoanTrainReport) -> None:
    client = MlflowClient()
    ranked = sorted(
        (r for r in report.results if r.version),
        key=lambda r: np.nan_to_num(r.validation["log_loss"], nan=np.inf),
    )
    for rank, result in enumerate(ranked):
        result.alias = "champion" if rank == 0 else f"challenger-{result.candidate.replace('_', '-')}"
        client.set_registered_model_alias(report.model_name, result.alias, result.version)  # type: ignore[arg-type]
