"""Training against a real DuckDB file and a real MLflow store (the session pipeline)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.usecases import build_featureset
from tests.conftest import Pipeline
from training.backtest import score, write_scores
from training.datasets import default_windows, labelled_rows, time_span
from training.harness import windows_for
from training.jobs.fraud import FraudTask
from training.replay import Source

pytestmark = pytest.mark.slow


@pytest.fixture
def client(fraud_pipeline: Pipeline):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(fraud_pipeline.tracking_uri)
    yield MlflowClient()
    mlflow.set_tracking_uri(previous)


def test_versions_are_registered_with_aliases_tags_and_signatures(fraud_pipeline: Pipeline, client) -> None:
    model = client.get_registered_model(fraud_pipeline.model_name)
    champion = client.get_model_version_by_alias(model.name, "champion")
    others = {"logistic_regression", "xgboost"} - {champion.tags["candidate"]}
    assert set(model.aliases) == {"champion"} | {f"challenger-{c.replace('_', '-')}" for c in others}
    # the simulation has a band of uncertain scores where an analyst is cheaper than approving or blocking
    assert float(champion.tags["threshold_block"]) > float(champion.tags["threshold_review"]) > 0
    fs = build_featureset("fraud", fraud_pipeline.data_dir / "fraud", fraud_pipeline.secret)
    for alias in model.aliases:
        version = client.get_model_version(model.name, model.aliases[alias])
        assert version.tags["featureset_version"] == fs.version
        assert client.get_run(version.run_id).data.tags["featureset_version"] == fs.version
    info = mlflow.models.get_model_info(f"models:/{model.name}@champion")
    assert [c.name for c in info.signature.inputs] == list(fs.feature_names)


def test_every_run_has_the_same_metrics_params_and_plots(fraud_pipeline: Pipeline, client) -> None:
    experiment = client.get_experiment_by_name("fraud")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert {"logistic_regression", "xgboost", "rule_amount_threshold"} <= set(by_name)
    model_runs = [by_name["logistic_regression"], by_name["xgboost"]]
    assert model_runs[0].data.metrics.keys() == model_runs[1].data.metrics.keys()
    for run in model_runs:
        assert {"featureset_version", "dataset_fingerprint_train", "label_cutoff"} <= run.data.params.keys()
        plots = {a.path for a in client.list_artifacts(run.info.run_id) if a.path.endswith(".png")}
        assert plots == {"pr_curve.png", "roc_curve.png", "calibration.png", "feature_importance.png", "confusion.png"}


def test_models_beat_the_amount_rule_on_average_precision(fraud_pipeline: Pipeline, client) -> None:
    """On this small history every model beats the rule in validation; the champion also in test."""
    experiment = client.get_experiment_by_name("fraud")
    metrics = {r.info.run_name: r.data.metrics for r in client.search_runs([experiment.experiment_id])}
    baseline = metrics["rule_amount_threshold"]
    for name in ("logistic_regression", "xgboost"):
        assert metrics[name]["val_average_precision"] > 2 * baseline["val_average_precision"]
    champion = client.get_model_version_by_alias(fraud_pipeline.model_name, "champion").tags["candidate"]
    assert metrics[champion]["test_average_precision"] > 2 * baseline["test_average_precision"]


def test_training_labels_are_those_known_at_the_cutoff(fraud_pipeline: Pipeline) -> None:
    fs = build_featureset("fraud", fraud_pipeline.data_dir / "fraud", fraud_pipeline.secret)
    data = FraudTask(fs).load(fraud_pipeline.db, windows_for(fraud_pipeline.db, fs, FraudTask.window_days))
    w = data.windows
    assert data.train["event_time"].max() < pd.Timestamp(w.validation_start) <= data.validation["event_time"].min()
    assert data.validation["event_time"].max() < pd.Timestamp(w.train_end)
    assert (pd.Timestamp(w.test_start) - pd.Timestamp(w.train_end)).days == 14
    con = duckdb.connect(str(fraud_pipeline.db), read_only=True)
    known_late = set(
        con.execute(
            "SELECT payment_id FROM fraud_labels GROUP BY payment_id HAVING min(known_at) > ?", [w.cutoff]
        ).df()["payment_id"]
    )
    assert known_late
    assert not known_late & (set(data.train["payment_id"]) | set(data.validation["payment_id"]))
    # the same window read with all labels has more rows: the cut-off really excluded some
    first, last = time_span(con, fs)
    everything = labelled_rows(con, fs, w.train_start, w.train_end, None)
    con.close()
    assert len(everything) > len(data.train) + len(data.validation)
    assert default_windows(first, last) == w


def test_backtest_scores_a_file_with_a_registered_version(fraud_pipeline: Pipeline, client, tmp_path: Path) -> None:
    fs = build_featureset("fraud", fraud_pipeline.data_dir / "fraud", fraud_pipeline.secret)
    folder = fraud_pipeline.data_dir / "fraud"
    result = score(
        fs,
        [Source("payment", folder / "payments.jsonl"), Source("label", folder / "labels.jsonl")],
        f"models:/{fraud_pipeline.model_name}/1",
    )
    scores = result.scores
    assert result.dead_letters == 0 and result.outside_window == 0 and len(scores) == 20_000
    assert scores["score"].between(0, 1).all() and set(scores["model_version"]) == {"1"}
    where = write_scores(scores, tmp_path / "scores.duckdb", "fraud")
    con = duckdb.connect(str(tmp_path / "scores.duckdb"), read_only=True)
    assert con.execute("SELECT count(DISTINCT payment_id) FROM fraud_scores").fetchone() == (20_000,)
    con.close()
    assert "fraud_scores" in where


def test_backtest_scores_only_the_window_asked_for(fraud_pipeline: Pipeline, client, tmp_path: Path) -> None:
    from samestream_cli import app

    out = tmp_path / "week.parquet"
    command = ["score", "fraud", "--data-dir", str(fraud_pipeline.data_dir), "--secret", fraud_pipeline.secret]
    command += ["--tracking-uri", fraud_pipeline.tracking_uri, "--out", str(out)]
    result = CliRunner().invoke(app, [*command, "--from", "2026-02-01", "--to", "2026-02-08"])
    assert result.exit_code == 0, result.output
    week = pd.read_parquet(out)
    assert 0 < len(week) < 20_000 / 4
    assert week["event_time"].min() >= pd.Timestamp("2026-02-01")
    assert week["event_time"].max() < pd.Timestamp("2026-02-08")
    assert set(week["model_version"]) == {
        str(client.get_model_version_by_alias(fraud_pipeline.model_name, "champion").version)
    }


def test_train_with_dates_inside_the_data_and_no_validation(fraud_pipeline: Pipeline, tmp_path: Path) -> None:
    """The bounds not given come from the dates given; the registered model is fitted on the whole window."""
    from samestream_cli import app

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = ["train", "fraud", "--data-dir", str(fraud_pipeline.data_dir), "--db", str(fraud_pipeline.db)]
    command += ["--secret", fraud_pipeline.secret, "--tracking-uri", uri, "--candidate", "logistic_regression"]
    command += ["--train-start", "2026-01-06", "--test-end", "2026-02-20", "--no-validation"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    champion = client.get_model_version_by_alias(fraud_pipeline.model_name, "champion")
    params = client.get_run(champion.run_id).data.params
    assert params["train_start"].startswith("2026-01-06") and params["test_end"].startswith("2026-02-20")
    assert params["test_start"].startswith("2026-02-06") and params["train_end"].startswith("2026-01-23")
    assert params["refit_on_training_window"] == "True"
    assert int(params["n_fit"]) == int(params["n_train"]) + int(params["n_validation"])
    assert params["dataset_fingerprint_fit"] not in (params["dataset_fingerprint_train"], "")
    assert float(champion.tags["threshold_block"]) >= float(champion.tags["threshold_review"])


def test_field_protocol_picks_the_champion_on_prequential_folds_after_tuning(
    fraud_pipeline: Pipeline, tmp_path: Path
) -> None:
    """`--protocol field --tune-trials`: folds' card precision picks the champion, tuning starts from the defaults."""
    from samestream_cli import app

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = ["train", "fraud", "--data-dir", str(fraud_pipeline.data_dir), "--db", str(fraud_pipeline.db)]
    command += ["--secret", fraud_pipeline.secret, "--tracking-uri", uri]
    command += ["--candidate", "logistic_regression", "--candidate", "xgboost"]
    command += ["--protocol", "field", "--folds", "1", "--tune-trials", "3", "--top-k", "20"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    runs = {
        v.tags["candidate"]: client.get_run(v.run_id).data
        for v in client.search_model_versions(f"name='{fraud_pipeline.model_name}'")
    }
    metric = "val_prequential_field_card_precision_top_k"
    for data in runs.values():
        assert data.params["protocol"] == "field" and data.params["field_top_k"] == "20"
        assert data.params["tune_trials"] == "3" and data.params["refit_on_training_window"] == "True"
        assert data.params["selection_metric"] == metric
        assert 0.0 <= data.metrics[metric] <= 1.0
        assert (
            data.metrics["tuning_best_field_card_precision_top_k"]
            >= data.metrics["tuning_default_field_card_precision_top_k"]
        )
        assert data.metrics["tuning_best_field_card_precision_top_k"] == pytest.approx(data.metrics[metric])
        assert "test_field_card_precision_top_k" in data.metrics
    champion = client.get_model_version_by_alias(fraud_pipeline.model_name, "champion")
    assert runs[champion.tags["candidate"]].metrics[metric] == max(d.metrics[metric] for d in runs.values())


def test_field_protocol_says_when_the_window_is_too_short_for_its_folds(
    fraud_pipeline: Pipeline, tmp_path: Path
) -> None:
    from samestream_cli import app

    command = ["train", "fraud", "--data-dir", str(fraud_pipeline.data_dir), "--db", str(fraud_pipeline.db)]
    command += ["--secret", fraud_pipeline.secret, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    result = CliRunner().invoke(app, [*command, "--protocol", "field", "--folds", "4"])
    assert result.exit_code == 2 and "prequential folds" in result.output
    result = CliRunner().invoke(app, [*command, "--protocol", "banking"])
    assert result.exit_code == 2 and "unknown protocol" in result.output


def test_ablation_refits_the_champion_without_each_feature_family(fraud_pipeline: Pipeline, tmp_path: Path) -> None:
    from samestream_cli import app

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = ["train", "fraud", "--data-dir", str(fraud_pipeline.data_dir), "--db", str(fraud_pipeline.db)]
    command += ["--secret", fraud_pipeline.secret, "--tracking-uri", uri, "--candidate", "logistic_regression"]
    result = CliRunner().invoke(app, [*command, "--ablation"])
    assert result.exit_code == 0, result.output
    assert "ablation: logistic_regression refitted without one feature family" in result.output
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fraud")
    (run,) = client.search_runs([experiment.experiment_id], "tags.role = 'ablation'")
    metrics = run.data.metrics
    fs = build_featureset("fraud", fraud_pipeline.data_dir / "fraud", fraud_pipeline.secret)
    for family in fs.families:
        name = "_".join(re.findall(r"[a-z0-9]+", family.lower()))
        assert 0.0 <= metrics[f"test_average_precision__without_{name}"] <= 1.0
    assert "val_average_precision" in metrics and "test_field_card_precision_top_k" in metrics
