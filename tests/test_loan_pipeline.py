"""The loan use case end to end: simulate, materialize into DuckDB, train into MLflow, price.

One small simulation (with canary personal data planted in every source) goes through the real
materialize and training code once per session (`loan_pipeline` in conftest.py); the tests read
what it left behind. Parity and the live test use their own small simulations.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path
from typing import Any

import duckdb
import mlflow
import msgspec
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.featureset import LocalRunner
from features.loan import MODEL_INPUTS, LoanFeatureSet, LoanOutcome, PricingPolicy, choose_rates, quote_row
from features.usecases import build_featureset
from serving import produce
from serving.feature_process import FeatureProcess
from serving.settings import LiveSettings
from tests.conftest import LOAN_CANARIES, LOAN_NEEDLES, LoanPipeline, sources
from tests.kafka_helpers import require_broker
from tests.live_fixtures import read_topic, unique_prefix, wait_for
from training import replay
from training.harness import windows_for
from training.jobs.loan import LoanTask, load_loan_splits
from training.loan_policy import acceptance_matrix, align_truth, baselines, load_truth, truth_value
from training.materialize import materialize
from training.replay import Source
from training.simulators.loan import simulate_loan

pytestmark = pytest.mark.slow

MODEL = "loan-acceptance"


def leaks(blob: bytes) -> list[bytes]:
    lowered = blob.lower()
    return [n for n in LOAN_NEEDLES if n.lower() in lowered]


@pytest.fixture
def client(loan_pipeline: LoanPipeline):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(loan_pipeline.tracking_uri)
    yield MlflowClient()
    mlflow.set_tracking_uri(previous)


def test_simulation_is_reproducible_and_complete(tmp_path: Path) -> None:
    first = simulate_loan(tmp_path / "a", n_applications=300, days=40, seed=9, fmt="jsonl")
    second = simulate_loan(tmp_path / "b", n_applications=300, days=40, seed=9, fmt="jsonl")
    for kind, path in first.files.items():
        assert path.read_bytes() == second.files[kind].read_bytes(), kind
    assert first.risk_grades.read_bytes() == second.risk_grades.read_bytes()
    truth = load_truth(first.ground_truth)
    assert len(truth) == 300 and (truth["accept_logit_rate"] < 0).all()
    outcomes = [json.loads(line) for line in first.files["outcome"].read_text().splitlines()]
    assert len(outcomes) == 300 and 0.2 < np.mean([o["accepted"] for o in outcomes]) < 0.7
    assert {o["offered_rate"] for o in outcomes} <= set(PricingPolicy().grid().round(6).tolist())
    assert len({o["offered_rate"] for o in outcomes}) > 20  # randomized historical pricing


def test_materialized_tables(loan_pipeline: LoanPipeline) -> None:
    con = duckdb.connect(str(loan_pipeline.db), read_only=True)
    try:
        counts = [
            con.execute(f"SELECT count(*) FROM loan_{t}").fetchone()[0] for t in ("features", "labels", "dead_letters")
        ]
        assert counts == [6_000, 6_000, 0]
        assert con.execute("SELECT DISTINCT featureset_version FROM loan_features").fetchall() == [
            (loan_pipeline.fs.version,)
        ]
        grades = dict(con.execute("SELECT risk_grade, count(*) FROM loan_features GROUP BY 1").fetchall())
        assert {"A", "D", "G", "U"} <= set(grades)
        scored = con.execute("SELECT avg(no_credit_score), avg(contacts_180d), avg(payments_90d) FROM loan_features")
        no_score, contacts, payments = scored.fetchone()  # type: ignore[misc]
        assert 0.01 < no_score < 0.2 and contacts > 0.3 and payments > 3
    finally:
        con.close()
    again = materialize(loan_pipeline.fs, sources(loan_pipeline.sim.files), loan_pipeline.db)
    assert again.skipped


BAD_LINES: dict[str, list[tuple[dict[str, Any] | str, str]]] = {
    "application": [
        ("{not json", "JSON is malformed"),
        ({"amount": "lots"}, "Expected `float`, got `str` - at `$.amount`"),
        ({"annual_income": -5_000.0}, "Expected `float` >= 0.0 - at `$.annual_income`"),
        ({"application_id": None}, "Expected `str`, got `null` - at `$.application_id`"),
        ({"date_of_birth": "2015-06-01"}, "years old at application"),
        ({"term_months": 36.5}, "Expected `int`, got `float` - at `$.term_months`"),
    ],
    "credit_score": [({"score": 900}, "Expected `int` <= 850"), ({"ts": "last week"}, "at `$.ts`")],
    "engagement": [({"action": "offer", "product": None}, "needs `product` and `accepted`")],
    "payment": [({"currency": "XYZ"}, "currency 'XYZ' has no rate"), ({"amount": -3.0}, "Expected `float` >= 0.0")],
    "outcome": [({"offered_rate": 1.5}, "Expected `float` < 1.0"), ({"accepted": "yes"}, "at `$.accepted`")],
}


def test_faulty_events_become_dead_letters_and_valid_rows_are_untouched(
    loan_pipeline: LoanPipeline, tmp_path: Path
) -> None:
    files = dict(loan_pipeline.sim.files)
    expected: dict[str, str] = {}
    for kind, bad in BAD_LINES.items():
        lines = files[kind].read_text().splitlines()
        good = json.loads(lines[5])
        faulty = [line if isinstance(line, str) else json.dumps(good | line) for line, _ in bad]
        path = tmp_path / files[kind].name
        path.write_text("\n".join(lines[:50] + faulty + lines[50:]) + "\n")
        files[kind] = path
        expected |= {f"{path.name}:{51 + i}": reason for i, (_, reason) in enumerate(bad)}
    db = tmp_path / "faulty.duckdb"
    report = materialize(loan_pipeline.fs, sources(files), db)
    assert report.dead_letters == len(expected) and report.rows_written == 6_000

    con = duckdb.connect(str(db), read_only=True)
    try:
        letters = {
            row[0]: row[1:] for row in con.execute("SELECT position, reason, payload FROM loan_dead_letters").fetchall()
        }
        assert letters.keys() == expected.keys()
        for position, reason in expected.items():
            assert reason in letters[position][0], (position, letters[position][0])
            assert leaks(letters[position][1].encode()) == []
        con.execute(f"ATTACH '{loan_pipeline.db}' AS clean (READ_ONLY)")
        differing = con.execute(
            "SELECT count(*) FROM (SELECT * FROM loan_features EXCEPT SELECT * FROM clean.loan_features)"
        ).fetchone()
        assert differing == (0,)
    finally:
        con.close()
    with pytest.raises(ValueError, match="unknown event kind 'refund'"):
        materialize(loan_pipeline.fs, [Source("refund", files["payment"])], tmp_path / "x.duckdb")


def per_event_rows(fs: LoanFeatureSet, files: dict[str, Path]) -> list[dict[str, Any]]:
    """Merge the JSONL files in event-time order; feed each line as a tagged message, one at a time."""

    def tagged(kind: str, path: Path):
        field = "known_at" if kind == "outcome" else "ts"
        for i, line in enumerate(path.read_bytes().splitlines()):
            event = msgspec.json.decode(line)
            yield (event[field], fs.kind_order[kind], i, msgspec.json.encode({"type": kind, **event}))

    runner = LocalRunner(fs)
    rows: list[dict[str, Any]] = []
    for *_, message in heapq.merge(*(tagged(kind, path) for kind, path in files.items())):
        outcome = runner.process(None, message)
        assert outcome.dead_letter is None, outcome.dead_letter
        rows.extend(outcome.rows)
    return rows


def test_batch_and_per_event_rows_are_identical(tmp_path: Path) -> None:
    parquet = simulate_loan(tmp_path / "pq", n_applications=1_500, days=60, seed=11, fmt="parquet")
    jsonl = simulate_loan(tmp_path / "js", n_applications=1_500, days=60, seed=11, fmt="jsonl")
    fs = build_featureset("loan", parquet.folder, "parity-secret")
    db = tmp_path / "batch.duckdb"
    materialize(fs, sources(parquet.files), db)
    con = duckdb.connect(str(db), read_only=True)
    batch = con.execute(
        "SELECT * EXCLUDE (featureset_version, event_time), epoch_ms(event_time) AS event_time "
        "FROM loan_features ORDER BY application_id"
    ).df()
    con.close()
    stream = sorted(per_event_rows(fs, jsonl.files), key=lambda r: r["application_id"])
    assert len(batch) == len(stream) == 1_500
    columns = list(fs.columns)
    mismatches = [
        got["application_id"]
        for expected, got in zip(batch[columns].to_dict("records"), stream, strict=True)
        if {c: got[c] for c in columns} != expected
    ]
    assert not mismatches, f"{len(mismatches)} rows differ, first {mismatches[0]}"


def test_models_are_registered_with_aliases_signature_and_pricing(loan_pipeline: LoanPipeline, client) -> None:
    model = client.get_registered_model(MODEL)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    other = ({"logistic_regression", "xgboost"} - {champion.tags["candidate"]}).pop()
    assert set(model.aliases) == {"champion", f"challenger-{other.replace('_', '-')}"}
    assert champion.tags["featureset_version"] == loan_pipeline.fs.version
    assert PricingPolicy.from_params(champion.tags) == PricingPolicy()
    info = mlflow.models.get_model_info(f"models:/{MODEL}@champion")
    assert [c.name for c in info.signature.inputs] == list(MODEL_INPUTS)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("loan").experiment_id])}
    assert {"logistic_regression", "xgboost", "rate_only_logistic"} <= set(runs)
    assert runs["logistic_regression"].data.metrics.keys() == runs["xgboost"].data.metrics.keys()
    for name in ("logistic_regression", "xgboost"):
        run = runs[name]
        assert {
            "featureset_version",
            "dataset_fingerprint_train",
            "label_cutoff",
            "pricing_floor",
        } <= run.data.params.keys()
        assert {
            "test_roc_auc",
            "test_log_loss",
            "test_brier",
            "test_ev_truth",
            "test_ev_offline",
        } <= run.data.metrics.keys()
        plots = {a.path for a in client.list_artifacts(run.info.run_id) if a.path.endswith(".png")}
        assert {"calibration.png", "roc_curve.png", "policy_value.png", "acceptance_by_rate.png"} <= plots
        assert run.data.metrics["test_roc_auc"] > runs["rate_only_logistic"].data.metrics["test_roc_auc"] + 0.05


def test_chosen_rates_beat_every_fixed_rate_on_ground_truth(loan_pipeline: LoanPipeline, client) -> None:
    """The champion's rates, recomputed from the registered model, against every fixed rate."""
    policy = PricingPolicy()
    windows = windows_for(loan_pipeline.db, loan_pipeline.fs, LoanTask.window_days)
    test = load_loan_splits(loan_pipeline.db, loan_pipeline.fs, windows).test
    truth = align_truth(load_truth(loan_pipeline.sim.ground_truth), test)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    model = pyfunc.unwrap_python_model()
    x = test[list(loan_pipeline.fs.feature_names)].to_numpy(np.float64)
    accept = acceptance_matrix(lambda inputs: model.estimator.predict_proba(inputs)[:, 1], x, policy.grid())
    rates, _, _ = choose_rates(accept, test["amount_eur"], test["term_months"], test["pd_annual"], policy)
    assert (rates >= policy.floor).all()
    # what a scorer does with one row and the registered pyfunc gives the same rate
    for i, row in enumerate(test.head(20).to_dict("records")):
        quote = quote_row(row, lambda inputs: pyfunc.predict(pd.DataFrame(inputs, columns=list(MODEL_INPUTS))), policy)
        assert quote.rate == rates[i]
    value = truth_value(rates, test, truth, policy).mean()
    reference = baselines(test, truth, policy)
    assert value > 1.2 * reference.fixed_truth.max()
    assert value > reference.historical_truth
    assert value < reference.oracle_truth
    champion = next(r for r in loan_pipeline.report.results if r.alias == "champion")
    assert champion.test["ev_truth"] == pytest.approx(value)
    assert champion.test["uplift_vs_best_fixed_truth"] > 0.2


