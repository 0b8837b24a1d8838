"""The FeatureSet contract (`features.contract`): every use case keeps it on a simulated
sample, and a FeatureSet that breaks a promise fails with a message naming it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from features.contract import Event, check_featureset, check_policies, check_rows
from features.depersonalize import DEV_SECRET
from features.featureset import FeatureSet, InvalidEvent
from features.sources import read_payloads
from features.usecases import build_featureset, get_use_case
from training.replay import sources_in


def sample(use_case: str, folder: Path, simulate: Callable[[Path], Any]) -> tuple[FeatureSet, list[Event]]:
    """A simulated history of `use_case`, its valid events as (kind, mapping), and its FeatureSet."""
    simulate(folder / use_case)
    fs = build_featureset(use_case, folder / use_case, DEV_SECRET)
    events: list[Event] = []
    for source in sources_in(get_use_case(use_case).files, folder / use_case):
        for _, payload in read_payloads(source.path):
            data = msgspec.json.decode(payload) if isinstance(payload, bytes) else payload
            try:
                fs.parse(source.kind, data)
            except InvalidEvent:
                continue  # the simulators plant faulty events; the contract is about valid ones
            events.append((source.kind, data))
    return fs, events


def test_fraud_keeps_the_contract(tmp_path: Path) -> None:
    from training.simulators.fraud import simulate_fraud

    fs, events = sample(
        "fraud", tmp_path, lambda out: simulate_fraud(out, n_payments=2500, days=20, seed=3, fmt="jsonl")
    )
    check_featureset(fs, events)


def test_loan_keeps_the_contract(tmp_path: Path) -> None:
    from training.simulators.loan import simulate_loan

    fs, events = sample(
        "loan", tmp_path, lambda out: simulate_loan(out, n_applications=400, days=40, seed=3, fmt="jsonl")
    )
    check_featureset(fs, events)


def test_store_keeps_the_contract(tmp_path: Path) -> None:
    from training.simulators.store import simulate_store

    fs, events = sample("store", tmp_path, lambda out: simulate_store(out, n_sales=4000, days=36, seed=3, fmt="jsonl"))
    check_featureset(fs, events, repeat_counters=["dq_duplicates"])
