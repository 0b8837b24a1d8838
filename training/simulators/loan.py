"""Seeded simulator for the loan use case, with a known ground truth of who accepts which rate.

`simulate_loan` writes into a folder:

* ``applications.<ext>``: `LoanApplication` events (without the ``type`` tag), sorted by ``ts``;
* ``credit_scores.<ext>``: `CreditScoreUpdate` bureau reports, about monthly per customer;
* ``engagements.<ext>``: contacts and earlier offers of other products (taken or not);
* ``payments.<ext>``: card payments in the fraud use case's `Payment` schema;
* ``outcomes.<ext>``: one `LoanOutcome` per application, sorted by ``known_at``;
* ``risk_grades.csv``: the master scale (score bands and their annual probability of default);
* ``ground_truth.parquet``: per application, the true annual PD, the true acceptance curve
  ``logit P(accept | r) = accept_logit_intercept + accept_logit_rate * r`` and whether the
  loan, if taken, defaulted. Not an event file: it lets evaluations score any pricing policy.

The world: customers with a latent creditworthiness (it drifts, and for some it drops sharply at
a credit event), a latent loyalty to the bank (it shows in earlier offers taken) and a latent
financial stress (it shows in card spending against income). The bureau reports a noisy score
of the creditworthiness. Applications are priced by a randomized historical policy: a rate by
risk grade plus a uniform random offset of up to 3 points, and for a fifth of the applications
any rate of the grid at random, so the effect of the rate on acceptance is learnable everywhere
and every rate has a known, logged probability for offline evaluation. Whether an offer is
taken follows `TRUTH`: need (purpose, stress), loyalty, a recent contact, the broker channel and
the rate against what competitors would charge this customer, with a rate sensitivity that
grows with creditworthiness. Acceptances are known within days; declines when the customer says
so or when the offer expires after 30 days.

The same seed and arguments give byte-identical files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.fraud.lookups import EUR_PER_UNIT
from features.loan.featureset import PURPOSES
from features.loan.pricing import PricingPolicy
from training.simulators.fraud import (
    CITIES,
    _card_numbers,
    _email_for,
    _Fakers,
    _hex_ids,
    _ipv4,
    _Progress,
)

__all__ = ["TRUTH", "AcceptanceTruth", "LoanSimulation", "simulate_loan"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
OFFER_VALID_DAYS = 30
MIN_APPLICATIONS = 200
MIN_DAYS = 30
SCORE_SCALE = 85.0
"""Bureau points per standard deviation of creditworthiness, around 650."""
SHOCK = 1.2
SHOCK_STRESS = 1.0
"""A credit event lowers creditworthiness by `SHOCK` and raises stress by `SHOCK_STRESS`."""
THIN_FILE_SHIFT = -0.3
"""Customers the bureau never scores are a little less creditworthy on average."""


@dataclass(frozen=True)
class AcceptanceTruth:
    """The ground-truth acceptance behaviour; rates are fractions (0.08 = 8 %).

    ``logit P(accept | r) = intercept + purpose[p] + loyalty * L + recent_contact * C
    + stress * S + broker * B + loan_to_income * min(LTI, 3) + u
    - sensitivity_i * 100 * (r - market_i)``, where L and S are the customer's latent loyalty and
    stress (standard normal), C says the bank contacted them in the 30 days before, B that they
    came through a broker, u is the customer's unobserved taste (sd `customer_sd`),
    ``sensitivity_i = max(0.2, sensitivity + sensitivity_credit * z + sensitivity_broker * B)``
    per percentage point (z: creditworthiness), and ``market_i = market_base + market_pd *
    PD_i`` is what competitors charge for this customer's true annual PD.
    """

    intercept: float = 0.1
    purpose: Mapping[str, float] = field(
        default_factory=lambda: {
            "car": 0.2,
            "home_improvement": 0.0,
            "debt_consolidation": 0.5,
            "education": 0.1,
            "medical": 0.6,
            "travel": -0.4,
            "other": -0.1,
        }
    )
    loyalty: float = 0.5
    recent_contact: float = 0.4
    stress: float = 0.45
    broker: float = -0.3
    loan_to_income: float = -0.4
    customer_sd: float = 0.5
    sensitivity: float = 0.7
    sensitivity_credit: float = 0.2
    sensitivity_broker: float = 0.4
    market_base: float = 0.045
    market_pd: float = 1.3
    pd_intercept: float = -3.6
    pd_credit: float = -1.1
    """True annual PD = sigmoid(pd_intercept + pd_credit * z)."""


TRUTH = AcceptanceTruth()
HISTORICAL_BASE = 0.05
HISTORICAL_PD = 1.5
HISTORICAL_OFFSETS = np.round(np.arange(-12, 13) * 0.0025, 6)
"""The historical policy offered base(grade) plus one of these, uniformly at random ..."""
EXPLORATION_SHARE = 0.2
"""... or, for this share of applications, any rate of the grid, uniformly at random."""
PRICING = PricingPolicy()

GRADES = (("A", 780), ("B", 740), ("C", 700), ("D", 660), ("E", 620), ("F", 580), ("G", 300))
EMPLOYMENTS = ("employed", "self_employed", "retired", "student", "unemployed")
EMPLOYMENT_P = np.array([0.66, 0.12, 0.11, 0.06, 0.05])
INCOME_FACTOR = np.array([1.0, 1.1, 0.7, 0.3, 0.35])
APP_CHANNELS = ("web", "app", "branch", "broker")
APP_CHANNEL_P = np.array([0.4, 0.3, 0.15, 0.15])
CONTACT_CHANNELS = ("email", "phone", "branch", "app", "letter")
CONTACT_CHANNEL_P = np.array([0.35, 0.25, 0.1, 0.2, 0.1])
PRODUCTS = ("credit_card", "savings", "mortgage", "insurance", "personal_loan", "overdraft")
PRODUCT_P = np.array([0.3, 0.25, 0.08, 0.17, 0.1, 0.1])
PURPOSE_P = np.array([0.22, 0.18, 0.22, 0.08, 0.07, 0.1, 0.13])
PURPOSE_MEDIAN_EUR = np.array([15_000, 12_000, 11_000, 8_000, 4_000, 3_000, 5_000])
TERMS = np.array([12, 24, 36, 48, 60, 72, 84])
PAY_CHANNELS = ("pos", "contactless", "online", "atm")
FOREIGN = ("GBP", "USD", "SEK", "CHF")
HOME_CITIES = CITIES[:12]
BUREAUS = ("Creditsafe", "Experian", "Schufa")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def true_pd(z: np.ndarray) -> np.ndarray:
    return _sigmoid(TRUTH.pd_intercept + TRUTH.pd_credit * z)


@dataclass(frozen=True)
class LoanSimulation:
    """Where a simulation was written, and what it holds."""

    folder: Path
    files: dict[str, Path]
    """Event kind -> event file."""
    risk_grades: Path
    ground_truth: Path
    n_applications: int
    n_accepted: int
    n_events: int


@dataclass
class _Customers:
    n: int
    ids: list[str]
    z0: np.ndarray
    drift: np.ndarray
    shock_at: np.ndarray
    """Time of a credit event (creditworthiness drops by `SHOCK`); beyond the end for most."""
    loyalty: np.ndarray
    stress: np.ndarray
    taste: np.ndarray
    employment: np.ndarray
    income: np.ndarray
    employment_years: np.ndarray
    birth: np.ndarray
    """Dates of birth, datetime64[D]."""
    channel: np.ndarray
    thin_file: np.ndarray
    city: np.ndarray
    monthly_spend: np.ndarray
    pay_rate: np.ndarray
    """Payments per day."""
    cash_share: np.ndarray
    names: list[str]
    emails: list[str]
    phones: list[str]
    addresses: list[str]
    national_ids: list[str]
    cards: list[str]
    devices: list[str]
    ips: list[str]


def _creditworthiness(c: _Customers, cust: np.ndarray, t: np.ndarray, start_ms: int, span_ms: int) -> np.ndarray:
    return c.z0[cust] + c.drift[cust] * (t - start_ms) / span_ms - SHOCK * (t >= c.shock_at[cust])


def _stress(c: _Customers, cust: np.ndarray, t: np.ndarray) -> np.ndarray:
    return c.stress[cust] + SHOCK_STRESS * (t >= c.shock_at[cust])


def _customers(
    rng: np.random.Generator, fakers: _Fakers, n: int, start_ms: int, span_ms: int, start: datetime
) -> _Customers:
    z0 = rng.normal(0.0, 1.0, n)
    thin_file = rng.random(n) < 0.04
    z0[thin_file] += THIN_FILE_SHIFT
    shocked = rng.random(n) < 0.08
    shock_at = np.where(shocked, start_ms + rng.integers(0, span_ms, n), np.iinfo(np.int64).max)
    stress = rng.normal(0.0, 1.0, n)
    employment = rng.choice(len(EMPLOYMENTS), n, p=EMPLOYMENT_P)
    income = np.round(np.exp(rng.normal(math.log(40_000), 0.45, n) + 0.2 * z0) * INCOME_FACTOR[employment], -2)
    age = np.select(
        [employment == 2, employment == 3],
        [rng.integers(63, 86, n), rng.integers(18, 28, n)],
        rng.integers(22, 65, n),
    )
    age = np.where(employment == 4, rng.integers(18, 64, n), age)
    years = np.minimum(rng.gamma(2.0, 3.5, n), np.maximum(age - 18, 0))
    years = np.round(np.where(np.isin(employment, [3, 4]), np.minimum(years, 1.0) * (employment == 3), years), 1)
    day0 = np.datetime64(start.date(), "D")
    birth = day0 - (age * 365.25).astype(np.int64) - rng.integers(0, 365, n)
    channel = rng.choice(len(APP_CHANNELS), n, p=APP_CHANNEL_P)
    city = rng.choice(len(HOME_CITIES), n, p=_weights([c.weight for c in HOME_CITIES]))
    monthly_spend = income / 12.0 * 0.3 * np.exp(0.3 * stress + rng.normal(0.0, 0.2, n))
    pay_rate = rng.lognormal(math.log(0.07), 0.5, n)
    cash_share = np.clip(0.04 + 0.08 * _sigmoid(-z0) + rng.normal(0.0, 0.02, n), 0.0, 0.5)

    width = max(6, len(str(n)))
    names, emails, phones, addresses, seen = [], [], [], [], set()
    for i in range(n):
        home = HOME_CITIES[int(city[i])]
        fake = fakers[home.locale]
        first, last = fake.first_name(), fake.last_name()
        email = _email_for(fake, rng, first, last)
        while email in seen:
            local, domain = email.split("@")
            email = f"{local}{int(rng.integers(1, 100))}@{domain}"
        seen.add(email)
        names.append(f"{first} {last}")
        emails.append(email)
        phones.append(fake.phone_number())
        addresses.append(f"{fake.street_address()}, {fake.postcode()} {home.name}")
    serial = rng.integers(0, 10_000, n)
    national_ids = [
        f"{str(b)[2:4]}{str(b)[5:7]}{str(b)[8:10]}-{s:04d}"
        for b, s in zip(birth.tolist(), serial.tolist(), strict=True)
    ]
    bins = 400000 + rng.integers(0, 100000, 12)
    return _Customers(
        n=n,
        ids=[f"C{i:0{width}d}" for i in range(1, n + 1)],
        z0=z0,
        drift=rng.normal(0.0, 0.3, n),
        shock_at=shock_at,
        loyalty=rng.normal(0.0, 1.0, n),
        stress=stress,
        taste=rng.normal(0.0, TRUTH.customer_sd, n),
        employment=employment,
        income=income,
        employment_years=years,
        birth=birth,
        channel=channel,
        thin_file=thin_file,
        city=city,
        monthly_spend=monthly_spend,
        pay_rate=pay_rate,
        cash_share=cash_share,
        names=names,
        emails=emails,
        phones=phones,
        addresses=addresses,
        national_ids=national_ids,
        cards=_card_numbers(rng, n, bins),
        devices=_hex_ids(rng, n, "d"),
        ips=_ipv4(rng, n),
    )


def _weights(values: list[float] | np.ndarray) -> np.ndarray:
    w = np.asarray(values, dtype=np.float64)
    return w / w.sum()


def _daytime(rng: np.random.Generator, n: int, start_ms: int, days: int) -> np.ndarray:
    """Times over the window, during waking hours (07:00-22:00 UTC, most around midday)."""
    day = rng.integers(0, days, n)
    hour = np.clip(rng.normal(13.5, 3.5, n), 7.0, 22.0)
    return start_ms + day * DAY_MS + (hour * HOUR_MS).astype(np.int64)


def _as_of(keys: np.ndarray, cust: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of each (customer, time)'s latest event at or before it in events sorted by key; -1 if none.

    `keys` are the events' ``customer * 2**42 + time``, sorted.
    """
    if len(keys) == 0:
        return np.full(len(cust), -1)
    query = cust.astype(np.int64) * (1 << 42) + t
    i = np.searchsorted(keys, query, side="right") - 1
    found = (i >= 0) & (keys[np.maximum(i, 0)] >> 42 == cust)
    return np.where(found, i, -1)


