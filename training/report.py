"""Champion against challengers on one self-contained HTML page, logged to MLflow.

The MLflow UI compares runs; this page compares the models behind the registry's aliases, the
ones the scorer and the shadow harness actually load: their offline metrics from training, how
often their decisions agree with the champion's (fraud: the alert; loan: the rate its pricing
offers) and how long one row takes to score (measured here on the test window, when the DuckDB
file is at hand), their live metrics from the shadow harness once there are any, and the plots
every training run logs. It works for every use case: what differs is its `View`, named by its registry entry. Plots are
embedded as base64 PNGs, so the page is one file that opens anywhere, attaches to a review, and
is kept as an artifact of a `comparison-report` run in the use case's experiment.

Nothing personal reaches the page: it shows model names, versions, run ids, metrics and plots,
never feature rows or the tracking store's address (which may hold credentials).
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel, load_model

from features.loan.pricing import PricingPolicy, choose_rates
from features.usecases import get_use_case, load_object
from training.loan_policy import acceptance_matrix
from training.store import connect, table_names

REPORT_RUN = "comparison-report"

PLOTS = ("pr_curve.png", "roc_curve.png", "calibration.png", "feature_importance.png", "confusion.png")
"""The order plots are shown in; any other plot a run logs follows, by name."""

Columns = tuple[tuple[str, str, bool | None], ...]
"""(metric name, column heading, higher is better; None: neither)."""
Decide = Callable[["ModelEntry", PyFuncModel, pd.DataFrame, np.ndarray], np.ndarray]
"""(entry, model, test rows, scores) -> each row's decision, comparable with the champion's."""


def _alerts(entry: ModelEntry, model: PyFuncModel, frame: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """Fraud: an alert where the score reaches the version's review threshold, as the scorer decides."""
    return scores >= entry.threshold


def _offered_rates(entry: ModelEntry, model: PyFuncModel, frame: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """Loan: the rate the version's pricing offers each application (`features.loan.pricing.choose_rates`)."""
    policy = PricingPolicy.from_params(entry.tags)
    names = model.metadata.get_input_schema().input_names()

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(pd.DataFrame(x, columns=names)), dtype=np.float64)

    accept = acceptance_matrix(predict, frame[names[:-1]].to_numpy(np.float64), policy.grid())
    rates, _, _ = choose_rates(accept, frame["amount_eur"], frame["term_months"], frame["pd_annual"], policy)
    return np.asarray(rates, dtype=np.float64)


@dataclass(frozen=True)
class View:
    """What the page shows of one use case's models."""

    unit: str
    """What one row is, e.g. "payment"."""
    offline: Columns
    decide: Decide | None
    """None: the page compares scoring latency only."""
    decision_note: str = ""


FRAUD_VIEW = View(
    "payment",
    (
        ("test_average_precision", "average precision", True),
        ("test_roc_auc", "ROC AUC", True),
        ("test_card_precision_top_k", "card precision top-k", True),
        ("test_field_roc_auc", "field protocol: ROC AUC (known compromised cards left out)", True),
        ("test_field_ap", "field protocol: average precision", True),
        ("test_field_card_precision_top_k", "field protocol: card precision top-k (k: the run's field_top_k)", True),
        ("test_precision_at_threshold", "precision at review threshold", True),
        ("test_recall_at_threshold", "recall at review threshold", True),
        ("test_alert_rate", "alert rate", False),
        ("test_decision_cost_per_1k", "cost of the decisions per 1k payments", False),
        ("test_expected_cost_per_1k", "expected cost per 1k payments", False),
        ("val_average_precision", "validation average precision", True),
        ("fit_seconds", "fit seconds", False),
    ),
    _alerts,
    "each model alerts at its own review threshold",
)
LOAN_VIEW = View(
    "application",
    (
        ("test_roc_auc", "ROC AUC", True),
        ("test_log_loss", "log loss", False),
        ("test_brier", "Brier score", False),
        ("test_ev_truth", "EV per application (truth)", True),
        ("test_ev_offline", "EV per application (offline)", True),
        ("test_uplift_vs_fixed_offline", "uplift vs the best fixed rate (offline)", True),
        ("test_mean_rate", "mean rate offered", None),
        ("val_log_loss", "validation log loss", False),
        ("fit_seconds", "fit seconds", False),
    ),
    _offered_rates,
    "each model offers the rate of highest expected value under its own pricing policy",
)
STORE_VIEW = View(
    "row",
    (
        ("test_wape", "WAPE", False),
        ("test_mae", "MAE", False),
        ("test_rmse", "RMSE", False),
        ("test_bias", "bias", None),
        ("test_policy_waste_cost", "waste cost of its orders", False),
        ("test_policy_stockout_rate", "stock-out days", False),
        ("test_policy_margin", "margin of its orders", True),
        ("val_wape", "validation WAPE", False),
        ("fit_seconds", "fit seconds", False),
    ),
    None,
)
GENERIC_VIEW = View("row", (), None)
"""A use case whose registry entry names no view: every test metric its runs logged, latency."""


