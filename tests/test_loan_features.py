"""Loan features, master scale and pricing against values computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from math import log1p
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from features.featureset import LocalRunner
from features.fraud import FraudFeatureSet
from features.loan import (
    MODEL_INPUTS,
    LoanFeatureSet,
    MasterScale,
    PricingPolicy,
    RiskGrade,
    best_rate,
    choose_rates,
    quote_row,
)
from features.loan.lookups import load_master_scale
from features.loan.pricing import balance_years, expected_loss, expected_value, grid_inputs, margin
from tests.conftest import MERCHANTS

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SCALE = MasterScale(
    [RiskGrade("A", 700, 0.01), RiskGrade("B", 600, 0.03), RiskGrade("C", 300, 0.1), RiskGrade("U", None, 0.05)]
)
PERSONAL = {
    "customer_id": "C-LOAN-0042",
    "full_name": "Marit Oksanen-Lund",
    "date_of_birth": "1990-03-03",
    "national_id": "900303-4417",
    "email": "marit.lund@example.fi",
    "phone": "+358 40 123 4567",
    "address": "Mannerheimintie 12 B, 00100 Helsinki",
}


def at(days: float) -> str:
    return (T0 + timedelta(days=days)).isoformat()


def application(days: float = 0.0, **overrides: Any) -> dict[str, Any]:
    event = {
        "application_id": f"a{days}",
        "ts": at(days),
        **PERSONAL,
        "amount": 12_000.0,
        "term_months": 48,
        "purpose": "car",
        "annual_income": 60_000.0,
        "employment": "employed",
        "employment_years": 6.0,
        "channel": "web",
        "monthly_debt": 500.0,
    }
    return event | overrides


def score(days: float, value: int, **overrides: Any) -> dict[str, Any]:
    event = {
        "report_id": f"r{days}",
        "ts": at(days),
        "customer_id": PERSONAL["customer_id"],
        "bureau": "Experian",
        "score": value,
        "delinquencies_12m": 1,
        "open_credit_lines": 4,
    }
    return event | overrides


def engagement(days: float, action: str = "contact", **overrides: Any) -> dict[str, Any]:
    event = {
        "engagement_id": f"e{days}",
        "ts": at(days),
        "customer_id": PERSONAL["customer_id"],
        "action": action,
        "channel": "phone",
    }
    return event | overrides


def card_payment(days: float, amount: float, **overrides: Any) -> dict[str, Any]:
    event = {
        "payment_id": f"p{days}",
        "ts": at(days),
        "customer_id": PERSONAL["customer_id"],
        "card_number": "4539578763621486",
        "merchant_id": "M00001",
        "amount": amount,
        "currency": "EUR",
        "lat": 60.17,
        "lon": 24.94,
        "channel": "pos",
        "device_id": "M00001-T1",
        "ip": "81.2.69.160",
        "cardholder_name": PERSONAL["full_name"],
        "email": PERSONAL["email"],
    }
    return event | overrides


def outcome(application_id: str, known_days: float, accepted: bool, rate: float = 0.08) -> dict[str, Any]:
    return {
        "application_id": application_id,
        "customer_id": PERSONAL["customer_id"],
        "offered_rate": rate,
        "accepted": accepted,
        "known_at": at(known_days),
        "rate_propensity": 0.04,
    }


@pytest.fixture
def fs() -> LoanFeatureSet:
    return LoanFeatureSet(SCALE, secret="test-secret")


def run(fs: LoanFeatureSet, events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Events in the order given (the caller lists them in event-time order)."""
    runner = LocalRunner(fs)
    rows = []
    for kind, event in events:
        outcome = runner.process(kind, event)
        assert outcome.dead_letter is None, outcome.dead_letter
        rows.extend(outcome.rows)
    return rows


