"""Every fraud feature against values computed by hand."""

from __future__ import annotations

from math import isclose, log1p, sqrt

import msgspec
import pytest

from features.featureset import LocalRunner
from features.geo import haversine_km
from tests.conftest import label


def run(fs, events):
    runner = LocalRunner(fs)
    out = []
    for kind, event in events:
        outcome = runner.process(kind, event)
        assert outcome.dead_letter is None, outcome.dead_letter
        out.extend(outcome.rows)
    return out


def test_first_payment_has_no_history(fraud_fs, payment) -> None:
    [row] = run(fraud_fs, [("payment", payment())])
    assert row["first_payment"] == 1.0
    assert row["log_secs_since_last"] == 0.0
    assert row["log_km_from_last"] == 0.0
    assert row["count_30d"] == 0.0 and row["log_spend_30d"] == 0.0
    assert row["new_device"] == 0.0 and row["amount_z"] == 0.0
    assert row["merchant_fraud_rate_30d"] == pytest.approx(0.01)
    assert row["category_grocery"] == 1.0 and row["channel_pos"] == 1.0
    assert row["log_amount"] == pytest.approx(log1p(20.0))


def test_history_time_distance_speed_and_amount_statistics(fraud_fs, payment) -> None:
    rows = run(
        fraud_fs,
        [
            ("payment", payment(0, amount=10.0)),
            ("payment", payment(30, amount=30.0)),
            ("payment", payment(90, amount=150.0, lat=48.85, lon=2.35, merchant_id="M2")),
        ],
    )
    third = rows[2]
    assert third["log_secs_since_last"] == pytest.approx(log1p(3600.0))
    km = haversine_km(59.33, 18.06, 48.85, 2.35)
    assert 1500 < km < 1600
    assert third["log_km_from_last"] == pytest.approx(log1p(km))
    assert third["log_speed_kmh"] == pytest.approx(log1p(km / 1.0))  # one hour apart
    mean, std = 20.0, sqrt(((10 - 20) ** 2 + (30 - 20) ** 2) / 1)
    assert third["amount_z"] == pytest.approx((150.0 - mean) / std)
    assert third["log_amount_ratio"] == pytest.approx(log1p(150.0) - log1p(mean))
    assert third["count_1h"] == 0.0  # +30 min is exactly one hour back: windows are (t - 1h, t]
    assert third["count_1d"] == 2.0
    assert third["log_spend_1d"] == pytest.approx(log1p(40.0))
    assert third["category_electronics"] == 1.0


def test_speed_is_capped_for_simultaneous_payments_far_apart(fraud_fs, payment) -> None:
    rows = run(fraud_fs, [("payment", payment(0)), ("payment", payment(0, lat=40.42, lon=-3.70))])
    assert rows[1]["log_speed_kmh"] == pytest.approx(log1p(20_000.0))


def test_currency_is_converted_and_flagged(fraud_fs, payment) -> None:
    [row] = run(fraud_fs, [("payment", payment(amount=100.0, currency="SEK"))])
    assert row["amount_eur"] == pytest.approx(8.7)
    assert row["foreign_currency"] == 1.0


def test_new_device_and_ip_after_history(fraud_fs, payment) -> None:
    rows = run(
        fraud_fs,
        [
            ("payment", payment(0)),
            ("payment", payment(5)),
            ("payment", payment(10, device_id="dev-X", ip="203.0.113.9")),
        ],
    )
    assert [r["new_device"] for r in rows] == [0.0, 0.0, 1.0]
    assert [r["new_ip"] for r in rows] == [0.0, 0.0, 1.0]


def test_merchant_risk_reads_labels_known_before_the_day_of_the_payment_minus_an_hour(fraud_fs, payment) -> None:
    p1 = payment(0)  # Monday 2026-03-02 12:00 UTC
    events = [  # in event-time order, as both drivers deliver them
        ("payment", p1),
        ("label", label(p1["payment_id"], known_minutes=60 * 24, is_fraud=True)),  # known Tuesday 12:00
        ("payment", payment(60 * 24 + 1, customer_id="C2")),  # Tuesday: the label's day is still open
        ("payment", payment(60 * 36 + 30, customer_id="C3")),  # Wednesday 00:30: t - 1 h is still Tuesday
        ("payment", payment(60 * 37, customer_id="C4")),  # Wednesday 01:00: Tuesday is final
        ("payment", payment(60 * 61, customer_id="C5")),  # Thursday 01:00: out of the 1-day window
    ]
    rows = run(fraud_fs, events)
    prior = 0.01 * 20 / 20
    assert [r["merchant_fraud_rate_30d"] for r in rows[:3]] == pytest.approx([prior] * 3)
    assert rows[3]["merchant_fraud_rate_1d"] == pytest.approx((1 + 0.2) / (1 + 20))
    assert rows[3]["merchant_frauds_7d"] == 1.0 and rows[3]["merchant_frauds_30d"] == 1.0
    assert rows[3]["merchant_log_labels_30d"] == pytest.approx(log1p(1))
    assert rows[4]["merchant_frauds_1d"] == 0.0 and rows[4]["merchant_frauds_7d"] == 1.0


