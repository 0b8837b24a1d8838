"""One training harness for every use case: fit, evaluate, log, register, alias and summarize.

A use case differs only in its `Task`: the kind of model it learns, its candidates, metrics and
baseline, the metric that picks the champion, the decision policy the scorer reads from every
version, and its extra plots and tables. Everything else happens here, once, the same way for
fraud, loan and store:

- one MLflow experiment per use case; one run per candidate and one for the baseline, with the
  same params, metric names (`val_*`, `test_*`) and plot files;
- every plot at the run's artifact root, where the MLflow compare view looks (it lists only
  root-level files as common artifacts);
- every model logged as a pyfunc with a signature and an input example, both from float64 inputs
  (the dtype every scorer sends);
- every version registered with `use_case`, `featureset_version`, `candidate`, `task_kind`,
  `run_id` and its decision policy as model-version tags (the run carries the same tags), so the
  live scorer can refuse feature rows of another FeatureSet version;
- the dataset fingerprints of the exact rows each model saw;
- the best validation value of the selection metric is `champion`, the others
  `challenger-<candidate>`.

With `refit`, every registered model is fitted on the whole training window: the decision policy
and the champion are still chosen prequentially, by a fit on the part before the validation start
judged on the rest, and the candidate is then refitted on all of it.

Two options read prequential folds (`training.prequential`) of a task that scores them
(`fold_score`): the `field` protocol picks the champion by the folds' mean of the task's
`field_selection` metric (and refits, as the field trains on everything before the delay), and
`tune_trials` searches each candidate's hyperparameters on the folds (`training.tuning`) before
the chosen configuration is fitted like any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.pyfunc import PythonModel
from mlflow.utils.logging_utils import LoggerMessageFilter
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from features.featureset import FeatureSet
from training import plots
from training.ablation import Ablated
from training.candidates import SEARCH_SPACES, model_params
from training.datasets import Splits, Windows, time_span
from training.prequential import Fold, FoldScore, fold_metrics, load_folds
from training.store import connect

PIP_REQUIREMENTS = ["scikit-learn", "xgboost", "pandas", "numpy"]
PROTOCOLS = ("samestream", "field")
PREQUENTIAL = "prequential_"
"""Prefix of the validation figures averaged over the prequential folds."""
EXAMPLE_ROWS = 5
SIGNATURE_ROWS = 100
IMPORTANCE_ROWS = 5_000

Predict = Callable[[pd.DataFrame], np.ndarray]
"""A fitted model or baseline: a frame holding the task's inputs -> one number per row."""

# The wrappers are logged as Python objects on purpose: their classes live in the importable
# `training` package (cloudpickle stores a reference to them, not their code), the live scorer's
# one-row fast path is part of the object, and the registry is the project's own. MLflow warns
# about every such model and offers no switch, so that one message is filtered at its logger.
logging.getLogger("mlflow.pyfunc").addFilter(
    LoggerMessageFilter("mlflow.pyfunc", re.compile(r"Passing a Python object as `python_model`"))
)


@dataclass(frozen=True)
class WindowDays:
    """A use case's default split lengths in days: warm-up, validation, feedback delay, test."""

    warmup: int
    validation: int
    delay: int
    test: int


