"""Shadow scoring: challengers run beside the champion without touching it, and are compared live."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient

from serving.registry import ModelWatcher, Registry
from serving.scorer import ScoringProcess
from serving.shadow import ShadowConfig, ShadowHarness
from tests.live_fixtures import (
    MODEL,
    SECRET,
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    model_store,
    produce,
    produce_rows,
    read_scores,
    read_topic,
    simulation,
    unique_prefix,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]


def _champion_run(prefix: str, rows: list[dict[str, Any]]) -> tuple[dict[str, tuple[Any, ...]], float]:
    """Score `rows` (already on the features topic) with the champion; decisions and rows/s."""
    sim = simulation()
    fs = sim.featureset()
    store = model_store()
    settings = live_settings(prefix, guarantee="at-least-once")
    watcher = ModelWatcher(Registry(store.tracking_uri), MODEL, store.versions["lr"], tuple(fs.columns))
    watcher.start()
    times: list[float] = []
    process = ScoringProcess(fs, settings, watcher, on_message=lambda *_: times.append(time.perf_counter()))
    process.run(idle_timeout=60, max_rows=len(rows))
    decisions = {
        v["payment_id"]: (v["score"], v["decision"], v["version"]) for _, v in read_topic(settings.topics.decisions)
    }
    return decisions, (len(times) - 1) / (times[-1] - times[0])


def _config(prefix: str, challengers: tuple[str, ...], live_db: Path, idle: float) -> ShadowConfig:
    sim = simulation()
    store = model_store()
    return ShadowConfig(
        settings=live_settings(prefix, guarantee="at-least-once"),
        data_dir=sim.data_dir / "fraud",
        secret=SECRET,
        tracking_uri=store.tracking_uri,
        model_name=MODEL,
        challengers=challengers,
        live_db=live_db,
        metrics_interval=1.0,
        top_k=50,
        idle_timeout=idle,
    )


def test_raising_and_sleeping_challengers_do_not_change_champion_decisions(tmp_path: Path) -> None:
    sim = simulation()
    store = model_store()
    rows = [{**r, "payment_id": f"{r['payment_id']}-{k}"} for k in range(8) for r in sim.rows]

    alone = unique_prefix("alone")
    produce_rows(f"{alone}fraud-features", rows)
    decisions_alone, _ = _champion_run(alone, rows)

    shadowed = unique_prefix("shadowed")
    config = _config(shadowed, (store.versions["raiser"], store.versions["sleeper"]), tmp_path / "live.duckdb", 0.0)
    harness = ShadowHarness(config)
    runner = threading.Thread(target=harness.run, daemon=True)
    runner.start()
    try:
        produce_rows(f"{shadowed}fraud-features", rows[:1])
        scores_topic = f"{shadowed}fraud-shadow-scores"
        wait_for(lambda: len(read_scores(scores_topic)) >= 2, 90, "both challengers scoring")
        produce_rows(f"{shadowed}fraud-features", rows[1:])
        decisions_shadowed, _ = _champion_run(shadowed, rows)
        raiser = store.versions["raiser"]
        wait_for(
            lambda: sum(s["version"] == raiser for s in read_scores(scores_topic)) >= len(rows),
            90,
            "the raiser's every row",
        )
        shadow_scores = read_scores(scores_topic)
    finally:
        harness.stop()
        runner.join(60)
    assert not runner.is_alive(), "the harness did not stop"

    assert decisions_shadowed == decisions_alone
    raised = [s for s in shadow_scores if s["version"] == store.versions["raiser"]]
    slept = [s for s in shadow_scores if s["version"] == store.versions["sleeper"]]
    assert raised and all(
        s["error"] == "model error: RuntimeError: challenger bug" and s["score"] is None for s in raised
    )
    assert len(raised) > len(slept), "the sleeping challenger should lag behind, in its own consumer group"
    assert slept and all(s["error"] is None for s in slept)


def test_harness_records_every_model_restarts_a_dead_one_and_logs_live_metrics(tmp_path: Path) -> None:
    """Also: NULL, empty and malformed messages on every topic the challengers and the collector
    read are passed over, and the harness goes on."""
    sim = simulation()
    store = model_store()
    prefix = unique_prefix("metrics")
    rows = sim.rows
    produce_rows(f"{prefix}fraud-features", rows)
    hostile: list[tuple[bytes | None, bytes | None]] = [
        (b"k", None),
        (None, None),
        (b"k", b""),
        (None, b"{not json"),
        (b"k", b"[1, 2]"),
    ]
    produce(f"{prefix}fraud-features", hostile)
    produce(
        f"{prefix}fraud-labels",
        ((pid, {"payment_id": pid, "is_fraud": y, "known_at": 1_767_225_600_000}) for pid, y in sim.labels.items()),
    )
    produce(f"{prefix}fraud-labels", hostile)
    _champion_run(prefix, rows)
    for topic in (f"{prefix}fraud-decisions", f"{prefix}fraud-shadow-scores"):  # what the collector reads
        produce(topic, [*hostile, (b"k", b'[{"payment_id": "p"}]')])

    good, raiser, crasher = store.versions["lr_strong"], store.versions["raiser"], store.versions["crasher"]
    live_db = tmp_path / "live.duckdb"
    harness = ShadowHarness(_config(prefix, (good, raiser, crasher), live_db, idle=4.0))
    harness.run()
    assert harness.restarts == 1, "the challenger that died should have been restarted once"

    con = duckdb.connect(str(live_db), read_only=True)
    try:
        counts = dict(
            ((role, version), (n, errors))
            for role, version, n, errors in con.execute(
                "SELECT role, version, count(*), count(error) FROM fraud_live_scores GROUP BY ALL"
            ).fetchall()
        )
        assert con.execute("SELECT count(*) FROM fraud_labels").fetchone() == (len(sim.labels),)
    finally:
        con.close()
    assert counts == {
        ("champion", store.versions["lr"]): (len(rows), 0),
        ("challenger", good): (len(rows), 0),
        ("challenger", raiser): (len(rows), len(rows)),
        ("challenger", crasher): (len(rows), 0),
    }

    client = MlflowClient(tracking_uri=store.tracking_uri)
    experiment = client.get_experiment_by_name("fraud-live")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.stream = '{prefix}fraud-features'")
    runs = {(r.data.tags["role"], r.data.tags["model_version"]): r for r in found}
    assert len(runs) == len(found) == 4
    champion, challenger = runs[("champion", store.versions["lr"])], runs[("challenger", good)]
    for run in (champion, challenger):
        assert {
            "average_precision",
            "precision_at_k",
            "latency_p50_ms",
            "latency_p99_ms",
            "agreement_with_champion",
        } <= set(run.data.metrics)
        assert 0.0 < run.data.metrics["average_precision"] <= 1.0
    assert champion.data.metrics["agreement_with_champion"] == 1.0
    assert runs[("challenger", raiser)].data.metrics["errors"] == len(rows)
