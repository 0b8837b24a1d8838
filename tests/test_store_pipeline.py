"""The store use case end to end: simulate, materialize into DuckDB, per-event parity, train into MLflow.

One small chain (three months, a few stores) is simulated with canary personal values planted
in the POS feed, materialized through the real batch driver and trained into a temporary MLflow
store, once per session (`store_pipeline` in conftest.py). Its faulty records are checked against
the simulator's ground truth, reason by reason; its valid ones against the truth's daily tallies,
store × product × day.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path

import duckdb
import mlflow
import msgspec
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.featureset import LocalRunner
from features.store import StoreFeatureSet
from features.usecases import get_use_case
from tests.conftest import STORE_NEEDLES, StorePipeline
from training.replay import Source, sources_in
from training.simulators.store import simulate_store
from training.sources import read_payloads
from training.store_forecast import load_splits

pytestmark = pytest.mark.slow


def test_dead_letters_match_the_planted_faults_reason_by_reason(store_pipeline: StorePipeline) -> None:
    con = duckdb.connect(str(store_pipeline.db), read_only=True)
    got: dict[str, dict[str, int]] = {}
    for kind, reason, n in con.execute(
        "SELECT kind, split_part(reason, ':', 1), count(*) FROM store_dead_letters GROUP BY ALL"
    ).fetchall():
        got.setdefault(kind, {})[reason] = n
    duplicates, late = con.execute("SELECT sum(dq_duplicates), sum(dq_late) FROM store_features").fetchone()
    con.close()
    assert got == store_pipeline.truth["dead_letters"]
    assert set(got) == {"sale", "delivery", "stock_count", "price_change"}
    assert {"late", "wrong unit", "unknown reference", "schema violation"} <= set(got["sale"])
    assert "negative stock" in got["stock_count"]
    assert duplicates == sum(store_pipeline.truth["duplicates"].values()) > 0 and late == 0
    assert store_pipeline.quality.by_reason()["late"] == store_pipeline.truth["dead_letters"]["sale"]["late"]
    assert store_pipeline.quality.duplicates == duplicates


def test_every_valid_record_is_in_the_rows_and_every_report_in_the_labels(store_pipeline: StorePipeline) -> None:
    """Each row's lag_1 is its previous day's tally of valid sales, to the gram; labels are the reports."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{store_pipeline.db}' AS db (READ_ONLY)")
    truth = f"'{store_pipeline.folder / 'truth_daily.parquet'}'"
    n_truth, n_days = con.execute(f"SELECT count(*), count(DISTINCT day) FROM {truth}").fetchone()
    assert store_pipeline.truth["converted_units"] > 0 and store_pipeline.truth["after_midnight"] > 0
    assert store_pipeline.truth["out_of_order"] > 0
    rows, exact = con.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE f.lag_1 = round(t.feed, 3))
            FROM db.store_features f JOIN {truth} t
            ON f.store_id = t.store_id AND f.product_id = t.product_id AND f.day = t.day + INTERVAL 1 DAY"""
    ).fetchone()
    assert rows == exact == n_truth
    labels, equal = con.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE l.units_sold = t.sold)
            FROM db.store_labels l JOIN {truth} t ON l.row_id = t.store_id || '|' || t.product_id || '|' || t.day"""
    ).fetchone()
    assert labels == equal == n_truth and n_days == 91
    read = con.execute("SELECT events_read FROM db.materializations").fetchone()[0]
    con.close()
    assert read == sum(store_pipeline.truth["records"].values()) + 1  # the planted canary line


def _stream_rows(fs: StoreFeatureSet, folder: Path, arrival: bool) -> list[dict]:
    """Every valid event as a tagged JSON message through a fresh per-event runner.

    In event-time order as the replay producer publishes, or, with `arrival`, each sale when
    its till uploaded it, as a live POS feed delivers them.
    """

    def messages(source: Source):
        for _, payload in read_payloads(source.path):
            try:
                event = fs.parse(source.kind, payload)
            except Exception:
                continue
            at = event.sent_at if arrival and source.kind == "sale" else fs.event_time_ms(event)
            yield at, fs.kind_order[source.kind], msgspec.json.encode(event)

    streams = [sorted(messages(s)) for s in sources_in(get_use_case("store").files, folder)]
    runner = LocalRunner(fs)
    rows: list[dict] = []
    for _, _, message in heapq.merge(*streams):
        outcome = runner.process(None, message)
        assert outcome.dead_letter is None
        rows.extend(outcome.rows)
    return rows


def test_batch_and_per_event_rows_are_identical_in_any_arrival_order(store_pipeline: StorePipeline) -> None:
    con = duckdb.connect(str(store_pipeline.db), read_only=True)
    batch = con.execute(
        "SELECT * EXCLUDE (featureset_version, event_time, day), epoch_ms(event_time) AS event_time, "
        "epoch_ms(day) AS day FROM store_features ORDER BY row_id"
    ).df()
    con.close()
    columns = list(store_pipeline.fs.columns)
    expected = batch[columns].to_dict("records")
    for arrival in (False, True):
        stream = sorted(_stream_rows(store_pipeline.fs, store_pipeline.folder, arrival), key=lambda r: r["row_id"])
        assert len(stream) == len(expected) > 5_000
        assert [{c: r[c] for c in columns} for r in stream] == expected