def test_a_repeated_payment_changes_nothing(fraud_fs, payment) -> None:
    first, second = payment(0), payment(10, amount=500.0)
    runner = LocalRunner(fraud_fs)
    once = [runner.process("payment", first), runner.process("payment", first), runner.process("payment", first)]
    after = runner.process("payment", second)
    assert [len(o.rows) for o in once] == [1, 0, 0] and [o.duplicate for o in once] == [False, True, True]

    single = LocalRunner(fraud_fs)
    single.process("payment", first)
    assert after.rows == single.process("payment", second).rows


def test_labels_of_other_merchants_do_not_count(fraud_fs, payment) -> None:
    rows = run(
        fraud_fs,
        [("label", label("px", known_minutes=-10, merchant_id="M2")), ("payment", payment(0))],
    )
    assert rows[0]["merchant_frauds_7d"] == 0.0


def test_customer_frauds_count_only_the_customers_own_known_frauds(fraud_fs, payment) -> None:
    p1, p2 = payment(0), payment(5, customer_id="C2")
    events = [
        ("payment", p1),
        ("payment", p2),
        ("label", label(p1["payment_id"], known_minutes=60 * 24, customer_id="C1001")),
        ("label", label(p2["payment_id"], known_minutes=60 * 24 + 1, customer_id="C2", is_fraud=False)),
        ("label", label("p-unnamed", known_minutes=60 * 24 + 2)),  # names no customer: merchant only
        ("payment", payment(60 * 24 + 30)),  # Tuesday: the label's day is still open
        ("payment", payment(60 * 37)),  # Wednesday 01:00: Tuesday is final
        ("payment", payment(60 * 37 + 1, customer_id="C2")),
        ("payment", payment(60 * 24 * 8 + 60 * 13)),  # 8 days on: out of the 7-day window
    ]
    rows = run(fraud_fs, events)
    assert [r["customer_frauds_7d"] for r in rows] == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert [r["customer_frauds_30d"] for r in rows] == [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert rows[4]["merchant_frauds_7d"] == 2.0


def test_amount_against_the_recent_median_and_largest(fraud_fs, payment) -> None:
    amounts = [10.0, 30.0, 20.0, 400.0, 25.0]
    rows = run(fraud_fs, [("payment", payment(i * 60, amount=a)) for i, a in enumerate(amounts)])
    assert rows[0]["log_amount_to_median"] == 0.0 and rows[0]["log_amount_to_max"] == 0.0
    assert rows[3]["log_amount_to_median"] == pytest.approx(log1p(400.0) - log1p(20.0))
    assert rows[3]["log_amount_to_max"] == pytest.approx(log1p(400.0) - log1p(30.0))
    assert rows[4]["log_amount_to_median"] == pytest.approx(log1p(25.0) - log1p(25.0))
    assert rows[4]["log_amount_to_max"] == pytest.approx(log1p(25.0) - log1p(400.0))


def test_category_outside_the_vocabulary_is_other(fraud_fs, payment) -> None:
    [row] = run(fraud_fs, [("payment", payment(merchant_id="M3"))])
    assert row["category_other"] == 1.0


def test_email_name_match(fraud_fs, payment) -> None:
    rows = run(fraud_fs, [("payment", payment()), ("payment", payment(1, email="xk92@mail.example"))])
    assert [r["email_matches_name"] for r in rows] == [1.0, 0.0]


def test_time_features(fraud_fs, payment) -> None:
    [row] = run(fraud_fs, [("payment", payment(minutes=-6 * 60, ts="2026-03-07T06:00:00+00:00"))])
    assert row["hour_sin"] == pytest.approx(1.0)  # 06:00 UTC
    assert isclose(row["hour_cos"], 0.0, abs_tol=1e-12)
    assert row["weekend"] == 1.0  # a Saturday


def test_every_row_has_every_declared_column(fraud_fs, payment) -> None:
    [row] = run(fraud_fs, [("payment", payment())])
    assert set(row) == set(fraud_fs.columns)
    assert all(isinstance(row[f], float) for f in fraud_fs.feature_names)


def test_json_bytes_with_type_tag_and_dicts_give_the_same_row(fraud_fs, payment) -> None:
    event = payment()
    from_dict = run(fraud_fs, [("payment", event)])
    from_bytes = run(fraud_fs, [(None, msgspec.json.encode({"type": "payment", **event}))])
    assert from_dict == from_bytes


def test_version_is_stable_and_changes_with_parameters(fraud_fs) -> None:
    from features.fraud import FraudFeatureSet
    from tests.conftest import MERCHANTS

    assert FraudFeatureSet(MERCHANTS, secret="other").version == fraud_fs.version
    assert len(fraud_fs.version) == 12


def test_every_model_feature_is_in_exactly_one_ablation_family(fraud_fs) -> None:
    members = [f for family in fraud_fs.families.values() for f in family]
    assert sorted(members) == sorted(type(fraud_fs).feature_names)