def test_first_application_has_no_history(fs) -> None:
    [row] = run(fs, [("application", application())])
    assert row["risk_grade"] == "U" and row["pd_annual"] == 0.05
    assert row["no_credit_score"] == 1.0 and row["credit_score"] == 0.0 and row["score_change_90d"] == 0.0
    assert row["log_amount"] == pytest.approx(log1p(12_000))
    assert row["term_years"] == 4.0
    assert row["log_income"] == pytest.approx(log1p(60_000))
    assert row["loan_to_income"] == pytest.approx(0.2)
    assert row["installment_to_income"] == pytest.approx(250 / 5000)
    assert row["debt_to_income"] == pytest.approx(500 / 5000)
    assert row["log_employment_years"] == pytest.approx(log1p(6))
    assert row["age_band"] == 30.0  # 35 years old: the birthday is the day after
    assert row["employment_employed"] == 1.0 and row["purpose_car"] == 1.0 and row["channel_web"] == 1.0
    assert row["purpose_travel"] == 0.0 and row["channel_broker"] == 0.0
    for name in ("contacts_30d", "prior_offers", "prior_loan_offers", "prior_applications_90d", "payments_90d"):
        assert row[name] == 0.0, name
    assert row["prior_offer_acceptance"] == row["prior_loan_acceptance"] == pytest.approx(0.3)
    for name in ("log_days_since_score", "log_days_since_contact", "log_days_since_offer", "log_days_since_payment"):
        assert row[name] == pytest.approx(log1p(365)), name


def test_credit_score_is_the_latest_known_at_application_time(fs) -> None:
    rows = run(
        fs,
        [
            ("credit_score", score(-120, 560, delinquencies_12m=3)),
            ("credit_score", score(-10, 720, delinquencies_12m=0, open_credit_lines=6)),
            ("application", application(0)),
            ("credit_score", score(1, 800)),
            ("application", application(2)),
        ],
    )
    first, second = rows
    assert (first["risk_grade"], first["pd_annual"]) == ("A", 0.01)
    assert first["credit_score"] == pytest.approx(0.7) and first["no_credit_score"] == 0.0
    assert first["score_change_90d"] == pytest.approx(1.6)  # 720 now against 560 known 90 days before
    assert first["log_days_since_score"] == pytest.approx(log1p(10))
    assert first["delinquencies_12m"] == 0.0 and first["log_open_credit_lines"] == pytest.approx(log1p(6))
    assert second["credit_score"] == pytest.approx(1.5) and second["log_days_since_score"] == pytest.approx(log1p(1))


def test_grade_bands_of_the_master_scale(fs) -> None:
    grades = [
        run(fs, [("credit_score", score(-1, s)), ("application", application())])[0] for s in (300, 599, 600, 850)
    ]
    assert [(r["risk_grade"], r["pd_annual"]) for r in grades] == [("C", 0.1), ("C", 0.1), ("B", 0.03), ("A", 0.01)]


def test_engagement_counts_acceptance_and_recency(fs) -> None:
    [row] = run(
        fs,
        [
            ("engagement", engagement(-200)),
            ("engagement", engagement(-100)),
            ("engagement", engagement(-50, "offer", product="credit_card", accepted=True)),
            ("engagement", engagement(-40, "offer", product="savings", accepted=False)),
            ("engagement", engagement(-20)),
            ("engagement", engagement(-5)),
            ("application", application()),
        ],
    )
    assert row["contacts_30d"] == 2.0 and row["contacts_180d"] == 3.0
    assert row["log_days_since_contact"] == pytest.approx(log1p(5))
    assert row["prior_offers"] == 2.0
    assert row["prior_offer_acceptance"] == pytest.approx((1 + 0.6) / (2 + 2))
    assert row["log_days_since_offer"] == pytest.approx(log1p(40))


def test_loan_outcomes_count_only_once_known(fs) -> None:
    runner = LocalRunner(fs)
    events = [
        ("application", application(-60)),
        ("outcome", outcome("a-60", -50, accepted=True, rate=0.071)),
        ("application", application(-30)),
        ("application", application(0)),
        ("outcome", outcome("a-30", 1, accepted=False)),
    ]
    outcomes = [runner.process(kind, event) for kind, event in events]
    row = outcomes[3].rows[0]
    assert row["prior_loan_offers"] == 1.0  # the second outcome is not known yet
    assert row["prior_loan_acceptance"] == pytest.approx((1 + 0.6) / (1 + 2))
    assert row["prior_applications_90d"] == 2.0
    assert outcomes[1].labels == [
        {
            "application_id": "a-60",
            "accepted": True,
            "offered_rate": 0.071,
            "rate_propensity": 0.04,
            "known_at": int((T0 - timedelta(days=50)).timestamp() * 1000),
        }
    ]
    assert outcomes[1].rows == [] and outcomes[0].labels == []


