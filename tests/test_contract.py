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


@pytest.mark.slow
def test_fraud_keeps_the_contract(tmp_path: Path) -> None:
    from features.fraud import FraudFeatureSet
    from features.fraud.lookups import load_merchants
    from training.simulators.fraud import simulate_fraud

    fs, events = sample(
        "fraud", tmp_path, lambda out: simulate_fraud(out, n_payments=2500, days=20, seed=3, fmt="jsonl")
    )
    merchants = load_merchants(tmp_path / "fraud" / "merchants.csv")

    def build_without(missing: frozenset[str]) -> FeatureSet:
        """The fraud FeatureSet without `missing`: a required field's group loses its reference."""
        reference = None if missing & FraudFeatureSet.required_fields() else merchants
        return FraudFeatureSet(reference, DEV_SECRET, fields=FraudFeatureSet.optional_fields() - missing)

    check_featureset(fs, events, build_without=build_without)


def test_loan_keeps_the_contract(tmp_path: Path) -> None:
    from training.simulators.loan import simulate_loan

    fs, events = sample(
        "loan", tmp_path, lambda out: simulate_loan(out, n_applications=400, days=40, seed=3, fmt="jsonl")
    )
    check_featureset(fs, events)


@pytest.mark.slow
def test_store_keeps_the_contract(tmp_path: Path) -> None:
    from training.simulators.store import simulate_store

    fs, events = sample("store", tmp_path, lambda out: simulate_store(out, n_sales=4000, days=36, seed=3, fmt="jsonl"))
    check_featureset(fs, events, repeat_counters=["dq_duplicates"])


def login_sample(tmp_path: Path, ties: bool = False) -> tuple[FeatureSet, list[Event]]:
    """The login use case's simulated history; with `ties`, times rounded down to the hour, so
    a user's logins (an intruder's burst of attempts) share a time."""
    from tests.usecase_login import simulate

    fs, events = sample("login", tmp_path, lambda out: simulate(out, users=20, days=12, seed=5))
    if ties:
        for _, payload in events:
            for field in ("ts", "known_at"):
                if field in payload:
                    payload[field] = payload[field][:13] + ":00:00+00:00"  # type: ignore[index]
    return fs, events


def test_login_keeps_the_contract_with_ties_in_time(tmp_path: Path) -> None:
    fs, events = login_sample(tmp_path, ties=True)
    times = [(p["user_id"], p["ts"]) for k, p in events if k == "login"]
    assert len(set(times)) < len(times) * 0.95, "the sample should hold ties in a user's logins"
    check_featureset(fs, events, seed=1)


def broken(**overrides: Any) -> type[FeatureSet]:
    """The login FeatureSet with some of its attributes replaced."""
    from tests.usecase_login import LoginFeatureSet

    return type("BrokenLogin", (LoginFeatureSet,), overrides)


def test_the_contract_names_each_broken_promise(tmp_path: Path) -> None:
    from features.featureset import Stage
    from tests.usecase_login import LoginFeatureSet

    fs, events = login_sample(tmp_path, ties=True)
    policies = dict(LoginFeatureSet.policies)
    del policies["device_id"]
    with pytest.raises(AssertionError, match=r"no policy for the schema fields \['device_id'\]"):
        check_policies(broken(policies=policies)(DEV_SECRET))
    with pytest.raises(AssertionError, match=r"names fields no schema has: \['email'\]"):
        check_policies(broken(policies={**LoginFeatureSet.policies, "email": "drop"})(DEV_SECRET))

    row = {c: 0 for c in fs.columns} | {"login_id": "L1", "user": "u", "extra": 1}
    with pytest.raises(AssertionError, match=r"row 'L1' has columns not declared \['extra'\]"):
        check_rows(fs, [row])
    with pytest.raises(AssertionError, match="column 'success' is declared int but row 'L1' holds bool True"):
        check_rows(fs, [{c: 0 for c in fs.columns} | {"login_id": "L1", "user": "u", "success": True}])

    def counts_ties(self: Any, r: dict[str, Any], state: Any) -> list[dict[str, Any]]:
        rows = LoginFeatureSet._user(self, r, state)
        recent = state.get("recent") or []
        return [row | {"logins_1h": sum(1 for e in recent if r["t"] - 3_600_000 <= e[0] <= r["t"])} for row in rows]

    with pytest.raises(AssertionError, match="when events of equal time and kind arrive in another order"):
        check_featureset(broken(_user=counts_ties)(DEV_SECRET), events, seed=1)

    no_ids = property(lambda self: (Stage("user", lambda r: r["user"], self._user),))
    with pytest.raises(
        AssertionError, match="when every event is delivered twice, the rows differ: 732 before, 1464 after"
    ):
        check_featureset(broken(stages=no_ids)(DEV_SECRET), events)


def test_optional_groups_are_checked_through_the_hook(tmp_path: Path) -> None:
    """A FeatureSet declaring optional groups needs a way to build it without their fields; the
    hook then runs the events without the group's fields through that FeatureSet (here one that
    still makes the group's features, so it says so)."""
    from types import SimpleNamespace

    fs, events = login_sample(tmp_path)
    group = SimpleNamespace(name="device", fields=("device_id",), features=("new_device",), columns=(), reference=None)
    with_groups = broken(groups=(group,))
    with pytest.raises(ValueError, match="declares optional feature groups: pass build_without"):
        check_featureset(with_groups(DEV_SECRET), events)
    with pytest.raises(AssertionError, match=r"without \['device_id'\] the group 'device' still declares"):
        check_featureset(with_groups(DEV_SECRET), events, build_without=lambda missing: with_groups(DEV_SECRET))
