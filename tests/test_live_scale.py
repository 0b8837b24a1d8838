"""Exact batch/stream parity when a user scales out: partitions, replicas, replays, a killed replica.

Every test publishes event files with `samestream produce` as fast as the broker takes them
(keyed by the raw customer or store id, as upstream systems key them), runs the feature
process as separate replica processes of one consumer group, and compares what a read_committed
consumer finds on the feature topic with the batch driver's rows: exactly one row per event,
equal in every column.
"""

from __future__ import annotations

import functools
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from features.usecases import build_featureset, get_use_case
from serving.produce import EventFile
from tests.live_fixtures import (
    SECRET,
    assert_no_personal_data,
    broker,  # noqa: F401 - a fixture, used by name
    cli,
    personal_values,
    read_raw,
    read_topic,
    running,
    scratch_dir,
    unique_prefix,
    wait_for,
)
from training import replay
from training.materialize import materialize
from training.replay import Source

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]


@dataclass(frozen=True)
class History:
    use_case: str
    data_dir: Path
    """Holds `<use case>/` as `--data-dir` expects."""
    files: list[EventFile]
    rows: dict[str, dict[str, Any]]
    """Batch rows by row id, each with `featureset_version`."""
    row_id: str


@functools.cache
def history(use_case: str) -> History:
    """A small simulated history of the use case and the rows the batch driver makes of it."""
    data_dir = scratch_dir() / "data"
    folder = data_dir / use_case
    if use_case == "fraud":
        from training.simulators.fraud import simulate_fraud

        simulate_fraud(folder, n_payments=3_000, days=21, seed=23, fmt="jsonl")
    elif use_case == "loan":
        from training.simulators.loan import simulate_loan

        simulate_loan(folder, n_applications=300, days=40, seed=23, fmt="jsonl")
    else:
        from training.simulators.store import simulate_store

        simulate_store(folder, n_sales=40_000, days=35, seed=23, fmt="jsonl")
    fs = build_featureset(use_case, folder, SECRET)
    sources = replay.sources_in(get_use_case(use_case).files, folder)
    rows = {}
    for outcome in replay.run(fs, replay.load(fs, sources)):
        rows.update({str(row[fs.row_id]): {**row, "featureset_version": fs.version} for row in outcome.rows})
    files = [EventFile(s.kind, s.path) for s in sources]
    return History(use_case, data_dir, files, rows, fs.row_id)


def _produce(h: History, prefix: str, partitions: int, *extra: str) -> None:
    args = ["produce", h.use_case, "--data-dir", str(h.data_dir), "--topic-prefix", prefix]
    args += ["--partitions", str(partitions), *(f"--events={f.kind}={f.path}" for f in h.files), *extra]
    proc = cli(args, scratch_dir() / f"{prefix}produce.log")
    assert proc.wait(300) == 0, (scratch_dir() / f"{prefix}produce.log").read_text()[-3000:]


def _replica(h: History, prefix: str, name: str, *extra: str) -> Any:
    args = ["features", h.use_case, "--data-dir", str(h.data_dir), "--secret", SECRET, "--topic-prefix", prefix]
    args += ["--instance-id", name, "--state-dir", str(scratch_dir() / f"state-{name}"), *extra]
    return cli(args, scratch_dir() / f"{prefix}{name}.log")


def _stream_rows(h: History, prefix: str) -> list[tuple[str | None, dict[str, Any]]]:
    return read_topic(f"{prefix}{h.use_case}-features")


