"""`samestream consistency`: live rows against a batch recompute, per feature, logged to MLflow."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import msgspec
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from serving import produce
from serving.cli import app as cli_app
from serving.feature_process import FeatureProcess
from tests.live_fixtures import (
    SECRET,
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    registry_store,
    simulation,
    unique_prefix,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]


def _reordered(messages: list[produce.Outgoing]) -> list[produce.Outgoing]:
    """The events with every customer's second and third payment swapped on the topic, as a
    topology that re-keys across partitions delivers them: the same events, another order."""
    seen: dict[bytes | None, list[int]] = defaultdict(list)
    out = list(messages)
    for i, m in enumerate(messages):
        if not m.feed and not m.invalid:
            seen[m.key].append(i)
    for positions in seen.values():
        if len(positions) >= 3:
            a, b = positions[1], positions[2]
            out[a], out[b] = out[b], out[a]
    return out


def _run(prefix: str, reorder: bool) -> None:
    sim = simulation()
    fs = sim.featureset()
    settings = live_settings(prefix, guarantee="at-least-once")
    messages = produce.load(fs, sim.files)
    produce.ensure_topic(settings.bootstrap, settings.topics.events, 1)
    produce.publish(
        settings.bootstrap,
        settings.topics.events,
        _reordered(messages) if reorder else messages,
        feed_topic=settings.topics.named(fs.feed),
    )
    FeatureProcess(fs, settings).run(idle_timeout=6, max_events=len(sim.rows))


def _consistency(prefix: str, tracking_uri: str) -> tuple[int, str, dict[str, float]]:
    sim = simulation()
    result = CliRunner().invoke(
        cli_app,
        [
            "consistency",
            "fraud",
            "--data-dir",
            str(sim.data_dir),
            "--secret",
            SECRET,
            "--topic-prefix",
            prefix,
            "--tracking-uri",
            tracking_uri,
        ],
    )
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("fraud-consistency")
    assert experiment is not None, result.output
    [run] = client.search_runs([experiment.experiment_id], max_results=1)
    return result.exit_code, result.output, run.data.metrics


def test_a_reordered_stream_shows_up_as_mismatching_history_features(tmp_path: Path) -> None:
    prefix = unique_prefix("reordered")
    _run(prefix, reorder=True)
    code, output, metrics = _consistency(prefix, registry_store())
    assert code == 1, output
    assert metrics["rows_compared"] == len(simulation().rows)
    assert metrics["rows_missing"] == metrics["rows_extra"] == 0
    assert metrics["rows_mismatching"] > 0
    assert metrics["log_secs_since_last_mismatching"] > 0 and metrics["log_secs_since_last_max_abs_diff"] > 0
    assert metrics["log_amount_mismatching"] == 0
    assert "differ" in output


def test_the_live_topology_is_consistent(tmp_path: Path) -> None:
    prefix = unique_prefix("consistent")
    _run(prefix, reorder=False)
    code, output, metrics = _consistency(prefix, registry_store())
    assert code == 0, output
    assert metrics["rows_compared"] == len(simulation().rows) and metrics["rows_mismatching"] == 0
    assert msgspec.json.encode(metrics)  # every metric is a plain number