def view_for(use_case: str) -> View:
    """The report view the use case's registry entry names (`features.usecases.UseCase.report`)."""
    path = get_use_case(use_case).report
    view: View = load_object(path) if path else GENERIC_VIEW
    return view


def _measured_columns(view: View) -> Columns:
    return (
        ("threshold_review", "review threshold", None),
        ("alert_rate", "alert rate", None),
        ("mean_decision", "mean rate offered", None),
        ("agreement_with_champion", "decisions agreeing with the champion", True),
        ("alerts_champion_missed", "alerts the champion does not raise", None),
        ("champion_alerts_missed", "champion alerts this model does not raise", None),
        ("latency_p50_ms", f"one {view.unit}, p50 ms", False),
        ("latency_p99_ms", f"one {view.unit}, p99 ms", False),
        ("batch_rows_per_s", "batch rows per second", True),
    )


LIVE_COLUMNS = (
    ("average_precision", "average precision", True),
    ("precision_at_k", "precision top-k", True),
    ("agreement_with_champion", "decisions agreeing with the champion", True),
    ("latency_p50_ms", "event to decision, p50 ms", False),
    ("latency_p99_ms", "event to decision, p99 ms", False),
    ("model_p50_ms", "model call, p50 ms", False),
    ("model_p99_ms", "model call, p99 ms", False),
    ("scored", "scored", None),
    ("labelled", "labelled", None),
    ("errors", "errors", False),
)
LIVE_PREFIX = "live_"


@dataclass
class ModelEntry:
    """One model on the page: a registered version behind an alias, or the rule baseline."""

    label: str
    candidate: str
    run_id: str
    version: str | None = None
    featureset_version: str = ""
    threshold: float = math.nan
    tags: dict[str, str] = field(default_factory=dict)
    """The version's tags: its decision policy."""
    offline: dict[str, float] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    live: dict[str, float] = field(default_factory=dict)
    plots: dict[str, bytes] = field(default_factory=dict)
    model_uri: str = ""


@dataclass
class Comparison:
    """Everything the page shows, gathered before any HTML is written."""

    use_case: str
    experiment_id: str
    model_name: str
    models: list[ModelEntry]
    test_window: tuple[str, str]
    selection_metric: str = ""
    measured_note: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def champion(self) -> ModelEntry:
        return self.models[0]

    @property
    def has_live(self) -> bool:
        return any(m.live for m in self.models)

    @property
    def view(self) -> View:
        return view_for(self.use_case)