def _assert_parity(h: History, stream: list[tuple[str | None, dict[str, Any]]]) -> None:
    counts = Counter(key for key, _ in stream)
    repeated = [key for key, n in counts.items() if n > 1]
    assert not repeated, f"{len(repeated)} rows published more than once, e.g. {repeated[:3]}"
    got = {key: row for key, row in stream}
    missing = sorted(set(h.rows) - set(got))
    extra = sorted(set(got) - set(h.rows))
    assert not missing and not extra, f"missing {missing[:3]} ({len(missing)}), extra {extra[:3]} ({len(extra)})"
    differing = [key for key, row in h.rows.items() if got[key] != row]
    if differing:
        key = differing[0]
        columns = {c: (got[key].get(c), v) for c, v in h.rows[key].items() if got[key].get(c) != v}
        raise AssertionError(f"{len(differing)} of {len(h.rows)} rows differ; {key}: (stream, batch) {columns}")


def _wait_rows(h: History, prefix: str, at_least: int, timeout_s: float) -> None:
    topic = f"{prefix}{h.use_case}-features"
    wait_for(lambda: len(read_raw(topic)) >= at_least, timeout_s, f"{at_least} rows on {topic}", every_s=1.0)


@pytest.mark.parametrize("use_case", ["fraud", "loan", "store"])
def test_four_partitions_two_replicas_make_the_batch_rows(use_case: str) -> None:
    h = history(use_case)
    prefix = unique_prefix(f"scale-{use_case}")
    replicas = [_replica(h, prefix, f"r{i}", "--stop-after-idle", "20") for i in range(2)]
    with running(*replicas):
        _produce(h, prefix, partitions=4)
        _wait_rows(h, prefix, len(h.rows), 240)
        for proc in replicas:
            proc.wait(120)
    _assert_parity(h, _stream_rows(h, prefix))
    fs = build_featureset(use_case, h.data_dir / use_case, SECRET)
    assert_no_personal_data(prefix, personal_values(fs, h.files))


def test_a_replica_killed_mid_replay_and_a_replay_beside_live_traffic_change_no_row(tmp_path: Path) -> None:
    """Three replicas on eight partitions; the events arrive paced, one replica is SIGKILLed
    halfway and restarted, and a replay of the topic from its earliest offset into DuckDB runs
    while the events still arrive: the topic holds each batch row once, and the replay's DuckDB
    table equals `materialize`'s."""
    h = history("fraud")
    prefix = unique_prefix("kill")
    replicas = [_replica(h, prefix, f"k{i}", "--stop-after-idle", "25") for i in range(3)]
    replay_db = tmp_path / "replay.duckdb"
    with running(*replicas):
        producer = cli(
            [
                "produce",
                "fraud",
                "--data-dir",
                str(h.data_dir),
                "--topic-prefix",
                prefix,
                "--partitions",
                "8",
                "--rate",
                "500",
                *(f"--events={f.kind}={f.path}" for f in h.files),
            ],
            tmp_path / "produce.log",
        )
        with running(producer):
            _wait_rows(h, prefix, len(h.rows) // 4, 180)
            replicas[0].send_signal(signal.SIGKILL)
            replicas[0].wait(10)
            replicas.append(_replica(h, prefix, "k0", "--stop-after-idle", "25"))
            replayer = _replica(
                h,
                prefix,
                "replay",
                "--role",
                "replay",
                "--no-publish",
                "--db",
                str(replay_db),
                "--stop-after-idle",
                "25",
            )
            with running(replayer, replicas[-1]):
                assert producer.wait(300) == 0, (tmp_path / "produce.log").read_text()[-2000:]
                _wait_rows(h, prefix, len(h.rows), 240)
                for proc in (*replicas[1:], replayer):
                    proc.wait(180)
    _assert_parity(h, _stream_rows(h, prefix))

    batch_db = tmp_path / "batch.duckdb"
    fs = build_featureset("fraud", h.data_dir / "fraud", SECRET)
    materialize(fs, [Source(f.kind, f.path) for f in h.files], batch_db)
    assert _table(replay_db) == _table(batch_db)


def _table(db: Path, query: Callable[[str], str] = lambda t: f"SELECT * FROM {t} ORDER BY ALL") -> tuple[Any, ...]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return tuple(con.execute(query(table)).fetchall() for table in ("fraud_features", "fraud_labels"))
    finally:
        con.close()
