"""The broker stopped and restarted mid-stream: every live process recovers on its own.

The test runs a broker of its own (same jars, its own ports and data directory under the test's
temporary folder), so stopping it cannot disturb any other test. Producer, feature process and
scorer run as the CLI runs them, in exactly-once mode; the broker goes down while all three are
busy and comes back a few seconds later. Afterwards a read_committed consumer must find every
feature row and every decision exactly once, and the feature rows equal the batch driver's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_fixtures import ROOT, SECRET, cli, model_store, read_topic, running, simulation, unique_prefix, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.soak]

KAFKA_SH = ROOT / "kafka" / "kafka.sh"
RATE = 150
"""Events per second the producer replays: the stream is still running when the broker stops."""
DOWN_S = 8.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateBroker:
    """A single-node KRaft broker of this test's own, started with `kafka/kafka.sh`."""

    def __init__(self, home: Path) -> None:
        shared = Path(os.environ.get("SAMESTREAM_KAFKA_HOME", ROOT / ".kafka")) / "libs"
        if not (shared / ".installed").exists():
            pytest.fail(f"no Kafka jars in {shared}: run `bash kafka/kafka.sh install`", pytrace=False)
        home.mkdir(parents=True)
        (home / "libs").symlink_to(shared)
        port, controller = _free_port(), _free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "SAMESTREAM_KAFKA_HOME": str(home),
            "SAMESTREAM_KAFKA_PORT": str(port),
            "SAMESTREAM_KAFKA_CONTROLLER_PORT": str(controller),
        }

    def _run(self, action: str) -> None:
        done = subprocess.run(["bash", str(KAFKA_SH), action], env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"kafka.sh {action} failed:\n{done.stdout}\n{done.stderr}"

    def up(self) -> None:
        self._run("up")

    def down(self) -> None:
        self._run("down")


@pytest.fixture
def private_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path / "kafka")
    broker.up()
    monkeypatch.setenv("SAMESTREAM_KAFKA_BOOTSTRAP", broker.bootstrap)
    try:
        yield broker
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "down"], env=broker.env, capture_output=True)
        shutil.rmtree(tmp_path / "kafka", ignore_errors=True)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def test_producer_feature_process_and_scorer_ride_out_a_broker_restart(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    sim = simulation()
    store = model_store()
    prefix = unique_prefix("restart")
    features, decisions = f"{prefix}fraud-features", f"{prefix}fraud-decisions"
    common = ["fraud", "--data-dir", str(sim.data_dir), "--secret", SECRET, "--topic-prefix", prefix]
    live = ["--guarantee", "exactly-once", "--state-dir", str(tmp_path / "state")]
    logs = {name: tmp_path / f"{name}.log" for name in ("produce", "features", "serve")}
    producer = cli(["produce", *common[:3], *common[5:], "--rate", str(RATE)], logs["produce"])
    feature_process = cli(["features", *common, *live], logs["features"])
    scorer = cli(
        ["serve", *common, *live, "--tracking-uri", store.tracking_uri, "--alias", store.versions["lr"]],
        logs["serve"],
    )
    with running(producer, feature_process, scorer):
        wait_for(lambda: len(read_topic(decisions)) >= 100, 120, "the first committed decisions")
        assert producer.poll() is None, "the producer finished before the broker stopped; nothing was tested"

        private_broker.down()
        time.sleep(DOWN_S)
        private_broker.up()

        assert producer.wait(300) == 0, _tail(logs["produce"])
        wait_for(lambda: len(read_topic(decisions)) >= len(sim.rows), 240, "a committed decision for every row")
        time.sleep(2.0)  # a duplicate, if any, would commit within a few commit intervals
        for name, proc in (("features", feature_process), ("serve", scorer)):
            assert proc.poll() is None, f"{name} exited:\n{_tail(logs[name])}"

    rows = [row for _, row in read_topic(features)]
    doubled = [k for k, n in Counter(r["payment_id"] for r in rows).items() if n > 1]
    assert not doubled, f"{len(doubled)} payments have two feature rows, e.g. {doubled[:5]}"
    assert sorted(rows, key=lambda r: r["payment_id"]) == sorted(sim.rows, key=lambda r: r["payment_id"])

    decided = Counter(str(d["payment_id"]) for _, d in read_topic(decisions))
    assert set(decided) == {r["payment_id"] for r in sim.rows}
    assert max(decided.values()) == 1, f"decided twice: {[k for k, n in decided.items() if n > 1][:5]}"
