"""Reasons on the decisions topic: the live scorer's equal `samestream score`'s for the same rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from xgboost import XGBClassifier

from serving.registry import ModelWatcher, Registry
from serving.scorer import ScoringProcess
from tests.live_fixtures import (
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    produce_rows,
    read_topic,
    register_version,
    registry_store,
    simulation,
    unique_prefix,
)
from training.backtest import score
from training.pyfunc import ProbabilityModel
from training.replay import Source

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

ROWS = 300
NAME = "fraud-reasons"


def test_decisions_on_the_topic_carry_the_reasons_the_batch_score_gives() -> None:
    sim = simulation()
    fs = sim.featureset()
    frame = pd.DataFrame(sim.rows)[list(fs.feature_names)].astype("float64")
    labels = np.array([sim.labels.get(r["payment_id"], False) for r in sim.rows], dtype=int)
    model = XGBClassifier(n_estimators=60, max_depth=4, n_jobs=1, random_state=0).fit(frame, labels)
    tracking_uri = registry_store()
    tags = {"threshold_review": 0.3, "threshold_block": 0.7, "featureset_version": fs.version}
    version = register_version(tracking_uri, NAME, ProbabilityModel(model, fs.feature_names), frame.head(20), tags)

    settings = live_settings(unique_prefix("reasons"), guarantee="at-least-once")
    rows = sim.rows[:ROWS]
    produce_rows(settings.topics.features, rows)
    watcher = ModelWatcher(Registry(tracking_uri), NAME, version, tuple(fs.columns))
    watcher.start()
    ScoringProcess(fs, settings, watcher).run(idle_timeout=60, max_rows=ROWS)
    live = {v["payment_id"]: v for _, v in read_topic(settings.topics.decisions)}
    assert list(live) == [r["payment_id"] for r in rows]

    files = [Source(f.kind, f.path) for f in sim.files]
    batch = score(fs, files, f"models:/{NAME}/{version}", reasons=True).scores.set_index("payment_id")
    for payment_id, decision in live.items():
        assert decision["reasons"], f"{payment_id} was decided without reasons"
        assert json.loads(batch.at[payment_id, "reasons"]) == decision["reasons"], payment_id
    assert {d["reasons"][0]["feature"] for d in live.values()} <= set(fs.feature_names)
