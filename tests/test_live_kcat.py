"""Interop: events published with kcat are scored, and kcat reads the decisions back as plain JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving import produce
from serving.cli import app as cli_app
from tests.kafka_helpers import kafka_required, require_broker
from tests.live_fixtures import (
    SECRET,
    broker,  # noqa: F401 - a fixture, used by name
    model_store,
    simulation,
    unique_prefix,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

DECISION_FIELDS = {
    "payment_id",
    "score",
    "decision",
    "reasons",
    "model",
    "version",
    "alias",
    "latency_ms",
    "model_ms",
    "decided_at",
}


def _kcat() -> str:
    kcat = shutil.which("kcat")
    if kcat is None:
        message = "kcat is not installed (apt-get install kcat)"
        if kafka_required():
            pytest.fail(message + " and SAMESTREAM_REQUIRE_KAFKA is set")
        pytest.skip(message)
    return kcat


def test_events_published_with_kcat_are_scored_and_read_back_with_kcat(tmp_path: Path) -> None:
    kcat = _kcat()
    servers = require_broker()
    sim = simulation()
    fs = sim.featureset()
    store = model_store()
    prefix = unique_prefix("kcat")
    replayed = produce.load(fs, sim.files)
    events = [m for m in replayed if not m.feed][:400]
    lines, feed = tmp_path / "events.txt", tmp_path / "feed.txt"
    lines.write_bytes(b"".join(m.key + b"\t" + m.value + b"\n" for m in events if m.key is not None))
    feed.write_bytes(b"".join(m.value + b"\n" for m in replayed if m.feed))
    for args in (
        ["-t", f"{prefix}fraud-events", "-K", "\t", "-l", str(lines)],
        ["-t", f"{prefix}fraud-label-events", "-l", str(feed)],
    ):
        published = subprocess.run(
            [kcat, "-P", "-b", servers, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert published.returncode == 0, published.stderr

    runner = CliRunner()
    common = [
        "fraud",
        "--data-dir",
        str(sim.data_dir),
        "--secret",
        SECRET,
        "--topic-prefix",
        prefix,
        "--stop-after-idle",
        "3",
    ]
    state = str(tmp_path / "state")
    features = runner.invoke(cli_app, ["features", *common, "--state-dir", state])
    assert features.exit_code == 0, features.output
    served = runner.invoke(
        cli_app,
        ["serve", *common, "--tracking-uri", store.tracking_uri, "--alias", store.versions["lr"], "--state-dir", state],
    )
    assert served.exit_code == 0, served.output

    read = subprocess.run(
        [kcat, "-C", "-b", servers, "-t", f"{prefix}fraud-decisions", "-e", "-o", "beginning", "-f", "%k\t%s\n"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    decisions = {}
    for line in read.stdout.splitlines():
        key, _, value = line.partition("\t")
        decision = json.loads(value)
        assert key == decision["payment_id"] and set(decision) == DECISION_FIELDS
        assert 0.0 <= decision["score"] <= 1.0 and decision["decision"] in {"approve", "review", "block"}
        decisions[key] = decision
    payments = [json.loads(m.value) for m in events if json.loads(m.value)["type"] == "payment"]
    assert sorted(decisions) == sorted(p["payment_id"] for p in payments)
    assert len(read.stdout.splitlines()) == len(payments)
