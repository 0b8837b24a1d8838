"""Faults in a running system: a dead replica, a lost state disk, an unreachable model registry.

Each test runs the real processes (the CLI in subprocesses where a process must die or be
restarted) against a broker and checks what reaches the output topics as a read_committed
consumer sees it: every row exactly once, and the same rows an uninterrupted run gives.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from serving import produce
from serving.feature_process import FeatureProcess
from tests.live_fixtures import (
    MODEL,
    SECRET,
    broker,  # noqa: F401 - a fixture, used by name
    cli,
    live_settings,
    model_store,
    produce_rows,
    read_topic,
    running,
    simulation,
    unique_prefix,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]


def _serve_args(prefix: str, instance: str, tracking_uri: str, alias: str, *extra: str) -> list[str]:
    return [
        "serve",
        "fraud",
        "--data-dir",
        str(simulation().data_dir),
        "--secret",
        SECRET,
        "--topic-prefix",
        prefix,
        "--guarantee",
        "exactly-once",
        "--instance-id",
        instance,
        "--tracking-uri",
        tracking_uri,
        "--alias",
        alias,
        *extra,
    ]


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _assignment(bootstrap: str, group: str) -> dict[str, int]:
    """Client id (`<group>-<instance>`) -> number of partitions assigned to it in `group`, now."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    return {m.client_id: len(m.assignment.topic_partitions) if m.assignment else 0 for m in described.members}


def _closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _exactly_once(decisions: list[dict[str, object]], ids: list[str]) -> None:
    committed = Counter(str(d["payment_id"]) for d in decisions)
    missing = set(ids) - set(committed)
    doubled = [k for k, n in committed.items() if n > 1]
    assert not missing, f"{len(missing)} rows without a committed decision, e.g. {sorted(missing)[:5]}"
    assert not doubled, f"{len(doubled)} rows decided twice, e.g. {doubled[:5]}"
    assert set(committed) == set(ids)


# ---------------------------------------------------------------------------------------------
# two replicas, one killed


PARTITIONS = 4
REPLICA_RATE = 300.0


