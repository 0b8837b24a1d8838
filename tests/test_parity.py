"""Batch and per-event drivers give identical rows for the same events.

The batch driver reads Parquet, sorts, runs and writes DuckDB; the per-event driver takes the
same events as JSON bytes, one message at a time with a fresh state store, as a stream
consumer would. Every row, every column, exactly equal.
"""

from __future__ import annotations

import heapq
from pathlib import Path

import duckdb
import msgspec
import pytest

from features.featureset import LocalRunner
from features.usecases import build_featureset
from training.materialize import materialize
from training.replay import Source
from training.simulators.fraud import simulate_fraud

pytestmark = pytest.mark.slow


def per_event_rows(fs, payments: Path, labels: Path) -> list[dict]:
    """Merge the JSONL files in event-time order and feed each line as a tagged JSON message."""

    def tagged(path: Path, kind: str, time_field: str):
        for line in path.read_bytes().splitlines():
            event = msgspec.json.decode(line)
            yield (event[time_field], fs.kind_order[kind], msgspec.json.encode({"type": kind, **event}))

    runner = LocalRunner(fs)
    rows: list[dict] = []
    merged = heapq.merge(tagged(payments, "payment", "ts"), tagged(labels, "label", "known_at"))
    for _, _, message in merged:
        outcome = runner.process(None, message)
        assert outcome.dead_letter is None
        rows.extend(outcome.rows)
    return rows


def test_batch_and_per_event_rows_are_identical(tmp_path: Path) -> None:
    parquet = simulate_fraud(tmp_path / "pq", n_payments=6_000, days=30, seed=11, fmt="parquet")
    jsonl = simulate_fraud(tmp_path / "js", n_payments=6_000, days=30, seed=11, fmt="jsonl")
    fs = build_featureset("fraud", parquet.merchants.parent, "parity-secret")
    db = tmp_path / "batch.duckdb"
    materialize(fs, [Source("payment", parquet.payments), Source("label", parquet.labels)], db)

    con = duckdb.connect(str(db), read_only=True)
    batch = con.execute(
        "SELECT * EXCLUDE (featureset_version, event_time), epoch_ms(event_time) AS event_time "
        "FROM fraud_features ORDER BY payment_id"
    ).df()
    con.close()
    stream = sorted(per_event_rows(fs, jsonl.payments, jsonl.labels), key=lambda r: r["payment_id"])

    assert len(batch) == len(stream) == 6_000
    columns = list(fs.columns)
    for expected, got in zip(batch[columns].to_dict("records"), stream, strict=True):
        assert {c: got[c] for c in columns} == expected