def test_payments_spend_and_cash_share(fs) -> None:
    [row] = run(
        fs,
        [
            ("payment", card_payment(-100, 500.0)),
            ("payment", card_payment(-60, 300.0, channel="atm")),
            ("payment", card_payment(-20, 100.0)),
            ("payment", card_payment(-1, 50.0, currency="SEK")),  # 4.35 EUR
            ("application", application()),
        ],
    )
    assert row["payments_30d"] == 2.0 and row["payments_90d"] == 3.0
    assert row["log_spend_30d"] == pytest.approx(log1p(104.35))
    assert row["log_spend_90d"] == pytest.approx(log1p(404.35))
    assert row["cash_share_90d"] == pytest.approx(300 / 404.35)
    assert row["spend_to_income"] == pytest.approx(404.35 * 365 / 90 / 60_000)
    assert row["log_days_since_payment"] == pytest.approx(log1p(1))


def test_ratios_are_capped_when_there_is_no_income(fs) -> None:
    [row] = run(fs, [("application", application(annual_income=0.0, employment="unemployed"))])
    assert row["loan_to_income"] == row["installment_to_income"] == row["debt_to_income"] == 10.0
    assert row["employment_unemployed"] == 1.0


def test_other_customers_history_does_not_leak(fs) -> None:
    other = "C-SOMEONE-ELSE"
    [row] = run(
        fs,
        [
            ("credit_score", score(-3, 800, customer_id=other)),
            ("payment", card_payment(-2, 80.0, customer_id=other)),
            ("engagement", engagement(-1, customer_id=other)),
            ("application", application()),
        ],
    )
    assert row["no_credit_score"] == 1.0 and row["payments_30d"] == 0.0 and row["contacts_30d"] == 0.0


def test_customer_pseudonym_joins_the_fraud_use_case(fs, payment) -> None:
    [loan_row] = run(fs, [("application", application(customer_id="C1001"))])
    [fraud_row] = LocalRunner(FraudFeatureSet(MERCHANTS, secret="test-secret")).process("payment", payment()).rows
    assert loan_row["customer_key"] == fraud_row["customer_key"] != "C1001"


def test_no_personal_value_reaches_a_row(fs) -> None:
    rows = run(fs, [("payment", card_payment(-1, 10.0)), ("application", application())])
    text = msgspec.json.encode(rows).decode()
    for value in (*PERSONAL.values(), "4539578763621486", "81.2.69.160"):
        assert value not in text


@pytest.mark.parametrize(
    ("kind", "event", "reason"),
    [
        ("application", application(annual_income=-1.0), "Expected `float` >= 0.0 - at `$.annual_income`"),
        ("application", application(amount="lots"), "Expected `float`, got `str` - at `$.amount`"),
        ("application", {k: v for k, v in application().items() if k != "ts"}, "missing required field `ts`"),
        ("application", application(date_of_birth="2012-01-01"), "applicant 14 years old"),
        ("application", application(purpose="yacht"), "at `$.purpose`"),
        ("credit_score", score(0, 900), "Expected `int` <= 850"),
        ("engagement", engagement(0, "offer", product="savings"), "needs `product` and `accepted`"),
        ("payment", card_payment(0, 10.0, currency="XYZ"), "currency 'XYZ' has no rate"),
        ("outcome", outcome("a1", 0, True, rate=1.5), "Expected `float` < 1.0 - at `$.offered_rate`"),
        ("refund", application(), "unknown event kind 'refund'"),
        (None, {"type": "refund", **application()}, "unknown event kind 'refund'"),
    ],
)
def test_faulty_events_become_dead_letters_without_personal_data(fs, kind, event, reason) -> None:
    outcome = LocalRunner(fs).process(kind, event, source="test", position="1")
    assert outcome.rows == [] and outcome.dead_letter is not None
    assert reason in outcome.dead_letter.reason
    for value in PERSONAL.values():
        assert value not in outcome.dead_letter.payload