def _score_reports(rng: np.random.Generator, c: _Customers, start_ms: int, days: int) -> dict[str, np.ndarray]:
    span = days * DAY_MS
    first = start_ms + rng.integers(0, 30 * DAY_MS, c.n)
    per = np.where(c.thin_file, 0, days // 30 + 1)
    cust = np.repeat(np.arange(c.n), per)
    k = np.arange(len(cust)) - np.repeat(np.cumsum(per) - per, per)
    t = first[cust] + k * 30 * DAY_MS + rng.integers(-3 * DAY_MS, 3 * DAY_MS, len(cust))
    keep = (t >= start_ms) & (t < start_ms + span)
    cust, t = cust[keep], t[keep]
    z = _creditworthiness(c, cust, t, start_ms, span)
    score = np.clip(np.round(650 + SCORE_SCALE * z + rng.normal(0.0, 15.0, len(t))), 300, 850).astype(np.int64)
    delinquencies = rng.poisson(0.25 * np.exp(-0.9 * z))
    lines = rng.poisson(2.0 + 1.5 * _sigmoid(z) + 1.0 * _sigmoid(c.stress[cust]))
    order = np.lexsort((t, cust))
    return {
        "cust": cust[order],
        "t": t[order],
        "score": score[order],
        "delinquencies": np.minimum(delinquencies[order], 100),
        "lines": np.minimum(lines[order], 200),
        "bureau": rng.integers(0, len(BUREAUS), len(t))[order],
    }


def _engagements(rng: np.random.Generator, c: _Customers, start_ms: int, days: int) -> dict[str, np.ndarray]:
    per = rng.poisson(2.5 * days / 180 * np.exp(0.3 * c.loyalty))
    cust = np.repeat(np.arange(c.n), per)
    n = len(cust)
    t = _daytime(rng, n, start_ms, days)
    offer = rng.random(n) < 0.4
    accepted = rng.random(n) < _sigmoid(-0.9 + 0.9 * c.loyalty[cust])
    order = np.lexsort((t, cust))
    return {
        "cust": cust[order],
        "t": t[order],
        "offer": offer[order],
        "accepted": accepted[order],
        "channel": rng.choice(len(CONTACT_CHANNELS), n, p=CONTACT_CHANNEL_P)[order],
        "product": rng.choice(len(PRODUCTS), n, p=PRODUCT_P)[order],
    }


def _payments(rng: np.random.Generator, c: _Customers, start_ms: int, days: int) -> dict[str, np.ndarray]:
    per = rng.poisson(c.pay_rate * days)
    cust = np.repeat(np.arange(c.n), per)
    n = len(cust)
    t = start_ms + rng.integers(0, days * DAY_MS, n)
    mean_eur = c.monthly_spend[cust] / (c.pay_rate[cust] * 30.0)
    eur = np.clip(mean_eur * rng.lognormal(-0.32, 0.8, n), 0.5, 20_000.0)
    cash = rng.random(n) < c.cash_share[cust]
    channel = np.where(cash, 3, rng.choice(3, n, p=[0.35, 0.4, 0.25]))
    eur[cash] = np.maximum(20.0, np.round(eur[cash] / 20.0) * 20.0)
    foreign = (rng.random(n) < 0.06) & ~cash
    currency = np.where(foreign, rng.integers(1, len(FOREIGN) + 1, n), 0)
    home_lat = np.array([city.lat for city in HOME_CITIES])[c.city[cust]]
    home_lon = np.array([city.lon for city in HOME_CITIES])[c.city[cust]]
    return {
        "cust": cust,
        "t": t,
        "eur": eur,
        "channel": channel,
        "currency": currency,
        "merchant": rng.integers(1, 501, n),
        "lat": np.round(home_lat + rng.normal(0.0, 0.03, n), 5),
        "lon": np.round(home_lon + rng.normal(0.0, 0.045, n), 5),
    }


@dataclass
class _Applications:
    cust: np.ndarray
    t: np.ndarray
    purpose: np.ndarray
    amount: np.ndarray
    term: np.ndarray
    channel: np.ndarray
    income: np.ndarray
    monthly_debt: np.ndarray
    rate: np.ndarray
    propensity: np.ndarray
    pd: np.ndarray
    intercept: np.ndarray
    slope: np.ndarray
    accepted: np.ndarray
    known_at: np.ndarray
    defaulted: np.ndarray


def master_scale_pd() -> list[tuple[str, int | None, float]]:
    """The master scale the simulated bank uses: each band's PD at its middle score.

    The lowest band is open below, so it takes the PD of its typical score (540) rather than of
    its middle; the unscored grade takes the mean PD of thin-file customers.
    """
    grades: list[tuple[str, int | None, float]] = []
    upper = 851
    for grade, low in GRADES:
        typical = (low + upper - 1) / 2 if grade != GRADES[-1][0] else 540.0
        grades.append((grade, low, round(float(true_pd(np.array((typical - 650) / SCORE_SCALE))), 5)))
        upper = low
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)
    thin_file_pd = float((weights * true_pd(THIN_FILE_SHIFT + nodes)).sum() / weights.sum())
    grades.append(("U", None, round(thin_file_pd, 5)))
    return grades