def collect(client: MlflowClient, use_case: str, model_name: str) -> Comparison:
    """Read the aliased versions, their training runs, plots and live runs from MLflow.

    Raises LookupError, saying what to run, when the experiment, the registered model or its
    `champion` alias is missing.
    """
    experiment = client.get_experiment_by_name(use_case)
    if experiment is None:
        raise LookupError(
            f"no MLflow experiment {use_case!r} in this tracking store: run `samestream train {use_case}` "
            "(or `make train`) first, or point --tracking-uri / MLFLOW_TRACKING_URI at the store it wrote"
        )
    try:
        aliases = dict(client.get_registered_model(model_name).aliases)
    except MlflowException as exc:
        raise LookupError(
            f"no registered model {model_name!r} in this tracking store: train first, or pass --model-name"
        ) from exc
    if "champion" not in aliases:
        raise LookupError(
            f"registered model {model_name!r} has no `champion` alias (aliases: {sorted(aliases) or 'none'}): "
            f"run `samestream train {use_case}` or `samestream promote`"
        )
    models = [_version_entry(client, model_name, alias, aliases[alias]) for alias in _alias_order(aliases)]
    baseline = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.role = 'baseline'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if baseline:
        models.append(_run_entry("baseline", baseline[0]))
    with tempfile.TemporaryDirectory() as scratch:
        for entry in models:
            entry.plots = _plots(client, entry.run_id, Path(scratch) / entry.run_id)
    _attach_live(client, use_case, model_name, experiment.experiment_id, models)
    champion_params = client.get_run(models[0].run_id).data.params
    return Comparison(
        use_case=use_case,
        experiment_id=experiment.experiment_id,
        model_name=model_name,
        models=models,
        test_window=(champion_params.get("test_start", ""), champion_params.get("test_end", "")),
        selection_metric=champion_params.get("selection_metric", ""),
    )


def _alias_order(aliases: Mapping[str, str]) -> list[str]:
    """Champion first, then the challengers, then any other alias, each group by name."""
    return sorted(aliases, key=lambda a: (a != "champion", not a.startswith("challenger"), a))


def _run_entry(label: str, run: Run) -> ModelEntry:
    tags, metrics = run.data.tags, run.data.metrics
    return ModelEntry(
        label=label,
        candidate=tags.get("candidate", run.info.run_name or run.info.run_id),
        run_id=run.info.run_id,
        featureset_version=tags.get("featureset_version", ""),
        threshold=metrics.get("threshold_review", math.nan),
        offline={name: value for name, value in metrics.items() if name.startswith(("test_", "val_", "fit_"))},
    )


def _version_entry(client: MlflowClient, model_name: str, alias: str, version: str) -> ModelEntry:
    model_version = client.get_model_version(model_name, version)
    if not model_version.run_id:
        raise LookupError(f"{model_name} version {version} ({alias}) has no training run to read its metrics from")
    entry = _run_entry(alias, client.get_run(model_version.run_id))
    entry.version = str(version)
    entry.threshold = float(model_version.tags.get("threshold_review", entry.threshold))
    entry.tags = dict(model_version.tags)
    entry.model_uri = client.get_model_version_download_uri(model_name, version)
    return entry


def _plots(client: MlflowClient, run_id: str, scratch: Path) -> dict[str, bytes]:
    """The run's PNG plots by file name, from its artifact root (where training logs them)."""
    found = {
        Path(a.path).name: a.path for a in client.list_artifacts(run_id) if not a.is_dir and a.path.endswith(".png")
    }
    order = sorted(found, key=lambda name: (PLOTS.index(name) if name in PLOTS else len(PLOTS), name))
    return {name: Path(client.download_artifacts(run_id, found[name], str(scratch))).read_bytes() for name in order}


def _attach_live(
    client: MlflowClient, use_case: str, model_name: str, experiment_id: str, models: list[ModelEntry]
) -> None:
    """Attach each version's latest live metrics, with their `live_` prefix taken off.

    Live runs are those of the `<use case>-live` experiment the shadow harness writes and any
    run of the use case's experiment tagged `live=true`. A run names its model version with the
    `model_version` tag (its alias with `alias` when it has no version); the newest run wins.
    """
    experiment_ids = [experiment_id]
    live_experiment = client.get_experiment_by_name(f"{use_case}-live")
    if live_experiment is not None:
        experiment_ids.append(live_experiment.experiment_id)
    runs = client.search_runs(experiment_ids, order_by=["attributes.start_time DESC"], max_results=1000)
    by_version = {m.version: m for m in models if m.version}
    by_alias = {m.label: m for m in models if m.version}
    for run in runs:
        tags = run.data.tags
        is_live = run.info.experiment_id != experiment_id or tags.get("live", "").lower() == "true"
        if not is_live or tags.get("model_name", model_name) != model_name:
            continue
        entry = by_version.get(tags.get("model_version", "")) or by_alias.get(tags.get("alias", ""))
        if entry is None or entry.live:
            continue
        entry.live = {name.removeprefix(LIVE_PREFIX): value for name, value in run.data.metrics.items()}