def test_backtest_scores_applications_at_the_rate_offered_or_the_rate_given(
    loan_pipeline: LoanPipeline, client
) -> None:
    from datetime import timedelta

    from features.loan import RATE_FEATURE
    from training.backtest import score

    start = loan_pipeline.report.windows.test_start
    window = (start, start + timedelta(days=7))
    files = sources(loan_pipeline.sim.files)
    offered = score(loan_pipeline.fs, files, f"models:/{MODEL}@champion", *window)
    assert offered.without_inputs == 0 and offered.outside_window > 0 and len(offered.scores) > 0
    rows = offered.scores
    assert rows["event_time"].between(pd.Timestamp(window[0]), pd.Timestamp(window[1]), inclusive="left").all()
    assert rows[RATE_FEATURE].nunique() > 5 and rows["score"].between(0, 1).all()
    at_rate = score(loan_pipeline.fs, files, f"models:/{MODEL}@champion", *window, supplied={RATE_FEATURE: 0.08})
    assert (at_rate.scores[RATE_FEATURE] == 0.08).all() and len(at_rate.scores) == len(rows)
    same = (rows[RATE_FEATURE] - 0.08).abs() < 1e-9
    assert same.any() and np.allclose(rows["score"][same], at_rate.scores["score"][same])
    without_outcomes = [s for s in files if s.kind != "outcome"]
    with pytest.raises(ValueError, match="--rate"):
        score(loan_pipeline.fs, without_outcomes, f"models:/{MODEL}@champion", *window)