def test_versions_aliases_signature_and_the_scorer_contract(store_pipeline: StorePipeline) -> None:
    mlflow.set_tracking_uri(store_pipeline.tracking_uri)
    try:
        client = MlflowClient()
        model = client.get_registered_model("store-demand")
        champion = client.get_model_version_by_alias("store-demand", "champion")
        best = min(store_pipeline.report.results, key=lambda r: r.validation["wape"])
        assert champion.tags["candidate"] == best.candidate
        assert set(model.aliases) == {"champion"} | {
            f"challenger-{r.candidate.replace('_', '-')}" for r in store_pipeline.report.results if r is not best
        }
        assert champion.tags["featureset_version"] == store_pipeline.fs.version
        assert len(json.loads(champion.tags["spread_quantiles"])) == 50
        info = mlflow.models.get_model_info("models:/store-demand@champion")
        assert [c.name for c in info.signature.inputs] == list(store_pipeline.fs.feature_names)
        loaded = mlflow.pyfunc.load_model("models:/store-demand@champion")
        frame = load_splits(store_pipeline.db, store_pipeline.fs, store_pipeline.report.windows).test.head(50)
        predicted = loaded.predict(frame[list(store_pipeline.fs.feature_names)])
        inner = loaded.unwrap_python_model()
        one = [inner.predict_one(row) for row in frame[list(inner.feature_names)].to_numpy()]
        assert np.allclose(predicted, one, rtol=1e-5, atol=1e-6) and (predicted >= 0).all()
        runs = client.search_runs([client.get_experiment_by_name("store").experiment_id])
        by_name = {r.info.run_name: r for r in runs}
        assert {"xgboost", "hist_gradient_boosting", "ridge", "naive_same_weekday"} <= set(by_name)
        assert by_name["xgboost"].data.metrics.keys() == by_name["ridge"].data.metrics.keys()
        assert {"val_wape", "test_mae", "test_bias", "test_policy_waste_cost", "dq_dead_late"} <= set(
            by_name["naive_same_weekday"].data.metrics
        )
        assert {"featureset_version", "dataset_fingerprint_train", "label_cutoff"} <= by_name[
            "xgboost"
        ].data.params.keys()
        plots = {a.path for a in client.list_artifacts(by_name["xgboost"].info.run_id) if a.path.endswith(".png")}
        assert plots == {"forecast_vs_actual.png", "feature_importance.png", "policy_frontier.png"}
    finally:
        mlflow.set_tracking_uri("")


def test_models_forecast_better_and_cut_waste_without_more_stockouts(store_pipeline: StorePipeline) -> None:
    naive = store_pipeline.report.baseline
    naive_policy = naive.detail.policy.metrics()
    for result in store_pipeline.report.results:
        assert result.test["wape"] < naive.test["wape"] and result.validation["wape"] < naive.validation["wape"]
        matched = result.detail.matched.metrics()
        assert matched["policy_stockout_rate"] <= naive_policy["policy_stockout_rate"]
        assert matched["policy_waste_cost"] < 0.8 * naive_policy["policy_waste_cost"]
        assert matched["policy_margin"] > naive_policy["policy_margin"]
    champion = next(r for r in store_pipeline.report.results if r.alias == "champion")
    assert champion.detail.policy.metrics()["policy_waste_cost"] < naive_policy["policy_waste_cost"]
    assert champion.detail.policy.markdowns > 0 and champion.detail.policy.expected_waste_avoided > 0


def _leaks(blob: bytes) -> list[bytes]:
    lowered = blob.lower()
    return [n for n in STORE_NEEDLES if n.lower() in lowered]


def test_canaries_never_reach_duckdb_mlflow_or_logs(store_pipeline: StorePipeline) -> None:
    assert _leaks((store_pipeline.folder / "sales.jsonl").read_bytes())  # they were planted
    con = duckdb.connect(str(store_pipeline.db), read_only=True)
    tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    assert {"store_features", "store_labels", "store_dead_letters"} <= set(tables)
    for table in tables:
        columns = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND data_type = 'VARCHAR'",
            [table],
        ).fetchall()
        for (column,) in columns:
            values = con.execute(f'SELECT DISTINCT "{column}" FROM {table}').fetchall()
            assert _leaks("\n".join(v for (v,) in values if v).encode()) == [], (table, column)
    [(payload,)] = con.execute("SELECT payload FROM store_dead_letters WHERE reason LIKE '%litre%'").fetchall()
    con.close()
    assert "<redacted>" in payload
    assert _leaks(store_pipeline.db.read_bytes()) == []
    store = Path(store_pipeline.tracking_uri.removeprefix("sqlite:///"))
    files = [store, store_pipeline.log, *(p for p in store_pipeline.artifacts.rglob("*") if p.is_file())]
    assert any(p.name == "MLmodel" for p in files) and any(p.suffix == ".png" for p in files)
    for path in files:
        assert _leaks(path.read_bytes()) == [], path


def test_the_simulator_is_reproducible(tmp_path: Path) -> None:
    first = simulate_store(tmp_path / "a", n_sales=3_000, days=35, seed=5, fmt="parquet")
    second = simulate_store(tmp_path / "b", n_sales=3_000, days=35, seed=5, fmt="parquet")
    names = sorted(p.name for p in first.folder.iterdir())
    assert names == sorted(p.name for p in second.folder.iterdir())
    assert "price_changes.parquet" in names and "sales.jsonl" in names and "deliveries.csv" in names
    for name in names:
        assert (first.folder / name).read_bytes() == (second.folder / name).read_bytes(), name
    assert pd.read_parquet(first.folder / "truth_daily.parquet")["sold"].sum() > 0
