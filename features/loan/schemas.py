"""Event schemas of the loan use case: what each source puts on the wire.

Five kinds share the `loan-events` topic, told apart by their `type` tag: the application form,
credit-score updates from a bureau, engagements (contacts and earlier offers of any product),
card payments (the fraud use case's `Payment`, reused as the customer's transaction history)
and loan outcomes (was the offered rate taken), which are the labels.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec

from features.fraud.schemas import Id, Payment, Timestamp

Purpose = Literal["car", "home_improvement", "debt_consolidation", "education", "medical", "travel", "other"]
Employment = Literal["employed", "self_employed", "retired", "student", "unemployed"]
ApplicationChannel = Literal["web", "app", "branch", "broker"]
EngagementAction = Literal["contact", "offer"]
EngagementChannel = Literal["email", "phone", "branch", "app", "letter"]
Product = Literal["credit_card", "savings", "mortgage", "insurance", "personal_loan", "overdraft"]
Rate = Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)]
Text = Annotated[str, msgspec.Meta(max_length=512)]


class LoanApplication(msgspec.Struct, tag="application", tag_field="type", forbid_unknown_fields=False):
    """The application form as submitted, personal and contact data included; amounts in EUR."""

    application_id: Id
    ts: Timestamp
    customer_id: Id
    full_name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    date_of_birth: date
    national_id: Annotated[str, msgspec.Meta(min_length=4, max_length=32)]
    email: Text
    phone: Annotated[str, msgspec.Meta(max_length=64)]
    address: Text
    amount: Annotated[float, msgspec.Meta(ge=500.0, le=100_000.0)]
    term_months: Annotated[int, msgspec.Meta(ge=6, le=120)]
    purpose: Purpose
    annual_income: Annotated[float, msgspec.Meta(ge=0.0, le=10_000_000.0)]
    employment: Employment
    employment_years: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)]
    channel: ApplicationChannel
    monthly_debt: Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)] = 0.0


class CreditScoreUpdate(msgspec.Struct, tag="credit_score", tag_field="type", forbid_unknown_fields=False):
    """A bureau report on a customer; `ts` is when the bureau reported it."""

    report_id: Id
    ts: Timestamp
    customer_id: Id
    bureau: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    score: Annotated[int, msgspec.Meta(ge=300, le=850)]
    delinquencies_12m: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    open_credit_lines: Annotated[int, msgspec.Meta(ge=0, le=200)] = 0


class Engagement(msgspec.Struct, tag="engagement", tag_field="type", forbid_unknown_fields=False):
    """A contact with the customer, or an earlier offer of any product and whether it was taken.

    `ts` is when the engagement ended: for an offer, when its answer was known.
    """

    engagement_id: Id
    ts: Timestamp
    customer_id: Id
    action: EngagementAction
    channel: EngagementChannel
    product: Product | None = None
    accepted: bool | None = None


class LoanOutcome(msgspec.Struct, tag="outcome", tag_field="type", forbid_unknown_fields=False):
    """Whether the rate offered on an application was taken, known only at `known_at`.

    `rate_propensity` is the probability the pricing policy in force gave to `offered_rate`
    (randomized pricing logs it), which lets other policies be evaluated offline.
    """

    application_id: Id
    customer_id: Id
    offered_rate: Rate
    accepted: bool
    known_at: Timestamp
    rate_propensity: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] | None = None


LoanEvent = LoanApplication | CreditScoreUpdate | Engagement | Payment | LoanOutcome