def resolve_windows(
    first: datetime,
    last: datetime,
    days: WindowDays,
    *,
    train_start: datetime | None = None,
    validation_start: datetime | None = None,
    train_end: datetime | None = None,
    test_start: datetime | None = None,
    test_end: datetime | None = None,
    validation_fraction: float | None = None,
) -> Windows:
    """The split windows: the dates given, the others derived from the nearest date given.

    The bounds after the training start form a chain of fixed lengths (validation, delay, test
    days). A missing bound is derived from the next bound given after it (train end = test start
    minus the delay), else from the one before it (test end = test start plus the test days, no
    later than the data's end). With no date given the chain ends at the last event, and the
    training starts a warm-up after the first event unless given. `validation_fraction` puts the
    validation start at that share of the training window before its end instead.
    """
    if validation_fraction is not None:
        if validation_start is not None:
            raise ValueError("give either a validation start or a validation fraction, not both")
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"the validation fraction must be between 0 and 1 (exclusive), got {validation_fraction}")
    end_of_data = last + timedelta(microseconds=1)
    chain = [validation_start, train_end, test_start, test_end]
    gaps = [timedelta(days=d) for d in (days.validation, days.delay, days.test)]
    derived = [value is None for value in chain]
    if validation_fraction is not None:
        chain[0], gaps[0] = None, timedelta(0)
    if all(value is None for value in chain[1:]):
        chain[3] = end_of_data
    for i in (2, 1, 0):
        later = chain[i + 1]
        if chain[i] is None and later is not None and (i > 0 or validation_fraction is None):
            chain[i] = later - gaps[i]
    for i in (1, 2, 3):
        earlier = chain[i - 1]
        if chain[i] is None and earlier is not None:
            chain[i] = earlier + gaps[i - 1]
    start = train_start or first + timedelta(days=days.warmup)
    if validation_fraction is not None:
        end = chain[1]
        assert end is not None
        chain[0] = end - (end - start) * validation_fraction
    if derived[3] and chain[2] is not None and chain[3] is not None and chain[2] < end_of_data < chain[3]:
        chain[3] = end_of_data
    bounds = [start, *chain]
    assert all(b is not None for b in bounds)
    windows = Windows(*bounds)  # type: ignore[arg-type]
    windows.check()
    return windows


def windows_for(
    db: str | Path, fs: FeatureSet, days: WindowDays, validation_fraction: float | None = None, **given: Any
) -> Windows:
    """`resolve_windows` over the time span of the FeatureSet's rows in the DuckDB file."""
    con = connect(db, read_only=True)
    try:
        first, last = time_span(con, fs)
    finally:
        con.close()
    return resolve_windows(first, last, days, validation_fraction=validation_fraction, **given)


