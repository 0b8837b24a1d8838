"""Loan features: every source joined as of the application's time, in one keyed stage.

All five kinds of event name the customer, so one stage keyed by the customer's pseudonym
holds the as-of join in its state: credit-score updates, engagements, payments and loan
outcomes only update that state; an application reads it as it stands at the application's
time and emits one row. Replayed in event-time order (batch) or read from one partition of
`loan-events` (stream), each customer's state sees the same events in the same order, so both
drivers emit the same rows. Outcomes count only from the moment they are known: a customer's
earlier loan offers enter the features with their real feedback delay.

The offered rate is not in the row: it is decided after the features, by the pricing policy.
The model takes it as one more input (`MODEL_INPUTS`); in training it comes from the outcome.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping
from datetime import date, datetime
from math import log1p
from typing import Any, ClassVar

import msgspec

from features.depersonalize import DEV_SECRET, Policy, Pseudonymizer
from features.featureset import FeatureSet, InvalidEvent, Record, Stage, to_ms
from features.fraud import lookups as fraud_lookups_module
from features.fraud import schemas as fraud_schemas_module
from features.fraud.lookups import EUR_PER_UNIT
from features.fraud.schemas import Payment
from features.loan import lookups as lookups_module
from features.loan import schemas as schemas_module
from features.loan.lookups import MasterScale
from features.loan.schemas import CreditScoreUpdate, Engagement, LoanApplication, LoanOutcome
from features.state import State
from features.windows import DAY_MS, Windows

PURPOSES: tuple[str, ...] = (
    "car",
    "home_improvement",
    "debt_consolidation",
    "education",
    "medical",
    "travel",
    "other",
)
EMPLOYMENTS: tuple[str, ...] = ("employed", "self_employed", "retired", "student", "unemployed")
CHANNELS: tuple[str, ...] = ("web", "app", "branch", "broker")
CONTACT_WINDOWS = {"30d": 30 * DAY_MS, "180d": 180 * DAY_MS}
SPEND_WINDOWS = {"30d": 30 * DAY_MS, "90d": 90 * DAY_MS}
LONG_WINDOW_MS = 90 * DAY_MS
"""Window of cash share and earlier applications, and how far back the score change looks."""
SCORE_HISTORY = 12
RECENCY_CAP_DAYS = 365.0
ACCEPT_PRIOR = 0.3
PRIOR_WEIGHT = 2.0
RATIO_CAP = 10.0
ADULT_AGE = 18
RATE_FEATURE = "offered_rate"

FEATURES: tuple[str, ...] = (
    "log_amount",
    "term_years",
    "log_income",
    "loan_to_income",
    "installment_to_income",
    "debt_to_income",
    "log_employment_years",
    "age_band",
    *(f"employment_{e}" for e in EMPLOYMENTS),
    *(f"purpose_{p}" for p in PURPOSES),
    *(f"channel_{c}" for c in CHANNELS),
    "credit_score",
    "no_credit_score",
    "score_change_90d",
    "log_days_since_score",
    "delinquencies_12m",
    "log_open_credit_lines",
    *(f"contacts_{w}" for w in CONTACT_WINDOWS),
    "log_days_since_contact",
    "prior_offers",
    "prior_offer_acceptance",
    "log_days_since_offer",
    "prior_loan_offers",
    "prior_loan_acceptance",
    "prior_applications_90d",
    *(f"payments_{w}" for w in SPEND_WINDOWS),
    *(f"log_spend_{w}" for w in SPEND_WINDOWS),
    "spend_to_income",
    "cash_share_90d",
    "log_days_since_payment",
)
MODEL_INPUTS: tuple[str, ...] = (*FEATURES, RATE_FEATURE)
"""What the acceptance model takes: the row's features and the rate offered."""