def measure(comparison: Comparison, db: str | Path, max_rows: int = 50_000, latency_rows: int = 300) -> None:
    """Score the champion's test window with every version: decisions, agreement and latency.

    Each version decides as the scorer does with its own policy (`View.decide`). One-row
    latency times the pyfunc's `predict_one` (the live scorer's path) over `latency_rows` rows;
    batch throughput times `predict` over the whole sample. An input that is not a column of
    the feature rows (the loan rate) is read from the row's label, as a backtest does. The
    outcome, or why nothing was measured, goes to `comparison.measured_note`; it never raises
    for a missing database.
    """
    db = Path(db)
    champion = comparison.champion
    view = comparison.view
    start, end = comparison.test_window
    if not (start and end):
        comparison.measured_note = "not measured: the champion's run logged no test window"
        return
    if not db.exists():
        comparison.measured_note = f"not measured: no DuckDB file at {db} (run `make train`, or pass --db)"
        return
    names = table_names(comparison.use_case)
    con = connect(db, read_only=True)
    try:
        frame = con.execute(
            f"SELECT * FROM (SELECT * FROM {names['features']} "
            "WHERE featureset_version = ? AND event_time >= ? AND event_time < ?) "
            f"USING SAMPLE reservoir({int(max_rows)} ROWS) REPEATABLE (7)",
            [champion.featureset_version, start, end],
        ).df()
        labels = con.execute(f"SELECT * FROM {names['labels']} LIMIT 0").df().columns
        models = []
        for entry in comparison.models:
            if entry.model_uri and entry.featureset_version == champion.featureset_version:
                model = load_model(entry.model_uri)
                inputs = model.metadata.get_input_schema().input_names()
                frame = _with_label_inputs(con, names["labels"], frame, [c for c in inputs if c in labels])
                models.append((entry, model, inputs))
    finally:
        con.close()
    if frame.empty:
        comparison.measured_note = (
            f"not measured: {db.name} holds no rows of FeatureSet {champion.featureset_version} in the test "
            f"window {start} to {end} (run `samestream materialize {comparison.use_case}`)"
        )
        return
    frame = frame.sort_values("event_time", kind="stable").reset_index(drop=True)
    decisions: dict[str, np.ndarray] = {}
    for entry, model, inputs in models:
        rows = frame[inputs].astype("float64")
        started = time.perf_counter()
        scores = np.asarray(model.predict(rows), dtype=np.float64)
        batch_seconds = time.perf_counter() - started
        entry.measured = {"batch_rows_per_s": len(frame) / max(batch_seconds, 1e-9)}
        entry.measured |= _one_row_latency(model, rows, latency_rows)
        if view.decide is None:
            continue
        decided = decisions[entry.label] = view.decide(entry, model, frame, scores)
        if decided.dtype == bool:
            entry.measured |= {"threshold_review": entry.threshold, "alert_rate": float(decided.mean())}
        else:
            entry.measured["mean_decision"] = float(decided.mean())
    reference = decisions.get(champion.label)
    if reference is not None:
        for entry in comparison.models:
            own = decisions.get(entry.label)
            if own is None:
                continue
            entry.measured["agreement_with_champion"] = float((own == reference).mean())
            if own.dtype == bool:
                entry.measured["alerts_champion_missed"] = float((own & ~reference).sum())
                entry.measured["champion_alerts_missed"] = float((reference & ~own).sum())
    comparison.measured_note = (
        f"measured on {len(frame):,} {view.unit}s sampled from the test window {start[:10]} to {end[:10]} "
        f"(FeatureSet {champion.featureset_version})" + (f"; {view.decision_note}" if view.decision_note else "")
    )


