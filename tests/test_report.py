"""The comparison report: champion against challengers on one self-contained page in MLflow."""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from tests.conftest import CANARIES, REFERENCE_CANARIES, Pipeline
from training.report import REPORT_RUN, Comparison, ModelEntry, build_report, render


def _own_store(pipeline: Pipeline, tmp_path: Path) -> str:
    """A copy of the session's store, so the runs a report adds never reach other tests."""
    source = Path(pipeline.tracking_uri.removeprefix("sqlite:///"))
    shutil.copy(source, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _visible_text(page: str) -> str:
    """The page without its embedded images, which are long base64 runs of any characters."""
    return re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', page)


@pytest.mark.slow
def test_report_command_compares_aliased_versions_and_logs_the_page(fraud_pipeline: Pipeline, tmp_path: Path) -> None:
    from samestream_cli import app

    uri = _own_store(fraud_pipeline, tmp_path)
    out = tmp_path / "fraud-report.html"
    result = CliRunner().invoke(
        app, ["report", "fraud", "--tracking-uri", uri, "--db", str(fraud_pipeline.db), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output

    page = out.read_text(encoding="utf-8")
    text = _visible_text(page)
    client = MlflowClient(uri)
    aliases = client.get_registered_model(fraud_pipeline.model_name).aliases
    champion = client.get_run(str(client.get_model_version(fraud_pipeline.model_name, aliases["champion"]).run_id))
    for name in ("logistic_regression", "xgboost", "rule_amount_threshold"):
        assert name in text
    assert f"{champion.data.metrics['test_average_precision']:.4g}" in text
    assert "decisions agreeing with the champion" in text and "one payment, p99 ms" in text
    assert "measured on" in text and "No live data yet" in text
    # self-contained: every plot embedded, nothing loaded from elsewhere
    assert page.count('src="data:image/png;base64,') >= 2 * 5 + 1
    assert re.search(r'(?:src|href)="(?!data:)', page) is None
    # nothing personal: no planted value, email address, card number or payment id on the page
    assert not [v for v in (*CANARIES.values(), *REFERENCE_CANARIES) if v.lower() in page.lower()]
    assert re.search(r"[\w.+-]+@[\w-]+\.[\w.]+|\b\d{13,19}\b|\bp\d{6,}\b", text) is None

    experiment = client.get_experiment_by_name("fraud")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{REPORT_RUN}'")
    assert len(runs) == 1
    assert runs[0].data.tags["champion_version"] == str(aliases["champion"])
    logged = Path(client.download_artifacts(runs[0].info.run_id, out.name, str(tmp_path / "logged")))
    assert logged.read_text(encoding="utf-8") == page


@pytest.mark.slow
def test_report_shows_the_latest_live_metrics_of_each_version(fraud_pipeline: Pipeline, tmp_path: Path) -> None:
    uri = _own_store(fraud_pipeline, tmp_path)
    client = MlflowClient(uri)
    aliases = client.get_registered_model(fraud_pipeline.model_name).aliases
    challenger = next(a for a in aliases if a.startswith("challenger-"))
    live = client.create_experiment("fraud-live")
    tags = {"model_name": fraud_pipeline.model_name, "role": "champion", "alias": "champion"}
    now = int(time.time() * 1000)
    stale = client.create_run(live, start_time=now - 60_000, tags=tags | {"model_version": str(aliases["champion"])})
    client.log_metric(stale.info.run_id, "latency_p50_ms", 99.0)
    fresh = client.create_run(live, start_time=now, tags=tags | {"model_version": str(aliases["champion"])})
    client.log_metric(fresh.info.run_id, "latency_p50_ms", 3.25)
    client.log_metric(fresh.info.run_id, "agreement_with_champion", 1.0)
    experiment = client.get_experiment_by_name("fraud")
    assert experiment is not None
    tagged = client.create_run(experiment.experiment_id, tags={"live": "true", "alias": challenger})
    client.log_metric(tagged.info.run_id, "live_latency_p99_ms", 41.5)
    client.log_metric(tagged.info.run_id, "live_agreement_with_champion", 0.9875)

    written = build_report("fraud", fraud_pipeline.model_name, tmp_path / "r.html", uri, db=None)
    page = _visible_text(written.read_text(encoding="utf-8"))
    assert "No live data yet" not in page
    assert "3.25" in page and "99" not in re.findall(r"<td>([^<]*)</td>", page)
    assert "41.5" in page and "0.9875" in page
    assert "not measured: no DuckDB file given" in page


@pytest.mark.slow
def test_report_without_a_trained_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="samestream train fraud"):
        build_report("fraud", "fraud-detector", tmp_path / "r.html", f"sqlite:///{tmp_path / 'empty.db'}")


def test_page_escapes_names_and_marks_the_best_value() -> None:
    models = [
        ModelEntry("champion", "<script>alert(1)</script>", "r1", version="2", offline={"test_roc_auc": 0.91}),
        ModelEntry("challenger-b", "b", "r2", version="1", offline={"test_roc_auc": 0.95, "test_alert_rate": math.nan}),
    ]
    page = render(Comparison("fraud", "1", "fraud-detector", models, ("2026-03-01", "2026-03-15")))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<td><b>0.95</b></td>" in page and "<td>0.91</td>" in page
    assert "n/a" in page
    assert "No live data yet" in page


@pytest.mark.slow
@pytest.mark.parametrize(
    ("use_case", "baseline", "unit"),
    [("loan", "rate_only_logistic", "application"), ("store", "naive_same_weekday", "row")],
)
def test_report_works_for_every_use_case_with_its_own_model_name(
    use_case: str, baseline: str, unit: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from features.usecases import get_use_case
    from samestream_cli import app

    pipeline = request.getfixturevalue(f"{use_case}_pipeline")
    uri = _own_store(pipeline, tmp_path)
    out = tmp_path / f"{use_case}-report.html"
    result = CliRunner().invoke(
        app, ["report", use_case, "--tracking-uri", uri, "--db", str(pipeline.db), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = _visible_text(out.read_text(encoding="utf-8"))
    name = get_use_case(use_case).model_name
    champion = MlflowClient(uri).get_model_version_by_alias(name, "champion")
    assert name in text and champion.tags["candidate"] in text and baseline in text
    assert "measured on" in text and f"one {unit}, p99 ms" in text
    assert (use_case == "loan") == ("decisions agreeing with the champion" in text)
    assert text.count("<img ") >= 2 * 3