class LoanFeatureSet(FeatureSet):
    """Features for pricing a loan application at the moment it is submitted.

    Parameters
    ----------
    master_scale:
        Score bands and their annual probability of default; the row carries the grade and
        PD of the score known at application time, which prices the expected credit loss.
    secret:
        Key of the HMAC pseudonyms. Customers are pseudonymized in the `customer` domain, as
        in the fraud use case, so the same customer joins across both.
    """

    name: ClassVar[str] = "loan"
    schemas: ClassVar[Mapping[str, type[msgspec.Struct]]] = {
        "application": LoanApplication,
        "credit_score": CreditScoreUpdate,
        "engagement": Engagement,
        "payment": Payment,
        "outcome": LoanOutcome,
    }
    kind_order: ClassVar[Mapping[str, int]] = {
        "credit_score": 0,
        "engagement": 1,
        "payment": 2,
        "outcome": 3,
        "application": 4,
    }
    policies: ClassVar[Mapping[str, Policy]] = {
        **dict.fromkeys(
            (
                "application_id",
                "report_id",
                "engagement_id",
                "payment_id",
                "ts",
                "known_at",
                "amount",
                "term_months",
                "purpose",
                "annual_income",
                "employment",
                "employment_years",
                "channel",
                "monthly_debt",
                "score",
                "delinquencies_12m",
                "open_credit_lines",
                "action",
                "accepted",
                "currency",
                "offered_rate",
                "rate_propensity",
            ),
            Policy.KEEP,
        ),
        "customer_id": Policy.PSEUDONYMIZE,
        "date_of_birth": Policy.GENERALIZE,
        # personal, or not a feature of a loan (who was paid, where, on what), so never kept
        **dict.fromkeys(
            (
                "full_name",
                "national_id",
                "email",
                "phone",
                "address",
                "card_number",
                "device_id",
                "ip",
                "cardholder_name",
                "reference",
                "merchant_id",
                "lat",
                "lon",
                "bureau",
                "product",
            ),
            Policy.DROP,
        ),
    }
    feature_names: ClassVar[tuple[str, ...]] = FEATURES
    columns: ClassVar[Mapping[str, str]] = {
        "application_id": "str",
        "event_time": "ts_ms",
        "customer_key": "str",
        "amount_eur": "float",
        "term_months": "int",
        "purpose": "str",
        "employment": "str",
        "channel": "str",
        "risk_grade": "str",
        "pd_annual": "float",
        **{name: "float" for name in FEATURES},
    }
    label_columns: ClassVar[Mapping[str, str]] = {
        "application_id": "str",
        "accepted": "bool",
        "offered_rate": "float",
        "rate_propensity": "float",
        "known_at": "ts_ms",
    }
    entity_column: ClassVar[str] = "customer_key"
    row_id: ClassVar[str] = "application_id"
    partition_key: ClassVar[str | None] = "customer_id"
    modules = (schemas_module, lookups_module, fraud_schemas_module, fraud_lookups_module)

    def __init__(self, master_scale: MasterScale, secret: str = DEV_SECRET) -> None:
        super().__init__()
        self.master_scale = master_scale
        self.pseudonym = Pseudonymizer(secret)
        self._contacts = Windows(tuple(CONTACT_WINDOWS.values()))
        self._spend = Windows(tuple(SPEND_WINDOWS.values()))
        self._long = Windows((LONG_WINDOW_MS,))
        self._stages = (Stage("customer", _customer_key, self._customer_stage, event_id=_event_id),)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    def params(self) -> dict[str, Any]:
        scale = self.master_scale
        return {"master_scale": [(g.grade, g.min_score, g.pd_annual) for g in (*scale.grades, scale.unscored)]}

    def check(self, event: msgspec.Struct) -> None:
        if isinstance(event, LoanApplication):
            age = _age(event.date_of_birth, event.ts)
            if not ADULT_AGE <= age <= 120:
                raise InvalidEvent(
                    f"impossible value: date_of_birth makes the applicant {age} years old at application; "
                    f"expected {ADULT_AGE} to 120"
                )
        elif isinstance(event, Engagement):
            if event.action == "offer" and (event.accepted is None or event.product is None):
                raise InvalidEvent("schema violation: an offer engagement needs `product` and `accepted` (true/false)")
        elif isinstance(event, Payment) and event.currency not in EUR_PER_UNIT:
            raise InvalidEvent(
                f"unknown reference: currency {event.currency!r} has no rate; known: {sorted(EUR_PER_UNIT)}"
            )

    def event_time_ms(self, event: msgspec.Struct) -> int:
        return to_ms(event.known_at if isinstance(event, LoanOutcome) else event.ts)  # type: ignore[attr-defined]

    def depersonalize(self, event: msgspec.Struct) -> Record:
        customer = self.pseudonym("customer", event.customer_id)  # type: ignore[attr-defined]
        if isinstance(event, Payment):
            return {
                "kind": "payment",
                "t": to_ms(event.ts),
                "id": event.payment_id,
                "customer": customer,
                "amount_eur": round(event.amount * EUR_PER_UNIT[event.currency or "EUR"], 2),
                "cash": event.channel == "atm",
            }
        if isinstance(event, LoanApplication):
            return {
                "kind": "application",
                "t": to_ms(event.ts),
                "id": event.application_id,
                "customer": customer,
                "application_id": event.application_id,
                "age_band": _age_band(_age(event.date_of_birth, event.ts)),
                "amount_eur": event.amount,
                "term_months": event.term_months,
                "purpose": event.purpose,
                "income": event.annual_income,
                "monthly_debt": event.monthly_debt,
                "employment": event.employment,
                "employment_years": event.employment_years,
                "channel": event.channel,
            }
        if isinstance(event, CreditScoreUpdate):
            return {
                "kind": "credit_score",
                "t": to_ms(event.ts),
                "id": event.report_id,
                "customer": customer,
                "score": event.score,
                "delinquencies": event.delinquencies_12m,
                "open_lines": event.open_credit_lines,
            }
        if isinstance(event, Engagement):
            return {
                "kind": "engagement",
                "t": to_ms(event.ts),
                "id": event.engagement_id,
                "customer": customer,
                "action": event.action,
                "accepted": bool(event.accepted),
            }
        assert isinstance(event, LoanOutcome)
        return {
            "kind": "outcome",
            "t": to_ms(event.known_at),
            "id": event.application_id,
            "customer": customer,
            "application_id": event.application_id,
            "accepted": event.accepted,
            "offered_rate": event.offered_rate,
            "rate_propensity": event.rate_propensity,
        }

    def label_rows(self, record: Record) -> list[Record]:
        if record["kind"] != "outcome":
            return []
        return [
            {
                "application_id": record["application_id"],
                "accepted": record["accepted"],
                "offered_rate": record["offered_rate"],
                "rate_propensity": record["rate_propensity"],
                "known_at": record["t"],
            }
        ]

    def _customer_stage(self, record: Record, state: State) -> list[Record]:
        """Sources update the customer's history; an application reads it as of its time."""
        history = state.get("history") or self._empty()
        kind, t = record["kind"], record["t"]
        out: list[Record] = []
        if kind == "payment":
            self._spend.add(history["spend"], t, record["amount_eur"])
            if record["cash"]:
                self._long.add(history["cash"], t, record["amount_eur"])
            history["last_payment"] = _latest(history["last_payment"], t)
        elif kind == "application":
            out.append(self._row(record, history))
            self._long.add(history["applications"], t, 1.0)
        elif kind == "credit_score":
            scores = history["scores"]
            insort(scores, [t, record["score"], record["delinquencies"], record["open_lines"]], key=_first)
            del scores[:-SCORE_HISTORY]
        elif kind == "engagement" and record["action"] == "contact":
            self._contacts.add(history["contacts"], t, 1.0)
            history["last_contact"] = _latest(history["last_contact"], t)
        elif kind == "engagement":
            history["offers"] = [history["offers"][0] + 1, history["offers"][1] + int(record["accepted"])]
            history["last_offer"] = _latest(history["last_offer"], t)
        else:
            history["loans"] = [history["loans"][0] + 1, history["loans"][1] + int(record["accepted"])]
        state.set("history", history)
        return out

    def _empty(self) -> dict[str, Any]:
        return {
            "scores": [],
            "contacts": self._contacts.empty(),
            "last_contact": None,
            "offers": [0, 0],
            "last_offer": None,
            "loans": [0, 0],
            "applications": self._long.empty(),
            "spend": self._spend.empty(),
            "cash": self._long.empty(),
            "last_payment": None,
        }

    def _row(self, record: Record, history: dict[str, Any]) -> Record:
        t: int = record["t"]
        amount: float = record["amount_eur"]
        term: int = record["term_months"]
        income: float = record["income"]
        score = _as_of(history["scores"], t)
        earlier = _as_of(history["scores"], t - LONG_WINDOW_MS)
        grade = self.master_scale.grade(score[1] if score else None)
        contacts = self._contacts.query(history["contacts"], t)
        spend = self._spend.query(history["spend"], t)
        [(_, cash_90d)] = self._long.query(history["cash"], t)
        [(applications_90d, _)] = self._long.query(history["applications"], t)
        spend_90d = spend[-1][1]
        offers, offers_taken = history["offers"]
        loans, loans_taken = history["loans"]
        return {
            "application_id": record["application_id"],
            "event_time": t,
            "customer_key": record["customer"],
            "amount_eur": amount,
            "term_months": term,
            "purpose": record["purpose"],
            "employment": record["employment"],
            "channel": record["channel"],
            "risk_grade": grade.grade,
            "pd_annual": grade.pd_annual,
            "log_amount": log1p(amount),
            "term_years": term / 12.0,
            "log_income": log1p(income),
            "loan_to_income": _ratio(amount, income),
            "installment_to_income": _ratio(amount / term, income / 12.0),
            "debt_to_income": _ratio(record["monthly_debt"], income / 12.0),
            "log_employment_years": log1p(record["employment_years"]),
            "age_band": float(record["age_band"]),
            **_EMPLOYMENT_ONE_HOT[record["employment"]],
            **_PURPOSE_ONE_HOT[record["purpose"]],
            **_CHANNEL_ONE_HOT[record["channel"]],
            "credit_score": (score[1] - 650) / 100.0 if score else 0.0,
            "no_credit_score": float(score is None),
            "score_change_90d": (score[1] - earlier[1]) / 100.0 if score and earlier else 0.0,
            "log_days_since_score": _log_days(t, score[0] if score else None),
            "delinquencies_12m": float(score[2]) if score else 0.0,
            "log_open_credit_lines": log1p(score[3]) if score else 0.0,
            **{f"contacts_{w}": float(n) for w, (n, _) in zip(CONTACT_WINDOWS, contacts, strict=True)},
            "log_days_since_contact": _log_days(t, history["last_contact"]),
            "prior_offers": float(offers),
            "prior_offer_acceptance": _smoothed(offers_taken, offers),
            "log_days_since_offer": _log_days(t, history["last_offer"]),
            "prior_loan_offers": float(loans),
            "prior_loan_acceptance": _smoothed(loans_taken, loans),
            "prior_applications_90d": float(applications_90d),
            **{f"payments_{w}": float(n) for w, (n, _) in zip(SPEND_WINDOWS, spend, strict=True)},
            **{f"log_spend_{w}": log1p(max(0.0, s)) for w, (_, s) in zip(SPEND_WINDOWS, spend, strict=True)},
            "spend_to_income": _ratio(max(0.0, spend_90d) * 365.0 / 90.0, income),
            "cash_share_90d": min(1.0, max(0.0, cash_90d) / spend_90d) if spend_90d > 0 else 0.0,
            "log_days_since_payment": _log_days(t, history["last_payment"]),
        }