def _grade_pd(scores: np.ndarray) -> np.ndarray:
    """Master-scale PD of bureau scores (-1: no score)."""
    scale = master_scale_pd()
    bounds = np.array([low for _, low, _ in scale[-2::-1]])
    pds = np.array([pd for _, _, pd in scale[-2::-1]])
    band = np.clip(np.searchsorted(bounds, scores, side="right") - 1, 0, len(bounds) - 1)
    return np.where(scores < 0, scale[-1][2], pds[band])


def _applications(
    rng: np.random.Generator,
    c: _Customers,
    n: int,
    start_ms: int,
    days: int,
    scores: dict[str, np.ndarray],
    engagements: dict[str, np.ndarray],
) -> _Applications:
    span = days * DAY_MS
    weight = rng.gamma(0.8, 1.0, c.n) * np.exp(0.3 * c.stress)
    cust = rng.choice(c.n, n, p=weight / weight.sum())
    t = _daytime(rng, n, start_ms, days)
    order = np.argsort(t, kind="stable")
    cust, t = cust[order], t[order]

    purpose = rng.choice(len(PURPOSES), n, p=PURPOSE_P)
    amount = np.clip(np.round(PURPOSE_MEDIAN_EUR[purpose] * rng.lognormal(0.0, 0.55, n), -2), 500.0, 100_000.0)
    term_index = np.clip(
        np.searchsorted([3_000, 6_000, 10_000, 16_000, 25_000, 40_000], amount) + rng.integers(-1, 2, n),
        0,
        len(TERMS) - 1,
    )
    term = TERMS[term_index]
    own = rng.random(n) < 0.8
    channel = np.where(own, c.channel[cust], rng.choice(len(APP_CHANNELS), n, p=APP_CHANNEL_P))
    income = np.round(c.income[cust] * rng.lognormal(0.0, 0.05, n), -2)
    debt = np.where(
        rng.random(n) < 0.35, 0.0, np.round(rng.lognormal(math.log(250.0), 0.6, n) * np.exp(0.3 * c.stress[cust]))
    )

    z = _creditworthiness(c, cust, t, start_ms, span)
    pd = true_pd(z)
    score_at = _as_of(scores["cust"] * (1 << 42) + scores["t"], cust, t)
    bureau = np.where(score_at >= 0, scores["score"][np.maximum(score_at, 0)], -1)
    base = HISTORICAL_BASE + HISTORICAL_PD * _grade_pd(bureau)
    grid = PRICING.grid()
    explore = rng.random(n) < EXPLORATION_SHARE
    anywhere = grid[rng.integers(0, len(grid), n)]
    offset = rng.integers(0, len(HISTORICAL_OFFSETS), n)
    candidates = np.clip(
        np.round((base[:, None] + HISTORICAL_OFFSETS[None, :]) / PRICING.step) * PRICING.step,
        PRICING.floor,
        PRICING.cap,
    )
    candidates = np.round(candidates, 6)
    rate = np.where(explore, anywhere, candidates[np.arange(n), offset])
    propensity = EXPLORATION_SHARE / len(grid) + (1 - EXPLORATION_SHARE) * (candidates == rate[:, None]).mean(axis=1)

    contact_at = np.flatnonzero(~engagements["offer"])
    contact_keys = engagements["cust"][contact_at] * (1 << 42) + engagements["t"][contact_at]
    last = _as_of(contact_keys, cust, t)
    recent = (last >= 0) & (t - engagements["t"][contact_at][np.maximum(last, 0)] <= 30 * DAY_MS)
    broker = channel == APP_CHANNELS.index("broker")
    need = np.array([TRUTH.purpose[p] for p in PURPOSES])[purpose]
    a = (
        TRUTH.intercept
        + need
        + TRUTH.loyalty * c.loyalty[cust]
        + TRUTH.recent_contact * recent
        + TRUTH.stress * _stress(c, cust, t)
        + TRUTH.broker * broker
        + TRUTH.loan_to_income * np.minimum(amount / np.maximum(income, 1.0), 3.0)
        + c.taste[cust]
    )
    sensitivity = np.maximum(0.2, TRUTH.sensitivity + TRUTH.sensitivity_credit * z + TRUTH.sensitivity_broker * broker)
    market = TRUTH.market_base + TRUTH.market_pd * pd
    intercept = a + 100.0 * sensitivity * market
    slope = -100.0 * sensitivity
    accepted = rng.random(n) < _sigmoid(intercept + slope * rate)

    answered = rng.random(n) < 0.5
    delay = np.where(
        accepted,
        np.minimum(rng.exponential(3.0, n) + 1.0 / 24, OFFER_VALID_DAYS - 1),
        np.where(answered, np.minimum(rng.exponential(6.0, n) + 1.0 / 24, OFFER_VALID_DAYS - 1), OFFER_VALID_DAYS),
    )
    known_at = t + np.round(delay * DAY_MS).astype(np.int64)
    pd_term = 1.0 - (1.0 - pd) ** (term / 12.0)
    defaulted = accepted & (rng.random(n) < pd_term)
    return _Applications(
        cust,
        t,
        purpose,
        amount,
        term,
        channel,
        income,
        debt,
        rate,
        propensity,
        pd,
        intercept,
        slope,
        accepted,
        known_at,
        defaulted,
    )