def test_unknown_type_tag_on_a_shared_topic_is_a_dead_letter(fs) -> None:
    outcome = LocalRunner(fs).process(None, msgspec.json.encode({"type": "refund", **application()}))
    assert outcome.dead_letter is not None and "Invalid value 'refund' - at `$.type`" in outcome.dead_letter.reason
    assert PERSONAL["full_name"] not in outcome.dead_letter.payload


def test_json_bytes_with_type_tag_and_dicts_give_the_same_rows(fs) -> None:
    events = [("credit_score", score(-5, 650)), ("payment", card_payment(-1, 20.0)), ("application", application())]
    from_dicts = run(fs, events)
    runner = LocalRunner(fs)
    from_bytes = [
        row for kind, event in events for row in runner.process(None, msgspec.json.encode({"type": kind, **event})).rows
    ]
    assert from_dicts == from_bytes


def test_every_row_has_every_declared_column(fs) -> None:
    [row] = run(fs, [("application", application())])
    assert set(row) == set(fs.columns)
    assert all(isinstance(row[f], float) for f in fs.feature_names)


def test_version_is_stable_and_follows_the_master_scale(fs) -> None:
    assert LoanFeatureSet(SCALE, secret="other").version == fs.version
    other = MasterScale([RiskGrade("A", 700, 0.02), RiskGrade("U", None, 0.05)])
    assert LoanFeatureSet(other).version != fs.version


def test_master_scale_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "risk_grades.csv"
    path.write_text("grade,min_score,pd_annual\nA,700,0.01\nB,300,0.08\nU,,0.05\n")
    scale = load_master_scale(path)
    assert scale.grade(None).grade == "U" and scale.grade(699).grade == "B" and scale.grade(250).grade == "B"
    path.write_text("grade,min_score,pd_annual\nA,700,0.01\n")
    with pytest.raises(ValueError, match="exactly one grade without a min_score"):
        load_master_scale(path)
    path.write_text("grade,min_score,pd_annual\nA,700,1.5\nU,,0.05\n")
    with pytest.raises(ValueError, match="outside"):
        load_master_scale(path)


# ----------------------------------------------------------------------------- pricing

POLICY = PricingPolicy(floor=0.04, cap=0.12, step=0.01, funding_rate=0.025, lgd=0.6)


def test_margin_loss_and_value_by_hand() -> None:
    assert balance_years(12) == pytest.approx(13 / 24)
    assert margin(0.10, 10_000, 12, 0.025) == pytest.approx(10_000 * 0.075 * 13 / 24)  # 406.25
    assert expected_loss(0.02, 10_000, 12, 0.6) == pytest.approx(0.02 * 0.6 * 10_000 * 13 / 24)  # 65.0
    assert expected_value(0.5, 0.10, 10_000, 12, 0.02, POLICY) == pytest.approx(0.5 * (406.25 - 65.0))
    two_years = expected_loss(0.1, 1_000, 24, 1.0)
    assert two_years == pytest.approx((1 - 0.9**2) * 1_000 * 25 / 48)


def test_grid_runs_from_floor_to_cap() -> None:
    assert POLICY.grid().tolist() == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12])
    assert PricingPolicy().grid()[0] == 0.04 and PricingPolicy().grid()[-1] == 0.24
    odd = PricingPolicy(floor=0.0412345, cap=0.05, step=0.001)
    assert odd.grid().min() >= 0.0412345 and odd.grid()[-1] <= 0.05


def test_best_rate_is_the_highest_rate_still_accepted() -> None:
    quote = best_rate(
        lambda rates: (rates <= 0.0801).astype(float), amount=10_000, term_months=12, pd_annual=0.02, policy=POLICY
    )
    assert quote.rate == pytest.approx(0.08) and quote.p_accept == 1.0
    assert quote.margin == pytest.approx(10_000 * 0.055 * 13 / 24)
    assert quote.expected_value == pytest.approx(quote.margin - 65.0)


