"""Exactly-once: a scorer killed with SIGKILL mid-stream and restarted commits one decision per row."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.live_fixtures import (
    SECRET,
    broker,  # noqa: F401 - a fixture, used by name
    cli,
    model_store,
    produce_rows,
    read_topic,
    simulation,
    unique_prefix,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

RATE = 400.0


def test_sigkill_mid_stream_leaves_exactly_one_committed_decision_per_row(tmp_path: Path) -> None:
    sim = simulation()
    store = model_store()
    prefix = unique_prefix("eos")
    features, decisions = f"{prefix}fraud-features", f"{prefix}fraud-decisions"
    args = [
        "serve",
        "fraud",
        "--data-dir",
        str(sim.data_dir),
        "--secret",
        SECRET,
        "--topic-prefix",
        prefix,
        "--guarantee",
        "exactly-once",
        "--commit-interval",
        "2",
        "--instance-id",
        "eos-test",
        "--tracking-uri",
        store.tracking_uri,
        "--alias",
        store.versions["lr"],
        "--state-dir",
        str(tmp_path / "state"),
    ]
    rows = sim.rows
    produce_rows(features, rows[:1])
    first = cli(args, tmp_path / "first.log")
    try:
        wait_for(lambda: len(read_topic(decisions)) >= 1, 60, "the first scorer to start")
        feeder = threading.Thread(target=produce_rows, args=(features, rows[1:], RATE), daemon=True)
        feeder.start()
        wait_for(lambda: len(read_topic(decisions)) >= 200, 30, "200 committed decisions")
        wait_for(
            lambda: len(read_topic(decisions, committed_only=False)) > len(read_topic(decisions)),
            30,
            "a transaction with decisions in it to be open",
            every_s=0.05,
        )
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    at_kill = len(read_topic(decisions))
    assert at_kill < len(rows), "the scorer finished before it was killed; nothing was tested"

    second = cli(args, tmp_path / "second.log")
    try:
        feeder.join(30)
        wait_for(lambda: len(read_topic(decisions)) >= len(rows), 90, "a committed decision for every row")
        time.sleep(4.0)  # a duplicate, if any, would commit within two commit intervals
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)

    committed = Counter(v["payment_id"] for _, v in read_topic(decisions))
    assert set(committed) == {r["payment_id"] for r in rows}
    assert max(committed.values()) == 1, f"doubled: {[k for k, n in committed.items() if n > 1][:5]}"
    everything = read_topic(decisions, committed_only=False)
    assert len(everything) > len(rows), "no aborted decision on record: the kill did not interrupt a transaction"