@pytest.mark.soak
def test_a_killed_replica_hands_its_partitions_over_and_every_row_gets_one_decision(
    broker: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    sim = simulation()
    store = model_store()
    prefix = unique_prefix("replicas")
    features, decisions = f"{prefix}fraud-features", f"{prefix}fraud-decisions"
    group = f"{prefix}fraud-scorer"
    produce.ensure_topic(broker, features, PARTITIONS)
    rows = sim.rows
    warm = 40
    produce_rows(features, rows[:warm])
    replicas = {
        name: cli(_serve_args(prefix, name, store.tracking_uri, store.versions["lr"]), tmp_path / f"{name}.log")
        for name in ("a", "b")
    }
    feeder = threading.Thread(target=produce_rows, args=(features, rows[warm:], REPLICA_RATE), daemon=True)
    with running(*replicas.values()):
        wait_for(
            lambda: sorted(_assignment(broker, group).values()) == [2, 2],
            90,
            "both replicas to hold two partitions each",
        )
        wait_for(lambda: len(read_topic(decisions)) >= warm, 60, "the warm-up rows to be decided")
        feeder.start()
        wait_for(lambda: len(read_topic(decisions)) >= warm + 300, 60, "decisions under load")
        wait_for(
            lambda: len(read_topic(decisions, committed_only=False)) > len(read_topic(decisions)),
            30,
            "a transaction with decisions in it to be open",
            every_s=0.05,
        )
        os.kill(replicas["a"].pid, signal.SIGKILL)
        replicas["a"].wait(10)
        at_kill = len(read_topic(decisions))
        assert at_kill < len(rows), "the rows were all decided before the kill; nothing was tested"

        feeder.join(60)
        assert not feeder.is_alive()
        wait_for(
            lambda: _assignment(broker, group) == {f"{group}-b": PARTITIONS},
            60,
            "the surviving replica to own every partition",
        )
        # The killed replica's open transaction holds the committed view back until the broker
        # aborts it (its transaction timeout); then the survivor's decisions all become visible.
        wait_for(lambda: len(read_topic(decisions)) >= len(rows), 150, "a committed decision for every row")
        time.sleep(2.0)  # a duplicate, if any, would commit within a few commit intervals
        assert replicas["b"].poll() is None, _log(tmp_path / "b.log")[-3000:]

    # Whether the killed replica's open transaction or the survivor's was seen open cannot be
    # told apart from outside, so aborted decisions are not required; exactly one committed is.
    _exactly_once([v for _, v in read_topic(decisions)], [r["payment_id"] for r in rows])


# ---------------------------------------------------------------------------------------------
# state directory lost


def test_a_feature_process_without_its_state_directory_rebuilds_it_from_the_changelog(tmp_path: Path) -> None:
    sim = simulation()
    fs = sim.featureset()
    state_dir = tmp_path / "state"
    settings = live_settings(unique_prefix("lostdisk"), guarantee="exactly-once", state_dir=state_dir)
    messages = produce.load(fs, sim.files)
    produce.publish(settings.bootstrap, settings.topics.events, messages, feed_topic=settings.topics.named(fs.feed))
    events = sum(not m.feed for m in messages)
    assert events == len(sim.rows)

    first = FeatureProcess(fs, settings).run(idle_timeout=30, max_events=events // 2)
    assert 0 < first.events < events
    stored = [p for p in state_dir.rglob("*") if p.is_file()]
    assert stored, "the first run kept no local state"
    done = read_topic(settings.topics.features)
    assert 0 < len(done) < len(sim.rows)

    shutil.rmtree(state_dir)
    second = FeatureProcess(fs, settings).run(idle_timeout=10, max_events=events - first.events)
    assert sum(second.dead.values()) == 0
    assert state_dir.exists()

    stream = [row for _, row in read_topic(settings.topics.features)]
    assert len(stream) == len(sim.rows), f"{len(stream)} feature rows for {len(sim.rows)} payments"
    assert [r["payment_id"] for r in stream] == [r["payment_id"] for r in sim.rows]
    after = [(i, r["payment_id"]) for i, (r, b) in enumerate(zip(stream, sim.rows, strict=True)) if r != b]
    assert not after, f"{len(after)} rows differ from the batch run after the restart, first {after[0]}"


# ---------------------------------------------------------------------------------------------
# model registry unreachable


def test_a_scorer_that_cannot_reach_the_registry_at_start_exits_with_a_clear_error(tmp_path: Path) -> None:
    prefix = unique_prefix("noregistry")
    uri = f"http://127.0.0.1:{_closed_port()}"
    log = tmp_path / "serve.log"
    started = time.monotonic()
    proc = cli(_serve_args(prefix, "x", uri, "champion"), log)
    with running(proc):
        code = proc.wait(120)
    text = " ".join(_log(log).split())
    assert code == 2, text[-2000:]
    assert f"cannot resolve {MODEL}@champion in the registry at {uri}" in text, text[-2000:]
    assert "Traceback" not in text
    assert time.monotonic() - started < 120


def _mlflow_server(backend: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=log.parent,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started in a session of its own, and every process it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with suppress(ProcessLookupError):  # workers of a server outlive their parent in the same group
        os.killpg(proc.pid, signal.SIGKILL)


def test_a_scorer_with_its_model_loaded_keeps_scoring_when_the_registry_goes_away(tmp_path: Path) -> None:
    sim = simulation()
    store = model_store()
    db = tmp_path / "mlflow.db"
    shutil.copy(store.tracking_uri.removeprefix("sqlite:///"), db)
    port = _closed_port()
    server = _mlflow_server(f"sqlite:///{db}", port, tmp_path / "mlflow-server.log")
    try:
        wait_for(lambda: _answers(port), 90, "the MLflow server to answer")
        prefix = unique_prefix("registrygone")
        decisions = f"{prefix}fraud-decisions"
        rows = sim.rows[:400]
        produce_rows(f"{prefix}fraud-features", rows[:200])
        log = tmp_path / "serve.log"
        scorer = cli(
            _serve_args(prefix, "x", f"http://127.0.0.1:{port}", "champion", "--watch-interval", "0.5"),
            log,
            env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"},
        )
        with running(scorer):
            wait_for(lambda: len(read_topic(decisions)) >= 200, 90, "the first 200 decisions")
            _stop_group(server)
            wait_for(lambda: "model registry unavailable" in _log(log), 30, "the scorer to notice the outage")
            produce_rows(f"{prefix}fraud-features", rows[200:])
            wait_for(lambda: len(read_topic(decisions)) >= len(rows), 60, "decisions while the registry is away")
            assert scorer.poll() is None, _log(log)[-3000:]
        committed = [v for _, v in read_topic(decisions)]
        _exactly_once(committed, [r["payment_id"] for r in rows])
        assert {d["version"] for d in committed} == {store.versions["lr"]}
    finally:
        _stop_group(server)


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