def _with_label_inputs(con: Any, labels: str, frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows with the model inputs only their labels hold, each as known last."""
    missing = [c for c in columns if c not in frame.columns]
    if not missing or frame.empty:
        return frame
    key = next(c for c in frame.columns if c in con.execute(f"SELECT * FROM {labels} LIMIT 0").df().columns)
    known = con.execute(
        f'SELECT "{key}", '
        + ", ".join(f'arg_max("{c}", known_at) AS "{c}"' for c in missing)
        + f" FROM {labels} GROUP BY 1"
    ).df()
    return frame.merge(known, on=key, how="inner")


def _one_row_latency(model: PyFuncModel, inputs: pd.DataFrame, rows: int) -> dict[str, float]:
    """p50/p99 milliseconds of scoring one row the way the live scorer does.

    That is the wrapper's `predict_one` where it has one (every model `train` logs), else
    `predict` on a one-row frame.
    """
    names = list(inputs.columns)
    score_one = getattr(model.unwrap_python_model(), "predict_one", None)
    if score_one is None:

        def score_one(row: np.ndarray) -> object:
            return model.predict(pd.DataFrame([row], columns=names))

    values = inputs.head(rows).to_numpy(dtype=np.float64)
    for row in values[:20]:  # the first call builds the fast path; a few more warm the caches
        score_one(row)
    timings = []
    for row in values:
        started = time.perf_counter()
        score_one(row)
        timings.append((time.perf_counter() - started) * 1000.0)
    return {
        "latency_p50_ms": float(np.percentile(timings, 50)),
        "latency_p99_ms": float(np.percentile(timings, 99)),
    }


def render(comparison: Comparison) -> str:
    """The page as one HTML string: inline CSS, base64 images, no script, no external link."""
    c = comparison
    champion = c.champion
    title = f"{c.use_case}: champion against challengers"
    versions = sorted({m.featureset_version for m in c.models if m.featureset_version})
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        '<p class="meta">',
        f"Registered model <b>{_e(c.model_name)}</b> · champion <b>{_e(champion.candidate)}</b> "
        f"(version {_e(champion.version or '-')}) · FeatureSet {_e(', '.join(versions) or '-')} · "
        f"test window {_e(c.test_window[0][:10])} to {_e(c.test_window[1][:10])} · "
        f"generated {c.created:%Y-%m-%d %H:%M} UTC",
        "</p>",
        "<h2>Offline: the test window, labels as known at its end</h2>",
        f"<p>From the training runs. The champion was chosen on {_e(c.selection_metric or 'validation')}; "
        "the baseline is what every model must beat. Best value per column in bold.</p>",
        _table(c.models, _offline_columns(c), lambda m: m.offline),
        "<h2>Decisions and latency</h2>",
        f"<p>{_e(c.measured_note or 'not measured')}.</p>",
    ]
    measured = [m for m in c.models if m.measured]
    if measured:
        parts.append(_table(measured, _measured_columns(c.view), lambda m: m.measured))
    parts.append("<h2>Live: the shadow harness</h2>")
    if c.has_live:
        parts += [
            "<p>Latest metrics of each version's live run: the champion decides, challengers score the "
            "same feature stream in shadow; labels join as they arrive.</p>",
            _table([m for m in c.models if m.version], LIVE_COLUMNS, lambda m: m.live),
        ]
    else:
        parts.append(
            '<p class="empty">No live data yet. Run the scorer and the shadow harness '
            f"(<code>make serve</code>, <code>make shadow</code>); their runs land in the "
            f"<code>{_e(c.use_case)}-live</code> experiment and show up here.</p>"
        )
    parts += ["<h2>Plots of the test window</h2>", _plot_grid(c.models)]
    parts += [
        "<h2>Runs</h2><ul>",
        *(
            f"<li>{_e(m.label)}: {_e(m.candidate)}, run <code>{_e(m.run_id)}</code>"
            + (f", version {_e(m.version)}" if m.version else "")
            + "</li>"
            for m in c.models
        ),
        "</ul></body></html>",
    ]
    return "\n".join(parts)


def _offline_columns(comparison: Comparison) -> list[tuple[str, str, bool | None]]:
    """The use case's metrics; when its runs logged none of them, every test metric they logged."""
    logged = {n for m in comparison.models for n in m.offline}
    columns = comparison.view.offline
    if logged & {name for name, _, _ in columns}:
        return list(columns)
    others = sorted(n for n in logged if n.startswith("test_"))
    return [(n, n.removeprefix("test_").replace("_", " "), None) for n in others]


def _table(
    models: list[ModelEntry],
    columns: Iterable[tuple[str, str, bool | None]],
    metrics_of: Callable[[ModelEntry], Mapping[str, float]],
) -> str:
    """One row per model, one column per metric some model has; the best value in bold."""
    shown = [(n, h, b) for n, h, b in columns if any(n in metrics_of(m) for m in models)]
    head = "".join(f"<th>{_e(h)}</th>" for _, h, _ in shown)
    best: dict[str, float] = {}
    for name, _, higher in shown:
        seen = [metrics_of(m)[name] for m in models if _finite(metrics_of(m).get(name))]
        if higher is not None and len(seen) > 1:
            best[name] = max(seen) if higher else min(seen)
    rows = []
    for m in models:
        metrics = metrics_of(m)
        cells = []
        for name, _, _ in shown:
            value = metrics.get(name)
            text = _e(_number(value))
            cells.append(f"<td><b>{text}</b></td>" if name in best and value == best[name] else f"<td>{text}</td>")
        kind = ' class="champion"' if m.label == "champion" else ""
        version = f" v{_e(m.version)}" if m.version else ""
        name = f'<td class="name">{_e(m.candidate)}{version}</td>'
        rows.append(f"<tr{kind}><th>{_e(m.label)}</th>{name}{''.join(cells)}</tr>")
    return f"<table><tr><th></th><th>model</th>{head}</tr>{''.join(rows)}</table>"


def _plot_grid(models: list[ModelEntry]) -> str:
    rows = []
    for name in dict.fromkeys(name for m in models for name in m.plots):
        if not any(name in m.plots for m in models):
            continue
        cells = []
        for m in models:
            if name in m.plots:
                data = base64.b64encode(m.plots[name]).decode("ascii")
                alt = f"{m.candidate}: {name.removesuffix('.png').replace('_', ' ')}"
                cells.append(f'<td><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></td>')
            else:
                cells.append('<td class="empty">not logged</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f"<th>{_e(m.label)}: {_e(m.candidate)}</th>" for m in models)
    return f'<table class="plots"><tr>{head}</tr>{"".join(rows)}</table>'


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "n/a"
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}" if abs(value) >= 0.001 else f"{value:.3g}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d1d1f;max-width:1600px}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#555}table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right;vertical-align:top}
th{background:#f5f5f7;text-align:left}tr.champion td,tr.champion th{background:#eef4fb}
td.name{text-align:left}.empty{color:#777;font-style:italic}
table.plots{table-layout:fixed;width:100%}table.plots td{border:none;text-align:center}table.plots img{width:100%}
code{background:#f5f5f7;padding:0 .2rem}
""".strip()


def build_report(
    use_case: str,
    model_name: str,
    out: str | Path,
    tracking_uri: str | None = None,
    db: str | Path | None = None,
) -> Path:
    """Write the comparison page to `out`, log it to a `comparison-report` run, return `out`.

    `db` is the DuckDB file of feature rows; without it (or when it lacks the test window's
    rows) the page says why decisions and latency were not measured.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    comparison = collect(client, use_case, model_name)
    if db is not None:
        measure(comparison, db)
    else:
        comparison.measured_note = "not measured: no DuckDB file given"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(comparison), encoding="utf-8")
    champion = comparison.champion
    run = client.create_run(
        comparison.experiment_id,
        run_name=REPORT_RUN,
        tags={
            "use_case": use_case,
            "report": "comparison",
            "model_name": model_name,
            "champion_version": champion.version or "",
            "compared_versions": ",".join(m.version for m in comparison.models if m.version),
            "live_data": str(comparison.has_live).lower(),
        },
    )
    try:
        client.log_artifact(run.info.run_id, str(out))
    except Exception:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    return out