def test_never_below_the_floor_even_when_a_lower_rate_would_be_worth_more() -> None:
    """P(accept) = exp(-200 r): unconstrained, the best rate is 2.5 % + 0.5 %, below the 4 % floor."""
    quote = best_rate(lambda rates: np.exp(-200 * rates), amount=10_000, term_months=12, pd_annual=0.0, policy=POLICY)
    assert quote.rate == 0.04
    assert quote.expected_value == pytest.approx(np.exp(-8) * 10_000 * 0.015 * 13 / 24)


def test_ties_go_to_the_lower_rate() -> None:
    quote = best_rate(lambda rates: np.zeros_like(rates), amount=5_000, term_months=24, pd_annual=0.01, policy=POLICY)
    assert quote.rate == 0.04 and quote.expected_value == 0.0


@pytest.mark.parametrize("bad", [lambda r: np.full(len(r), np.nan), lambda r: np.ones(3), lambda r: r * 100])
def test_bad_probabilities_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="probabilit"):
        best_rate(bad, amount=1_000, term_months=12, pd_annual=0.01, policy=POLICY)


def test_vectorized_choice_equals_one_by_one() -> None:
    rng = np.random.default_rng(1)
    grid = POLICY.grid()
    a, b = rng.normal(3, 1, 20), rng.uniform(20, 80, 20)
    p = 1 / (1 + np.exp(-(a[:, None] - b[:, None] * grid[None, :])))
    amount, term, pd_ = rng.uniform(1e3, 3e4, 20), rng.choice([12, 36, 60], 20), rng.uniform(0.001, 0.1, 20)
    rates, values, index = choose_rates(p, amount, term, pd_, POLICY)
    for i in range(20):
        quote = best_rate(lambda _, i=i: p[i], amount=amount[i], term_months=term[i], pd_annual=pd_[i], policy=POLICY)
        assert (quote.rate, quote.expected_value) == pytest.approx((rates[i], values[i]))
        assert grid[index[i]] == rates[i] >= POLICY.floor


def test_grid_inputs_append_each_rate_to_each_row() -> None:
    x = grid_inputs([[1.0, 2.0], [3.0, 4.0]], [0.05, 0.06, 0.07])
    assert x.shape == (6, 3)
    assert x[:3].tolist() == [[1.0, 2.0, 0.05], [1.0, 2.0, 0.06], [1.0, 2.0, 0.07]]
    assert x[3].tolist() == [3.0, 4.0, 0.05]


def test_policy_validation_and_round_trip_through_params() -> None:
    with pytest.raises(ValueError, match="floor"):
        PricingPolicy(floor=0.1, cap=0.05)
    with pytest.raises(ValueError, match="step"):
        PricingPolicy(step=0.0)
    with pytest.raises(ValueError, match="lgd"):
        PricingPolicy(lgd=1.5)
    params = {k: str(v) for k, v in POLICY.as_params().items()}
    assert PricingPolicy.from_params(params) == POLICY
    assert PricingPolicy.from_params({}) == PricingPolicy()


def test_a_feature_row_is_quoted_with_the_model_inputs_in_order(fs) -> None:
    """The model sees the row's features in MODEL_INPUTS order with each candidate rate last."""
    [row] = run(fs, [("credit_score", score(-3, 720)), ("application", application(amount=10_000.0, term_months=12))])
    seen: list[np.ndarray] = []

    def predict(inputs: np.ndarray) -> np.ndarray:
        seen.append(inputs)
        return (inputs[:, -1] <= 0.0801).astype(float)

    quote = quote_row(row, predict, POLICY)
    [inputs] = seen
    assert inputs.shape == (len(POLICY.grid()), len(MODEL_INPUTS))
    assert inputs[0, :-1].tolist() == [row[name] for name in MODEL_INPUTS[:-1]]
    assert inputs[:, -1].tolist() == POLICY.grid().tolist()
    assert quote.rate == pytest.approx(0.08) and quote.expected_loss == pytest.approx(0.01 * 0.6 * 10_000 * 13 / 24)
    with pytest.raises(KeyError):
        quote_row({k: v for k, v in row.items() if k != "credit_score"}, predict, POLICY)