def _one_hot(prefix: str, values: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return {v: {f"{prefix}_{other}": float(v == other) for other in values} for v in values}


_EMPLOYMENT_ONE_HOT = _one_hot("employment", EMPLOYMENTS)
_PURPOSE_ONE_HOT = _one_hot("purpose", PURPOSES)
_CHANNEL_ONE_HOT = _one_hot("channel", CHANNELS)


def _customer_key(record: Record) -> str:
    return str(record["customer"])


def _event_id(record: Record) -> str:
    """An event's id within its kind (an outcome shares its application's id)."""
    return f"{record['kind']}:{record['id']}"


def _first(entry: list[Any]) -> Any:
    return entry[0]


def _as_of(entries: list[list[Any]], at_ms: int) -> list[Any] | None:
    """The latest entry (time-sorted, time first) at or before `at_ms`."""
    i = bisect_right(entries, at_ms, key=_first)
    return entries[i - 1] if i else None


def _latest(current: int | None, t: int) -> int:
    return t if current is None or t > current else current


def _log_days(t: int, last: int | None) -> float:
    """log(1 + days since `last`), capped; never seen counts as the cap."""
    if last is None:
        return log1p(RECENCY_CAP_DAYS)
    return log1p(min(RECENCY_CAP_DAYS, max(0, t - last) / DAY_MS))


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, capped; a positive amount over nothing is the cap."""
    if denominator <= 0:
        return RATIO_CAP if numerator > 0 else 0.0
    return min(RATIO_CAP, numerator / denominator)


def _smoothed(taken: int, offered: int) -> float:
    """Share of offers taken, pulled towards a prior when there were few."""
    return (taken + ACCEPT_PRIOR * PRIOR_WEIGHT) / (offered + PRIOR_WEIGHT)


def _age(born: date, at: datetime) -> int:
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


def _age_band(age: int) -> int:
    """Generalize an exact age to its band: 18 (18-29), 30, 40, 50, 60, 70 (70 and over)."""
    return ADULT_AGE if age < 30 else min(70, age // 10 * 10)