def dataset_fingerprint(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """Hash of the exact rows, inputs and labels a model saw, independent of the DuckDB file.

    `columns` are the row id and the model's inputs; the label is always hashed with them.
    """
    hashed = pd.util.hash_pandas_object(frame[[*columns, "label"]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Selection:
    """The validation metric that picks the champion."""

    metric: str
    higher_is_better: bool
    heading: str
    """Its column heading in the summary, e.g. "val AP"."""

    def rank(self, metrics: dict[str, float]) -> float:
        """Sort key: the best value first, an undefined one last."""
        value = metrics.get(self.metric, math.nan)
        if not math.isfinite(value):
            return math.inf
        return -value if self.higher_is_better else value


@dataclass
class Evaluation:
    """What a task makes of one model: metrics, the decision policy it tags, plots, details."""

    validation: dict[str, float]
    test: dict[str, float]
    policy: dict[str, str] = field(default_factory=dict)
    """The decision policy the scorer reads (thresholds, pricing, spread): version and run tags."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Run metrics outside the `val_`/`test_` families (thresholds, data-quality counts)."""
    figures: dict[str, Figure] = field(default_factory=dict)
    detail: Any = None
    """Whatever the task's own tables need beyond metrics (a store policy's outcome, say)."""


@dataclass
class Result:
    """One model's run: registry version and alias, its evaluation and fit time."""

    candidate: str
    run_id: str
    version: str | None
    evaluation: Evaluation
    fit_seconds: float
    alias: str = ""

    @property
    def validation(self) -> dict[str, float]:
        return self.evaluation.validation

    @property
    def test(self) -> dict[str, float]:
        return self.evaluation.test

    @property
    def detail(self) -> Any:
        return self.evaluation.detail


@dataclass
class TrainReport:
    use_case: str
    experiment: str
    model_name: str
    windows: Windows
    rows: dict[str, int]
    refit: bool
    selection: Selection
    protocol: str = "samestream"
    tune_trials: int = 0
    results: list[Result] = field(default_factory=list)
    baseline: Result | None = None
    ablation: list[Ablated] = field(default_factory=list)

    @property
    def champion(self) -> Result | None:
        return next((r for r in self.results if r.alias == "champion"), None)


Column = tuple[str, Callable[[Result], str]]
"""A column of the summary table: heading, and the cell of one result."""


class Task(Protocol):
    """What a use case tells the harness; see `training.jobs.fraud` for an example."""

    fs: FeatureSet
    kind: str
    """`binary_classification`, `acceptance_at_rate` or `regression_forecast`."""
    window_days: WindowDays
    selection: Selection
    baseline_name: str
    importance_scoring: str
    """scikit-learn scorer of permutation importance, for models without native importances."""
    threads: int | None
    """Thread limit of fits and predictions (None: the libraries' defaults)."""
    noun: str
    """What the summary's title calls the models, e.g. "demand forecasts"."""
    row_unit: str
    """What the summary calls a row, e.g. "applications"."""

    def inputs(self) -> tuple[str, ...]:
        """The model's input columns, in the order the pyfunc and the scorer use."""
        ...

    def candidates(self, seed: int) -> dict[str, Any]:
        """Unfitted estimators by name, each with `fit(x, y)`."""
        ...

    def load(self, db: Path, windows: Windows) -> Splits:
        """Point-in-time train, validation and test frames with a `label` column."""
        ...

    def params(self) -> dict[str, Any]:
        """Settings of the task (costs, pricing, policy targets) logged as params of every run."""
        ...

    def fit_baseline(self, frame: pd.DataFrame) -> Predict:
        """The baseline every model must beat, fitted on `frame` if it learns anything."""
        ...

    def evaluate(
        self, name: str, validation: Predict, test: Predict, data: Splits, reference: Evaluation | None
    ) -> Evaluation:
        """Choose the decision policy on validation with `validation`, judge `test` on the test window.

        `reference` is the baseline's evaluation; None while the baseline itself is evaluated.
        """
        ...

    def wrap(self, estimator: Any, evaluation: Evaluation | None) -> PythonModel:
        """The pyfunc logged for a fitted estimator (its policy attached once it is known)."""
        ...

    def columns(self) -> list[Column]:
        """Task-specific columns of the summary table, after model, version and alias."""
        ...

    def tables(self, report: TrainReport) -> list[RenderableType]:
        """Anything the summary shows after the models' table."""
        ...


@dataclass(frozen=True)
class Prequential:
    """The prequential part of a training: folds, and what they are for."""

    folds: list[Fold]
    score: FoldScore
    selection: Selection | None
    """The champion's metric over the folds (the field protocol), or None: the task's own."""
    tune_trials: int = 0


def prequential_for(
    task: Task, db: Path, windows: Windows, *, protocol: str, n_folds: int, tune_trials: int
) -> Prequential | None:
    """The folds the protocol and the tuning budget need, or None when they need none."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
    if tune_trials < 0:
        raise ValueError(f"the tuning budget cannot be negative, got {tune_trials}")
    if protocol == "samestream" and not tune_trials:
        return None
    score: FoldScore | None = getattr(task, "fold_score", None)
    selection: Selection | None = getattr(task, "field_selection", None)
    if score is None or (protocol == "field" and selection is None):
        raise ValueError(
            f"the {task.fs.name} use case scores no prequential folds: the field protocol and tuning are "
            "for tasks with a `fold_score` and, for the field protocol, a `field_selection` (fraud)"
        )
    folds = load_folds(db, task.fs, windows, n_folds=n_folds, delay_days=task.window_days.delay)
    return Prequential(folds, score, selection if protocol == "field" else None, tune_trials)


def run(
    task: Task,
    db: Path,
    model_name: str,
    *,
    windows: Windows,
    candidates: Sequence[str] | None = None,
    seed: int = 7,
    refit: bool = False,
    on_fitted: Callable[[str], None] | None = None,
    protocol: str = "samestream",
    n_folds: int = 4,
    tune_trials: int = 0,
    ablation: bool = False,
) -> TrainReport:
    """Load the task's splits (and the folds the protocol or tuning need) and `train` on them;
    with `ablation`, refit the champion's candidate without each feature family in turn."""
    score: FoldScore | None = getattr(task, "fold_score", None)
    if ablation and (score is None or not task.fs.families):
        raise ValueError(f"the {task.fs.name} use case declares no feature families and scores to ablate")
    preq = prequential_for(task, db, windows, protocol=protocol, n_folds=n_folds, tune_trials=tune_trials)
    data = task.load(db, windows)
    report = train(task, data, model_name, candidates, seed, refit, on_fitted, preq)
    champion = report.champion
    if ablation and champion is not None and score is not None:
        from training import ablation as ablation_module

        estimator = task.candidates(seed)[champion.candidate]
        limit = threadpool_limits(task.threads) if task.threads else contextlib.nullcontext()
        with limit:
            report.ablation = ablation_module.ablate(estimator, data, task.inputs(), dict(task.fs.families), score)
        tags = {"featureset_version": task.fs.version, "use_case": task.fs.name, "task_kind": task.kind}
        ablation_module.log(report.ablation, champion.candidate, tags)
    return report


def train(
    task: Task,
    data: Splits,
    model_name: str,
    candidates: Sequence[str] | None = None,
    seed: int = 7,
    refit: bool = False,
    on_fitted: Callable[[str], None] | None = None,
    prequential: Prequential | None = None,
) -> TrainReport:
    """Fit, evaluate, log and register every candidate and the baseline; set the aliases."""
    available = task.candidates(seed)
    chosen = list(candidates or available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(
            f"unknown candidates {unknown} for the {task.fs.name} use case; expected some of {sorted(available)}"
        )
    limit = threadpool_limits(task.threads) if task.threads else contextlib.nullcontext()
    with limit:
        return _train(task, data, model_name, chosen, seed, refit, on_fitted, prequential)


def _train(
    task: Task,
    data: Splits,
    model_name: str,
    candidates: list[str],
    seed: int,
    refit: bool,
    on_fitted: Callable[[str], None] | None,
    preq: Prequential | None,
) -> TrainReport:
    fs, inputs = task.fs, list(task.inputs())
    selection = preq.selection if preq is not None and preq.selection is not None else task.selection
    protocol = "field" if preq is not None and preq.selection is not None else "samestream"
    refit = refit or protocol == "field"
    experiment = mlflow.set_experiment(fs.name)
    fit_frame = pd.concat([data.train, data.validation], ignore_index=True) if refit else data.train
    identity = [fs.row_id, *inputs]
    common = {
        "use_case": fs.name,
        "task_kind": task.kind,
        "featureset_version": fs.version,
        **{
            f"dataset_fingerprint_{name}": dataset_fingerprint(frame, identity)
            for name, frame in (("train", data.train), ("validation", data.validation), ("test", data.test))
        },
        "dataset_fingerprint_fit": dataset_fingerprint(fit_frame, identity),
        **data.windows.as_params(),
        "n_train": len(data.train),
        "n_validation": len(data.validation),
        "n_test": len(data.test),
        "n_fit": len(fit_frame),
        "refit_on_training_window": refit,
        "selection_metric": f"val_{selection.metric}",
        "protocol": protocol,
        "prequential_folds": 0 if preq is None else len(preq.folds),
        "tune_trials": 0 if preq is None else preq.tune_trials,
        **task.params(),
    }
    tags = {"featureset_version": fs.version, "use_case": fs.name, "task_kind": task.kind}
    report = TrainReport(
        fs.name,
        experiment.name,
        model_name,
        data.windows,
        {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
        refit,
        selection,
        protocol,
        0 if preq is None else preq.tune_trials,
    )

    name = task.baseline_name
    with mlflow.start_run(run_name=name, tags=tags | {"candidate": name, "role": "baseline"}) as run:
        mlflow.log_params(common | {"candidate": name})
        started = time.perf_counter()
        early = task.fit_baseline(data.train)
        final = task.fit_baseline(fit_frame) if refit else early
        fit_seconds = time.perf_counter() - started
        evaluation = task.evaluate(name, early, final, data, None)
        _log_evaluation(evaluation, fit_seconds)
        report.baseline = Result(name, run.info.run_id, None, evaluation, fit_seconds)

    for candidate in candidates:
        role = tags | {"candidate": candidate, "role": "candidate"}
        with mlflow.start_run(run_name=candidate, tags=role) as run:
            estimator = task.candidates(seed)[candidate]
            fold_figures, tuning = _prequential(task, estimator, candidate, preq, seed) if preq else ({}, {})
            mlflow.log_params(
                common | {"candidate": candidate} | {f"model_{k}": v for k, v in model_params(estimator).items()}
            )
            _log_inputs(task, data, fit_frame)
            started = time.perf_counter()
            estimator.fit(*_xy(data.train, inputs))
            fit_seconds = time.perf_counter() - started
            early_model = task.wrap(estimator, None)
            final_estimator = estimator
            if refit:
                final_estimator = clone(estimator)
                started = time.perf_counter()
                final_estimator.fit(*_xy(fit_frame, inputs))
                fit_seconds += time.perf_counter() - started
            final_model = task.wrap(final_estimator, None)
            evaluation = task.evaluate(
                candidate,
                lambda frame, m=early_model: m.predict(None, frame),  # type: ignore[misc]
                lambda frame, m=final_model: m.predict(None, frame),  # type: ignore[misc]
                data,
                report.baseline.evaluation,
            )
            evaluation.validation |= {PREQUENTIAL + k: v for k, v in fold_figures.items()}
            evaluation.metrics |= tuning
            evaluation.figures["feature_importance.png"] = _importance(task, estimator, data.validation, candidate)
            _log_evaluation(evaluation, fit_seconds)
            version = _log_and_register(
                task, task.wrap(final_estimator, evaluation), data, model_name, run.info.run_id, role, evaluation
            )
            report.results.append(Result(candidate, run.info.run_id, version, evaluation, fit_seconds))
        if on_fitted is not None:
            on_fitted(candidate)
    _set_aliases(report, selection)
    return report


def _prequential(
    task: Task, estimator: Any, candidate: str, preq: Prequential, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The folds' figures of the candidate, tuned first if there is a budget and a search space.

    Tuning maximizes the metric that picks the champion, on the folds; the winning configuration
    is set on `estimator`. Returns the folds' figures and the tuning's metrics (the defaults' and
    the best value of that metric).
    """
    inputs = task.inputs()
    metric = (preq.selection or task.selection).metric.removeprefix(PREQUENTIAL)
    space = SEARCH_SPACES.get(candidate)
    if not preq.tune_trials or space is None:
        return fold_metrics(estimator, preq.folds, inputs, preq.score), {}
    from training.tuning import tune

    measured: dict[str, dict[str, float]] = {}

    def objective(params: dict[str, Any]) -> float:
        figures = fold_metrics(clone(estimator).set_params(**params), preq.folds, inputs, preq.score)
        measured[repr(sorted(params.items()))] = figures
        return figures[metric]

    tuned = tune(objective, space, trials=preq.tune_trials, seed=seed)
    estimator.set_params(**tuned.params)
    tuning = {f"tuning_default_{metric}": tuned.default_value, f"tuning_best_{metric}": tuned.best_value}
    return measured[repr(sorted(tuned.params.items()))], tuning


def _xy(frame: pd.DataFrame, inputs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return frame[inputs].to_numpy(dtype=np.float64), frame["label"].to_numpy()


def _log_inputs(task: Task, data: Splits, fit_frame: pd.DataFrame) -> None:
    """The splits as MLflow datasets, float64 like the model's inputs (no integer-schema hint)."""
    columns = [*task.inputs(), "label"]
    contexts = (("training", fit_frame), ("validation", data.validation), ("test", data.test))
    for context, frame in contexts:
        dataset = from_pandas(
            frame[columns].astype("float64"), targets="label", name=f"{task.fs.name}-{context}-{task.fs.version}"
        )
        mlflow.log_input(dataset, context=context)


def _log_evaluation(evaluation: Evaluation, fit_seconds: float) -> None:
    mlflow.log_metrics(
        {f"val_{k}": v for k, v in evaluation.validation.items()}
        | {f"test_{k}": v for k, v in evaluation.test.items()}
        | evaluation.metrics
        | {"fit_seconds": fit_seconds}
    )
    if evaluation.policy:
        mlflow.set_tags(evaluation.policy)
    for file_name, figure in evaluation.figures.items():
        mlflow.log_figure(figure, file_name)
    evaluation.figures.clear()


def _importance(task: Task, estimator: Any, frame: pd.DataFrame, candidate: str) -> Figure:
    names = list(task.inputs())
    sample = frame.head(IMPORTANCE_ROWS)
    values = plots.importances(
        estimator,
        names,
        sample[names].to_numpy(dtype=np.float64),
        sample["label"].to_numpy(),
        scoring=task.importance_scoring,
        stratify=task.kind != "regression_forecast",
    )
    return plots.feature_importance(names, values, f"{candidate}: feature importance")


def _log_and_register(
    task: Task,
    model: PythonModel,
    data: Splits,
    model_name: str,
    run_id: str,
    tags: dict[str, str],
    evaluation: Evaluation,
) -> str:
    """Log the pyfunc with its signature and example; register it as a version with its tags.

    Registration goes through the client, which says nothing, rather than the fluent API's
    `registered_model_name`, which prints what it did to stderr.
    """
    sample = data.validation[list(task.inputs())].head(SIGNATURE_ROWS).astype("float64")
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=model,
        signature=infer_signature(sample, np.asarray(model.predict(None, sample), dtype=np.float64)),
        input_example=sample.head(EXAMPLE_ROWS),
        pip_requirements=PIP_REQUIREMENTS,
    )
    client = MlflowClient()
    try:
        client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        client.create_registered_model(model_name, tags={"use_case": task.fs.name})
    version = client.create_model_version(
        model_name,
        info.model_uri,
        run_id=run_id,
        tags=tags | evaluation.policy | {"run_id": run_id},
        model_id=info.model_id,
    )
    return str(version.version)


def _set_aliases(report: TrainReport, selection: Selection) -> None:
    client = MlflowClient()
    ranked = sorted((r for r in report.results if r.version), key=lambda r: selection.rank(r.validation))
    for rank, result in enumerate(ranked):
        result.alias = "champion" if rank == 0 else f"challenger-{result.candidate.replace('_', '-')}"
        client.set_registered_model_alias(report.model_name, result.alias, str(result.version))


def render(report: TrainReport, task: Task) -> RenderableType:
    """The printed summary: windows and rows, one row per model and the baseline, the task's tables."""
    w = report.windows
    table = Table(
        title=f"{report.experiment}: {task.noun} on the test window {w.test_start:%Y-%m-%d} – {w.test_end:%Y-%m-%d}"
    )
    columns = task.columns() + _prequential_columns(report)
    for heading in ("model", "version", "alias", *(h for h, _ in columns), "fit s"):
        table.add_column(heading, justify="left" if heading in ("model", "alias") else "right")
    rows = [*report.results, report.baseline] if report.baseline else report.results
    for r in rows:
        table.add_row(
            r.candidate, r.version or "-", r.alias or "-", *(cell(r) for _, cell in columns), f"{r.fit_seconds:.1f}"
        )
    n = report.rows
    fitted = (
        "; registered models refitted on the whole training window (policy and champion chosen prequentially on "
        "validation)"
        if report.refit
        else ""
    )
    tuned = f", each tuned in {report.tune_trials} trials on the prequential folds" if report.tune_trials else ""
    summary = Text(
        f"train {n['train']:,} {task.row_unit} from {w.train_start:%Y-%m-%d}, validation {n['validation']:,} from "
        f"{w.validation_start:%Y-%m-%d}, test {n['test']:,}; training labels as known at {w.cutoff:%Y-%m-%d}; "
        f"champion by {report.selection.heading}{tuned}; registered as {report.model_name}{fitted}"
    )
    extra: list[RenderableType] = []
    if report.ablation and report.champion is not None:
        from training.ablation import table as ablation_table

        metrics = list(report.ablation[0].test)
        ablated = [
            (f"{'val' if split == 'validation' else 'test'} {_SHORT.get(m, m.replace('_', ' '))}", split, m)
            for split in ("validation", "test")
            for m in metrics
        ]
        note = Text(
            f"ablation with {report.champion.candidate}'s default configuration, fitted on the training part; "
            "test figures of the field protocol leave out the cards known compromised by then"
        )
        extra = [ablation_table(report.ablation, report.champion.candidate, ablated), note]
    return Group(summary, table, *task.tables(report), *extra)


_SHORT = {"average_precision": "AP", "field_card_precision_top_k": "field card prec. top-k"}


def _prequential_columns(report: TrainReport) -> list[Column]:
    """The folds' selection metric under the field protocol, and what tuning gained on the folds."""
    columns: list[Column] = []
    if report.protocol == "field":
        metric = report.selection.metric
        columns.append((report.selection.heading, lambda r: number(r.validation.get(metric, math.nan), ".3f")))
    if report.tune_trials:

        def gain(r: Result) -> str:
            found = [v for k, v in sorted(r.evaluation.metrics.items()) if k.startswith("tuning_")]
            return "-" if len(found) != 2 else f"{found[1]:.3f} → {found[0]:.3f}"

        columns.append(("tuning: default → best", gain))
    return columns


def number(value: float, spec: str) -> str:
    """A cell: the value formatted, or "-" when it is undefined."""
    return "-" if not math.isfinite(value) else format(value, spec)
