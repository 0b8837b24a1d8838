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
from serving.registry import ModelUnavailable, ModelWatcher, Registry
from serving.scorer import ScoringProcess
from tests.live_fixtures import (
    MODEL,
    SECRET,
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
    common = ["--tracking-uri", store.tracking_uri, "--data-dir", str(simulation().data_dir), "--secret", SECRET]
    base = ["promote", "fraud", "--alias", alias, *common]
    first = runner.invoke(cli_app, [*base, "--version", store.versions["lr"]])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli_app, [*base, "--version", store.versions["lr_strong"]])
    assert second.exit_code == 0, second.output
    assert f"v{store.versions['lr']} -> v{store.versions['lr_strong']}" in second.output
    assert Registry(store.tracking_uri).aliases(MODEL)[alias] == store.versions["lr_strong"]
    missing = runner.invoke(cli_app, [*base, "--version", "999"])
    assert missing.exit_code == 2 and "cannot resolve" in missing.output


def _skewed_version() -> str:
    """A copy of the champion's model registered as trained on another FeatureSet version."""
    store = model_store()
    mlflow.set_tracking_uri(store.tracking_uri)
    client = mlflow.MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    source = client.get_model_version(MODEL, store.versions["lr"])
    skewed = client.create_model_version(MODEL, source.source, run_id=source.run_id)
    for key, value in source.tags.items():
        client.set_model_version_tag(MODEL, skewed.version, key, value)
    client.set_model_version_tag(MODEL, skewed.version, "featureset_version", "0123456789ab")
    return str(skewed.version)


def test_promote_refuses_a_version_trained_on_other_features() -> None:
    store = model_store()
    skewed = _skewed_version()
    args = ["promote", "fraud", "--alias", f"champion-{uuid.uuid4().hex[:6]}", "--version", skewed]
    refused = CliRunner().invoke(
        cli_app,
        [*args, "--tracking-uri", store.tracking_uri, "--data-dir", str(simulation().data_dir), "--secret", SECRET],
    )
    assert refused.exit_code == 2
    assert (
        "trained on FeatureSet 0123456789ab" in refused.output and simulation().featureset().version in refused.output
    )


def test_the_scorer_refuses_rows_of_another_featureset_version() -> None:
    sim = simulation()
    fs = sim.featureset()
    store = model_store()
    settings = live_settings(unique_prefix("skew"), guarantee="at-least-once")
    rows = [dict(r) for r in sim.rows[:30]]
    for row in rows[10:20]:
        row["featureset_version"] = "0123456789ab"
    produce_rows(settings.topics.features, rows)
    watcher = ModelWatcher(
        Registry(store.tracking_uri), MODEL, store.versions["lr"], tuple(fs.columns), featureset_version=fs.version
    )
    watcher.start()
    counts = ScoringProcess(fs, settings, watcher).run(idle_timeout=30, max_rows=len(rows))
    decided = [v["payment_id"] for _, v in read_topic(settings.topics.decisions)]
    assert decided == [r["payment_id"] for r in rows[:10] + rows[20:]]
    letters = [v for _, v in read_topic(settings.topics.deadletters)]
    assert counts.dead == len(letters) == 10
    assert all(v["reason"].startswith("version skew: the row was made by FeatureSet 0123456789ab") for v in letters)

    with pytest.raises(ModelUnavailable, match="trained on FeatureSet 0123456789ab"):
        ModelWatcher(
            Registry(store.tracking_uri), MODEL, _skewed_version(), tuple(fs.columns), featureset_version=fs.version
        ).start()
