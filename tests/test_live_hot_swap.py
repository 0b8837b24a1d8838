"""The scorer follows its alias: a promotion mid-stream swaps the model, losing and doubling nothing."""

from __future__ import annotations

import threading
import time
import uuid

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.cli import app as cli_app
from serving.registry import ModelWatcher, Registry
from serving.scorer import ScoringProcess
from tests.live_fixtures import (
    MODEL,
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    model_store,
    produce_rows,
    read_topic,
    simulation,
    unique_prefix,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

RATE = 500.0


def test_promotion_mid_stream_swaps_the_model_without_losing_or_rescoring_a_row() -> None:
    sim = simulation()
    fs = sim.featureset()
    store = model_store()
    registry = Registry(store.tracking_uri)
    alias = f"champion-{uuid.uuid4().hex[:6]}"
    old, new = store.versions["lr"], store.versions["lr_strong"]
    registry.promote(MODEL, old, alias)
    settings = live_settings(unique_prefix("swap"), guarantee="exactly-once")
    rows = sim.rows

    watcher = ModelWatcher(registry, MODEL, alias, tuple(fs.columns), interval=0.2)
    watcher.start()
    process = ScoringProcess(fs, settings, watcher)

    def feed_and_promote() -> None:
        half = len(rows) // 2
        produce_rows(settings.topics.features, rows[:half], RATE)
        registry.promote(MODEL, new, alias)
        produce_rows(settings.topics.features, rows[half:], RATE)

    feeder = threading.Thread(target=feed_and_promote, daemon=True)
    feeder.start()
    counts = process.run(idle_timeout=60, max_rows=len(rows))
    feeder.join(10)

    decisions = [value for _, value in read_topic(settings.topics.decisions)]
    assert [d["payment_id"] for d in decisions] == [r["payment_id"] for r in rows]
    versions = [d["version"] for d in decisions]
    switch = versions.index(new)
    assert set(versions[:switch]) == {old} and set(versions[switch:]) == {new}, "the swap is not one clean cut"
    assert 0 < switch < len(rows)
    assert watcher.swaps == [(old, new)]
    assert counts.scored == {old: switch, new: len(rows) - switch}

    frame = pd.DataFrame(rows)[list(fs.feature_names)]
    expected = {v: mlflow.pyfunc.load_model(f"models:/{MODEL}/{v}").predict(frame) for v in (old, new)}
    for i, d in enumerate(decisions):
        assert d["score"] == pytest.approx(expected[d["version"]][i], abs=1e-12)


def test_scoring_goes_on_with_the_loaded_model_when_the_registry_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sim = simulation()
    fs = sim.featureset()
    store = model_store()
    registry = Registry(store.tracking_uri)
    watcher = ModelWatcher(registry, MODEL, "champion", tuple(fs.columns), interval=0.2)
    model = watcher.start()

    def unreachable(*_: object) -> None:
        raise ConnectionError("registry host unreachable")

    monkeypatch.setattr(registry.client, "get_model_version_by_alias", unreachable)
    with caplog.at_level("WARNING", logger="samestream.registry"):
        time.sleep(1.0)
    assert watcher.current is model
    assert "model registry unavailable" in caplog.text and f"still scoring with {model.label}" in caplog.text

    settings = live_settings(unique_prefix("offline"), guarantee="at-least-once")
    produce_rows(settings.topics.features, sim.rows[:50])
    counts = ScoringProcess(fs, settings, watcher).run(idle_timeout=60, max_rows=50)
    assert counts.scored == {model.version: 50}
    assert len(read_topic(settings.topics.decisions)) == 50


def test_promote_command_moves_the_alias() -> None:
    store = model_store()
    alias = f"champion-{uuid.uuid4().hex[:6]}"
    runner = CliRunner()
    base = ["promote", "fraud", "--alias", alias, "--tracking-uri", store.tracking_uri]
    first = runner.invoke(cli_app, [*base, "--version", store.versions["lr"]])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli_app, [*base, "--version", store.versions["lr_strong"]])
    assert second.exit_code == 0, second.output
    assert f"v{store.versions['lr']} -> v{store.versions['lr_strong']}" in second.output
    assert Registry(store.tracking_uri).aliases(MODEL)[alias] == store.versions["lr_strong"]
    missing = runner.invoke(cli_app, [*base, "--version", "999"])
    assert missing.exit_code == 2 and "cannot resolve" in missing.output
