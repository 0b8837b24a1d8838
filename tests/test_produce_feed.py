"""The replayed label feed: hourly watermarks that close days on time and never make a label late."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from features.fraud import FraudFeatureSet
from features.fraud.lookups import load_merchants
from features.state import DictState
from features.tables import WATERMARK, Fold
from serving import produce
from serving.produce import WATERMARK_EVERY_MS, EventFile
from training.simulators.fraud import simulate_fraud


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("feed") / "fraud"
    simulate_fraud(folder, n_payments=1_500, days=20, seed=5, fmt="jsonl")
    return folder


def _feed(messages: list[produce.Outgoing]) -> list[produce.Outgoing]:
    return [m for m in messages if m.feed]


def _folds(fs: FraudFeatureSet, feed: list[produce.Outgoing]) -> list[tuple[str, Fold, int]]:
    """What the merchant-risk table decides for each label of `feed`, folded in order."""
    table = fs.tables[0]
    state: dict[str, object] = {}
    fold_state = DictState(state)
    decided = []
    for m in feed:
        record = fs.depersonalize(fs.parse(None, m.value))
        fold, day = table.fold(record, fold_state)
        if record["kind"] != WATERMARK:
            decided.append((str(record["payment_id"]), fold, day))
    return decided


def test_the_feed_has_an_hourly_watermark_and_none_runs_ahead_of_a_label(sim_dir: Path) -> None:
    fs = FraudFeatureSet(load_merchants(sim_dir / "merchants.csv"), secret="s")
    messages = produce.load(
        fs, [EventFile("payment", sim_dir / "payments.jsonl"), EventFile("label", sim_dir / "labels.jsonl")]
    )
    times = [m.event_time_ms for m in messages]
    assert times == sorted(times)
    watermarks = [m for m in messages if m.kind == WATERMARK]
    span_hours = (times[-1] - times[0]) // WATERMARK_EVERY_MS
    assert len(watermarks) >= span_hours - 1
    assert all(m.key is None and m.feed for m in watermarks)


def test_a_label_out_of_order_holds_the_watermarks_back_and_is_folded_as_the_batch_driver_folds_it(
    sim_dir: Path, tmp_path: Path
) -> None:
    fs = FraudFeatureSet(load_merchants(sim_dir / "merchants.csv"), secret="s")
    lines = (sim_dir / "labels.jsonl").read_bytes().splitlines()
    early = lines.pop(3)  # known days before the labels that now come before it
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(b"\n".join([*lines, early]) + b"\n")
    files = [EventFile("payment", sim_dir / "payments.jsonl"), EventFile("label", labels)]
    feed = _feed(produce.load(fs, files))
    ordered = _feed(produce.load(fs, [files[0], EventFile("label", sim_dir / "labels.jsonl")]))
    assert sum(m.kind == WATERMARK for m in feed) < sum(m.kind == WATERMARK for m in ordered)

    for i, m in enumerate(feed):
        if m.kind == WATERMARK and i + 1 < len(feed):
            assert m.event_time_ms <= min(later.event_time_ms for later in feed[i + 1 :])

    labels_only = [m for m in feed if m.kind != WATERMARK]
    assert _folds(fs, feed) == _folds(fs, labels_only)
    early_id = msgspec.json.decode(early)["payment_id"]
    assert any(pid == early_id for pid, _, _ in _folds(fs, feed))