TS = pa.timestamp("ms", tz="UTC")


def _strings(values: list[str], index: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(index))


def _ids(prefix: str, n: int) -> pa.Array:
    width = max(7, len(str(n)))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], type=pa.string())


def _tables(
    c: _Customers,
    apps: _Applications,
    scores: dict[str, np.ndarray],
    engagements: dict[str, np.ndarray],
    payments: dict[str, np.ndarray],
) -> dict[str, pa.Table]:
    n = len(apps.t)
    app_ids = _ids("A", n)
    customer = pa.array(c.ids, type=pa.string())
    applications = pa.table(
        {
            "application_id": app_ids,
            "ts": pa.array(apps.t, type=TS),
            "customer_id": customer.take(pa.array(apps.cust)),
            "full_name": _strings(c.names, apps.cust),
            "date_of_birth": pa.array(c.birth[apps.cust], type=pa.date32()),
            "national_id": _strings(c.national_ids, apps.cust),
            "email": _strings(c.emails, apps.cust),
            "phone": _strings(c.phones, apps.cust),
            "address": _strings(c.addresses, apps.cust),
            "amount": pa.array(apps.amount, type=pa.float64()),
            "term_months": pa.array(apps.term, type=pa.int64()),
            "purpose": _strings(list(PURPOSES), apps.purpose),
            "annual_income": pa.array(apps.income, type=pa.float64()),
            "employment": _strings(list(EMPLOYMENTS), c.employment[apps.cust]),
            "employment_years": pa.array(c.employment_years[apps.cust], type=pa.float64()),
            "channel": _strings(list(APP_CHANNELS), apps.channel),
            "monthly_debt": pa.array(apps.monthly_debt, type=pa.float64()),
        }
    )
    by_known = np.argsort(apps.known_at, kind="stable")
    outcomes = pa.table(
        {
            "application_id": app_ids.take(pa.array(by_known)),
            "customer_id": customer.take(pa.array(apps.cust[by_known])),
            "offered_rate": pa.array(apps.rate[by_known], type=pa.float64()),
            "accepted": pa.array(apps.accepted[by_known], type=pa.bool_()),
            "known_at": pa.array(apps.known_at[by_known], type=TS),
            "rate_propensity": pa.array(np.round(apps.propensity[by_known], 6), type=pa.float64()),
        }
    )
    by_time = np.argsort(scores["t"], kind="stable")
    credit_scores = pa.table(
        {
            "report_id": _ids("R", len(by_time)),
            "ts": pa.array(scores["t"][by_time], type=TS),
            "customer_id": customer.take(pa.array(scores["cust"][by_time])),
            "bureau": _strings(list(BUREAUS), scores["bureau"][by_time]),
            "score": pa.array(scores["score"][by_time], type=pa.int64()),
            "delinquencies_12m": pa.array(scores["delinquencies"][by_time], type=pa.int64()),
            "open_credit_lines": pa.array(scores["lines"][by_time], type=pa.int64()),
        }
    )
    by_time = np.argsort(engagements["t"], kind="stable")
    offer = engagements["offer"][by_time]
    engagement_table = pa.table(
        {
            "engagement_id": _ids("E", len(by_time)),
            "ts": pa.array(engagements["t"][by_time], type=TS),
            "customer_id": customer.take(pa.array(engagements["cust"][by_time])),
            "action": pa.array(np.where(offer, "offer", "contact"), type=pa.string()),
            "channel": _strings(list(CONTACT_CHANNELS), engagements["channel"][by_time]),
            "product": pa.array(
                [
                    PRODUCTS[p] if o else None
                    for p, o in zip(engagements["product"][by_time].tolist(), offer.tolist(), strict=True)
                ],
                type=pa.string(),
            ),
            "accepted": pa.array(
                [
                    bool(a) if o else None
                    for a, o in zip(engagements["accepted"][by_time].tolist(), offer.tolist(), strict=True)
                ],
                type=pa.bool_(),
            ),
        }
    )
    by_time = np.argsort(payments["t"], kind="stable")
    pay_cust = payments["cust"][by_time]
    currency = payments["currency"][by_time]
    codes = ("EUR", *FOREIGN)
    per_eur = np.array([1.0 / EUR_PER_UNIT[code] for code in codes])
    amount = np.maximum(0.01, np.round(payments["eur"][by_time] * per_eur[currency], 2))
    channel = payments["channel"][by_time]
    merchant = payments["merchant"][by_time]
    online = channel == 2
    merchant_ids = [f"M{m:05d}" for m in merchant.tolist()]
    payment_table = pa.table(
        {
            "payment_id": _ids("LP", len(by_time)),
            "ts": pa.array(payments["t"][by_time], type=TS),
            "customer_id": customer.take(pa.array(pay_cust)),
            "card_number": _strings(c.cards, pay_cust),
            "merchant_id": pa.array(merchant_ids, type=pa.string()),
            "amount": pa.array(amount, type=pa.float64()),
            "currency": _strings(list(codes), currency),
            "lat": pa.array(payments["lat"][by_time], type=pa.float64()),
            "lon": pa.array(payments["lon"][by_time], type=pa.float64()),
            "channel": _strings(list(PAY_CHANNELS), channel),
            "device_id": pa.array(
                [
                    c.devices[k] if o else f"{m}-T1"
                    for k, o, m in zip(pay_cust.tolist(), online.tolist(), merchant_ids, strict=True)
                ],
                type=pa.string(),
            ),
            "ip": _strings(c.ips, pay_cust),
            "cardholder_name": _strings(c.names, pay_cust),
            "email": _strings(c.emails, pay_cust),
            "reference": pa.array([""] * len(by_time), type=pa.string()),
        }
    )
    return {
        "application": applications,
        "credit_score": credit_scores,
        "engagement": engagement_table,
        "payment": payment_table,
        "outcome": outcomes,
    }