def test_canary_personal_data_never_reaches_duckdb_mlflow_or_logs(loan_pipeline: LoanPipeline) -> None:
    con = duckdb.connect(str(loan_pipeline.db), read_only=True)
    try:
        text_columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'"
        ).fetchall()
        for table, column in text_columns:
            values = con.execute(f'SELECT DISTINCT "{column}" FROM {table}').fetchall()
            assert leaks("\n".join(v for (v,) in values if v).encode()) == [], (table, column)
    finally:
        con.close()
    assert leaks(loan_pipeline.db.read_bytes()) == []
    store = Path(loan_pipeline.tracking_uri.removeprefix("sqlite:///"))
    files = [store, *(p for p in loan_pipeline.artifacts.rglob("*") if p.is_file())]
    assert any(p.name == "MLmodel" for p in files) and any(p.suffix == ".png" for p in files)
    for path in files:
        assert leaks(path.read_bytes()) == [], path
    assert leaks(loan_pipeline.log.read_bytes()) == []
    planted = sum(
        path.read_bytes().count(LOAN_CANARIES["full_name"].encode()) for path in loan_pipeline.sim.files.values()
    )
    assert planted > 50  # the canaries really went in


@pytest.mark.kafka
def test_live_feature_process_matches_batch_and_dead_letters_bad_events(tmp_path: Path) -> None:
    """Events through a real broker and the quixstreams feature process give the batch rows."""
    bootstrap = require_broker()
    sim = simulate_loan(tmp_path / "loan", n_applications=400, days=45, seed=13, fmt="jsonl")
    fs = build_featureset("loan", sim.folder, "live-secret")
    history = replay.load(fs, sources(sim.files))
    batch = [row for outcome in replay.run(fs, history) for row in outcome.rows]

    settings = LiveSettings("loan", bootstrap=bootstrap, prefix=unique_prefix("loan"), state_dir=tmp_path / "state")
    messages = produce.load(fs, [produce.EventFile(kind, path) for kind, path in sim.files.items()])
    good = json.loads(sim.files["application"].read_text().splitlines()[0])
    key = messages[0].key
    bad = [
        produce.Outgoing(0, key, json.dumps({"type": "refund", **good}).encode()),
        produce.Outgoing(0, key, json.dumps({"type": "application", **good, "annual_income": -1.0}).encode()),
        produce.Outgoing(0, b"wrong-key", json.dumps({"type": "application", **good}).encode()),
    ]
    produce.ensure_topic(bootstrap, settings.topics.events, partitions=2)
    produce.publish(bootstrap, settings.topics.events, [*messages, *bad])
    counts = FeatureProcess(fs, settings).run(idle_timeout=60, max_events=len(messages) + len(bad))

    assert counts.rows == 400 and sum(counts.dead.values()) == len(bad), counts.summary()
    wait_for(lambda: len(read_topic(settings.topics.features)) >= 400, 30, "the feature rows to be readable")
    stream = read_topic(settings.topics.features)
    assert len(stream) == len(batch) == counts.rows == 400
    by_id = {row["application_id"]: row for _, row in stream}
    assert all(by_id[row["application_id"]] == {**row, "featureset_version": fs.version} for row in batch)
    assert {key for key, _ in stream} == {row["application_id"] for row in batch}
    labels = read_topic(settings.topics.labels)
    assert len(labels) == sum(1 for e in history.events if isinstance(e, LoanOutcome))
    dead = [value for _, value in read_topic(settings.topics.deadletters)]
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 3
    assert any("Invalid value 'refund'" in r for r in reasons)
    assert any("Expected `float` >= 0.0 - at `$.annual_income`" in r for r in reasons)
    assert any(r.startswith("wrong key") for r in reasons)
    assert all(good["full_name"] not in d["payload"] and good["email"] not in d["payload"] for d in dead)