STEMS = {
    "application": "applications",
    "credit_score": "credit_scores",
    "engagement": "engagements",
    "payment": "payments",
    "outcome": "outcomes",
}


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd", row_group_size=100_000)
        return
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            ms = column.cast(pa.int64()).to_numpy()
            columns[name] = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist()
        elif pa.types.is_date(column.type):
            columns[name] = [d.isoformat() for d in column.to_pylist()]
        else:
            columns[name] = column.to_pylist()
    names = list(columns)
    rows = [
        {k: v for k, v in zip(names, values, strict=True) if v is not None}
        for values in zip(*columns.values(), strict=True)
    ]
    path.write_bytes(msgspec.json.Encoder().encode_lines(rows))


def _write_grades(path: Path) -> None:
    lines = ["grade,min_score,pd_annual"]
    lines += [f"{grade},{'' if low is None else low},{pd}" for grade, low, pd in master_scale_pd()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def simulate_loan(
    out_dir: Path,
    *,
    n_applications: int = 50_000,
    days: int = 180,
    seed: int = 7,
    fmt: Literal["parquet", "jsonl"] = "parquet",
    start: datetime = datetime(2025, 7, 1, tzinfo=UTC),
    progress: Callable[[int], None] | None = None,
) -> LoanSimulation:
    """Simulate `n_applications` loan applications over `days` days from `start`, and their world.

    Writes the event files, ``risk_grades.csv`` and ``ground_truth.parquet`` into `out_dir`
    (created if needed). `progress` receives increments adding up to `n_applications`. A naive
    `start` is taken as UTC.
    """
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt must be 'parquet' or 'jsonl', not {fmt!r}")
    if n_applications < MIN_APPLICATIONS:
        raise ValueError(f"n_applications must be at least {MIN_APPLICATIONS}, not {n_applications}")
    if days < MIN_DAYS:
        raise ValueError(f"days must be at least {MIN_DAYS}, not {days}")
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start_ms = round(start.timestamp() * 1000)
    tracker = _Progress(n_applications, progress)
    rng_people, rng_scores, rng_engage, rng_pay, rng_apps = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )

    customers = _customers(
        rng_people, _Fakers(seed), max(100, round(n_applications * 0.6)), start_ms, days * DAY_MS, start
    )
    tracker.to(0.25)
    scores = _score_reports(rng_scores, customers, start_ms, days)
    engagements = _engagements(rng_engage, customers, start_ms, days)
    payments = _payments(rng_pay, customers, start_ms, days)
    apps = _applications(rng_apps, customers, n_applications, start_ms, days, scores, engagements)
    tracker.to(0.4)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = _tables(customers, apps, scores, engagements, payments)
    files = {kind: out_dir / f"{STEMS[kind]}.{fmt}" for kind in tables}
    for i, (kind, table) in enumerate(tables.items(), start=1):
        _write(table, files[kind], fmt)
        tracker.to(0.4 + 0.55 * i / len(tables))
    grades = out_dir / "risk_grades.csv"
    _write_grades(grades)
    truth = out_dir / "ground_truth.parquet"
    pq.write_table(
        pa.table(
            {
                "application_id": tables["application"].column("application_id"),
                "true_pd_annual": pa.array(apps.pd, type=pa.float64()),
                "accept_logit_intercept": pa.array(apps.intercept, type=pa.float64()),
                "accept_logit_rate": pa.array(apps.slope, type=pa.float64()),
                "offered_rate": pa.array(apps.rate, type=pa.float64()),
                "accepted": pa.array(apps.accepted, type=pa.bool_()),
                "defaulted": pa.array(apps.defaulted, type=pa.bool_()),
            }
        ),
        truth,
    )
    tracker.to(1.0)
    return LoanSimulation(
        folder=out_dir,
        files=files,
        risk_grades=grades,
        ground_truth=truth,
        n_applications=n_applications,
        n_accepted=int(apps.accepted.sum()),
        n_events=sum(t.num_rows for t in tables.values()),
    )
