"""Fraud features: the customer's payment history, then merchant risk from delayed labels.

Payments arrive keyed by the raw customer id, as payment systems key them; the first step
pseudonymizes it and re-keys 1:1 to the pseudonym, so one customer's payments reach the one
keyed stage from one partition, in order. The customer stage attaches the customer's history:
time since the last payment, distance and implied speed from it, the amount against the running
mean and deviation and against the median and largest of the latest 20 amounts, and counts and
spend over 1 h, 1 d, 7 d and 30 d; a repeated payment id is dropped before it touches that history.

Merchant risk is another entity's feature, so it comes from the `merchant-risk` table
(`features.tables`): labels and frauds per merchant and UTC day, built from the label feed (one
ordered log of the labels, in the order they became known). A payment at time t reads the days
before the day of t - 1 h: labels known before that day's start, over 1, 7 and 30 days. A day is
final once the feed has carried a label known an hour after its end; a label that arrives for a
day already final counts in the first open day. The `customer-frauds` table counts, the same
way, the frauds known on a customer's payments over 7 and 30 days, from the labels that name the
customer (a label without `customer_id` counts for its merchant only). A merchant's payment
counts would need every partition's payments in one order; its label counts stand in for them,
since every payment gets a label, a genuine one once its dispute window closes. Raw identifiers
never reach a stage or a table: state keys, changelogs and repartition topics hold pseudonyms only.

A minimal payment (id, time, customer, merchant or terminal, amount) gets the amount, time,
history and merchant-risk features; each optional field adds its feature group (`GROUPS`):
card, location, device, IP, identity, channel, currency, free-text reference, and the
merchant's category when the merchant reference is given. Built for fewer fields, the FeatureSet has fewer columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from math import cos, log1p, pi, sin, sqrt
from statistics import median
from typing import Any, ClassVar

import msgspec

from features.depersonalize import DEV_SECRET, Policy, Pseudonymizer, generalize_coordinate
from features.featureset import FeatureGroup, FeatureSet, InvalidEvent, Record, Stage, to_ms
from features.fraud import lookups as lookups_module
from features.fraud import schemas as schemas_module
from features.fraud.lookups import CATEGORIES, EUR_PER_UNIT, Merchant
from features.fraud.schemas import FraudLabel, Payment
from features.geo import haversine_km
from features.state import State
from features.tables import DailyTable, TableView, Watermark
from features.windows import DAY_MS, HOUR_MS, Windows

CHANNELS: tuple[str, ...] = ("pos", "contactless", "online", "atm")
SPEND_WINDOWS = {"1h": HOUR_MS, "1d": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS}
RISK_WINDOWS_DAYS = {"1d": 1, "7d": 7, "30d": 30}
LABEL_GRACE_MS = HOUR_MS
"""How late a label may arrive for its day, and how far behind a payment the days it reads end."""
RECENT_DEVICES = 8
MAX_SPEED_KMH = 20_000.0
CUSTOMER_FRAUD_WINDOWS_DAYS = {"7d": 7, "30d": 30}
RECENT_AMOUNTS = 20
"""How many of the customer's latest amounts the median and largest recent amount are taken over."""
RISK_PRIOR = 0.01
RISK_PRIOR_WEIGHT = 20.0

MERCHANT_RISK = DailyTable(
    name="merchant-risk",
    kinds=("label",),
    columns=("labels", "frauds"),
    entity=lambda label: str(label["merchant_id"]),
    values=lambda label: (1.0, 1.0 if label["is_fraud"] else 0.0),
    event_id=lambda label: str(label["payment_id"]),
    grace_ms=LABEL_GRACE_MS,
)
"""Labels and frauds per merchant and day, from the label feed."""

CUSTOMER_FRAUDS = DailyTable(
    name="customer-frauds",
    kinds=("label",),
    columns=("frauds",),
    entity=lambda label: str(label["customer"]),
    values=lambda label: (1.0,),
    event_id=lambda label: str(label["payment_id"]),
    grace_ms=LABEL_GRACE_MS,
    where=lambda label: bool(label["is_fraud"]) and label.get("customer") is not None,
)
"""Frauds known per customer (pseudonym) and day, from the labels that name the customer."""

FEATURES: tuple[str, ...] = (
    "log_amount",
    "foreign_currency",
    "hour_sin",
    "hour_cos",
    "weekend",
    *(f"channel_{c}" for c in CHANNELS),
    *(f"category_{c}" for c in (*CATEGORIES, "other")),
    "first_payment",
    "log_secs_since_last",
    "log_km_from_last",
    "log_speed_kmh",
    "log_km_from_usual",
    "amount_z",
    "log_amount_ratio",
    "log_amount_to_median",
    "log_amount_to_max",
    *(f"count_{w}" for w in SPEND_WINDOWS),
    *(f"log_spend_{w}" for w in SPEND_WINDOWS),
    "new_device",
    "new_ip",
    *(f"merchant_fraud_rate_{w}" for w in RISK_WINDOWS_DAYS),
    *(f"merchant_frauds_{w}" for w in RISK_WINDOWS_DAYS),
    *(f"merchant_log_labels_{w}" for w in RISK_WINDOWS_DAYS),
    *(f"customer_frauds_{w}" for w in CUSTOMER_FRAUD_WINDOWS_DAYS),
    "email_matches_name",
    "reference_has_pii",
)


FAMILIES: dict[str, tuple[str, ...]] = {
    "amount": ("log_amount", "foreign_currency"),
    "time of day and week": ("hour_sin", "hour_cos", "weekend"),
    "channel and category": (*(f"channel_{c}" for c in CHANNELS), *(f"category_{c}" for c in (*CATEGORIES, "other"))),
    "payment counts and spend": (
        "first_payment",
        "log_secs_since_last",
        *(f"count_{w}" for w in SPEND_WINDOWS),
        *(f"log_spend_{w}" for w in SPEND_WINDOWS),
    ),
    "amount against the customer's history": (
        "amount_z",
        "log_amount_ratio",
        "log_amount_to_median",
        "log_amount_to_max",
    ),
    "location": ("log_km_from_last", "log_speed_kmh", "log_km_from_usual"),
    "device and IP": ("new_device", "new_ip"),
    "merchant risk (delayed labels)": (
        *(f"merchant_fraud_rate_{w}" for w in RISK_WINDOWS_DAYS),
        *(f"merchant_frauds_{w}" for w in RISK_WINDOWS_DAYS),
        *(f"merchant_log_labels_{w}" for w in RISK_WINDOWS_DAYS),
    ),
    "customer's known frauds (delayed labels)": tuple(f"customer_frauds_{w}" for w in CUSTOMER_FRAUD_WINDOWS_DAYS),
    "identity and reference": ("email_matches_name", "reference_has_pii"),
}
"""Every feature in one family: what the ablation takes away one at a time."""

GROUPS: tuple[FeatureGroup, ...] = (
    FeatureGroup("card", ("card_number",), ()),
    FeatureGroup("currency", ("currency",), ("foreign_currency",)),
    FeatureGroup("channel", ("channel",), tuple(f"channel_{c}" for c in CHANNELS), columns=("channel",)),
    FeatureGroup(
        "category",
        ("merchant_id",),
        tuple(f"category_{c}" for c in (*CATEGORIES, "other")),
        columns=("category",),
        reference="merchants",
    ),
    FeatureGroup("location", ("lat", "lon"), ("log_km_from_last", "log_speed_kmh", "log_km_from_usual")),
    FeatureGroup("device", ("device_id",), ("new_device",)),
    FeatureGroup("ip", ("ip",), ("new_ip",)),
    FeatureGroup("identity", ("cardholder_name", "email"), ("email_matches_name",)),
    FeatureGroup("reference", ("reference",), ("reference_has_pii",), columns=("reference_redacted",)),
)
"""Optional fields and the features they switch on. Without `card_number` the customer is its
own card (`card_key`); without `currency` every amount is taken as euros."""


class FraudFeatureSet(FeatureSet):
    """Features for scoring a card payment at the moment it is made.

    Parameters
    ----------
    merchants:
        The merchant reference (id -> category and location), or None: no category features.
        Given, a payment or label naming a merchant missing from it is rejected as a dead letter.
    secret:
        Key of the HMAC pseudonyms; the same secret in batch and stream gives the same keys.
    fields:
        The optional fields the payments carry (None: all); see `GROUPS`.
    """

    name: ClassVar[str] = "fraud"
    schemas: ClassVar[Mapping[str, type[msgspec.Struct]]] = {
        "payment": Payment,
        "label": FraudLabel,
        "watermark": Watermark,
    }
    kind_order: ClassVar[Mapping[str, int]] = {"label": 0, "watermark": 0, "payment": 1}
    partition_key: ClassVar[str | None] = "customer_id"
    tables: ClassVar[tuple[DailyTable, ...]] = (MERCHANT_RISK, CUSTOMER_FRAUDS)
    feed: ClassVar[str] = "label-events"
    groups: ClassVar[tuple[FeatureGroup, ...]] = GROUPS
    families: ClassVar[Mapping[str, tuple[str, ...]]] = FAMILIES
    policies: ClassVar[Mapping[str, Policy]] = {
        "payment_id": Policy.KEEP,
        "ts": Policy.KEEP,
        "customer_id": Policy.PSEUDONYMIZE,
        "card_number": Policy.PSEUDONYMIZE,
        "merchant_id": Policy.KEEP,
        "amount": Policy.KEEP,
        "currency": Policy.KEEP,
        "lat": Policy.GENERALIZE,
        "lon": Policy.GENERALIZE,
        "channel": Policy.KEEP,
        "device_id": Policy.PSEUDONYMIZE,
        "ip": Policy.PSEUDONYMIZE,
        "cardholder_name": Policy.DROP,
        "email": Policy.DROP,
        "reference": Policy.REDACT,
        "is_fraud": Policy.KEEP,
        "known_at": Policy.KEEP,
    }
    feature_names: ClassVar[tuple[str, ...]] = FEATURES
    columns: ClassVar[Mapping[str, str]] = {
        "payment_id": "str",
        "event_time": "ts_ms",
        "customer_key": "str",
        "card_key": "str",
        "merchant_id": "str",
        "category": "str",
        "channel": "str",
        "amount_eur": "float",
        "reference_redacted": "str",
        **{name: "float" for name in FEATURES},
    }
    label_columns: ClassVar[Mapping[str, str]] = {
        "payment_id": "str",
        "is_fraud": "bool",
        "known_at": "ts_ms",
    }
    entity_column: ClassVar[str] = "card_key"
    row_id: ClassVar[str] = "payment_id"
    modules = (schemas_module, lookups_module)

    def __init__(
        self,
        merchants: Mapping[str, Merchant] | None,
        secret: str = DEV_SECRET,
        fields: Iterable[str] | None = None,
    ) -> None:
        super().__init__(fields, references=() if merchants is None else ("merchants",))
        self.merchants = merchants
        on = set(self.enabled)
        self._card, self._currency, self._channel = "card" in on, "currency" in on, "channel" in on
        self._category, self._location, self._identity = "category" in on, "location" in on, "identity" in on
        self._device, self._ip, self._reference = "device" in on, "ip" in on, "reference" in on
        self.pseudonym = Pseudonymizer(secret)
        self._spend = Windows(tuple(SPEND_WINDOWS.values()))
        self._stages = (Stage("customer", _customer_key, self._customer_stage, event_id=_payment_id),)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    def check(self, event: msgspec.Struct) -> None:
        if isinstance(event, Watermark):
            return
        merchant_id = event.merchant_id  # type: ignore[attr-defined]
        if self._category and merchant_id not in self.merchants:  # type: ignore[operator]
            raise InvalidEvent(f"unknown reference: merchant_id {merchant_id!r} is not in the merchant reference")
        if self._currency and isinstance(event, Payment) and event.currency not in EUR_PER_UNIT:
            raise InvalidEvent(
                f"unknown reference: currency {event.currency!r} has no rate; known: {sorted(EUR_PER_UNIT)}"
            )

    def event_time_ms(self, event: msgspec.Struct) -> int:
        return to_ms(event.known_at if isinstance(event, FraudLabel) else event.ts)  # type: ignore[attr-defined]

    def depersonalize(self, event: msgspec.Struct) -> Record:
        if isinstance(event, Watermark):
            return {"kind": "watermark", "t": to_ms(event.ts)}
        if isinstance(event, FraudLabel):
            return {
                "kind": "label",
                "t": to_ms(event.known_at),
                "payment_id": event.payment_id,
                "merchant_id": event.merchant_id,
                "is_fraud": event.is_fraud,
                "customer": None if event.customer_id is None else self.pseudonym("customer", event.customer_id),
            }
        assert isinstance(event, Payment)
        p = self.pseudonym
        customer = p("customer", event.customer_id)
        record: Record = {
            "kind": "payment",
            "t": to_ms(event.ts),
            "payment_id": event.payment_id,
            "customer": customer,
            "card": p("card", event.card_number) if self._card else customer,  # type: ignore[arg-type]
            "merchant_id": event.merchant_id,
            "amount_eur": round(event.amount * EUR_PER_UNIT[event.currency], 2)  # type: ignore[index]
            if self._currency
            else event.amount,
        }
        if self._reference:  # redacted against every personal value the event has, mapped or not
            known = (
                event.cardholder_name,
                event.email,
                event.customer_id,
                event.card_number,
                event.device_id,
                event.ip,
            )
            record["reference"], record["reference_pii"] = self.redactor.redact(
                event.reference, tuple(v for v in known if v is not None)
            )
        if self._currency:
            record["foreign"] = event.currency != "EUR"
        if self._location:
            record["lat"] = generalize_coordinate(event.lat)  # type: ignore[arg-type]
            record["lon"] = generalize_coordinate(event.lon)  # type: ignore[arg-type]
        if self._channel:
            record["channel"] = event.channel
        if self._device:
            record["device"] = p("device", event.device_id)  # type: ignore[arg-type]
        if self._ip:
            record["ip"] = p("ip", event.ip)  # type: ignore[arg-type]
        if self._identity:
            record["email_matches_name"] = _email_matches_name(event.email, event.cardholder_name)  # type: ignore[arg-type]
        return record

    def label_rows(self, record: Record) -> list[Record]:
        if record["kind"] != "label":
            return []
        return [{"payment_id": record["payment_id"], "is_fraud": record["is_fraud"], "known_at": record["t"]}]

    def attach(self, row: Record, views: Mapping[str, TableView]) -> Record:
        """Merchant risk and the customer's known frauds as known before the start of the day of
        the payment's time minus the grace.

        The rate is shrunk towards a prior so that one label does not make it 1.0; the fraud
        counts beside it keep a quiet merchant's signal that the shrinkage damps (two frauds in
        five labels give a rate of 0.09, and `merchant_frauds_*` of 2).
        """
        through = MERCHANT_RISK.as_of_day(row["event_time"])
        windows = views[MERCHANT_RISK.name].windows(row["merchant_id"], through, tuple(RISK_WINDOWS_DAYS.values()))
        for name, (labels, frauds) in zip(RISK_WINDOWS_DAYS, windows, strict=True):
            row[f"merchant_fraud_rate_{name}"] = (frauds + RISK_PRIOR * RISK_PRIOR_WEIGHT) / (
                labels + RISK_PRIOR_WEIGHT
            )
            row[f"merchant_frauds_{name}"] = frauds
            row[f"merchant_log_labels_{name}"] = log1p(labels)
        known = views[CUSTOMER_FRAUDS.name].windows(
            row["customer_key"], through, tuple(CUSTOMER_FRAUD_WINDOWS_DAYS.values())
        )
        for name, (frauds,) in zip(CUSTOMER_FRAUD_WINDOWS_DAYS, known, strict=True):
            row[f"customer_frauds_{name}"] = frauds
        return row

    def _customer_stage(self, record: Record, state: State) -> list[Record]:
        """The customer's history before this payment, then the payment joins that history."""
        t: int = record["t"]
        amount: float = record["amount_eur"]
        history = state.get("history") or {
            "last": None,
            "stats": [0, 0.0, 0.0, 0.0, 0.0],
            "device": [],
            "ip": [],
            "spend": self._spend.empty(),
        }
        recent: list[float] = history.setdefault("recent", [])
        last = history["last"]
        spend = self._spend.query(history["spend"], t)
        count, mean, m2, mean_lat, mean_lon = history["stats"]
        secs = 0.0 if last is None else max(0.0, (t - last[0]) / 1000.0)
        std = sqrt(m2 / (count - 1)) if count > 1 else 0.0
        hour = (t // 1000 % 86_400) / 3600.0
        weekday = (t // DAY_MS + 3) % 7

        row: Record = {
            "payment_id": record["payment_id"],
            "event_time": t,
            "customer_key": record["customer"],
            "card_key": record["card"],
            "merchant_id": record["merchant_id"],
            "amount_eur": amount,
            "log_amount": log1p(amount),
            "hour_sin": sin(2 * pi * hour / 24),
            "hour_cos": cos(2 * pi * hour / 24),
            "weekend": float(weekday >= 5),
            "first_payment": float(last is None),
            "log_secs_since_last": log1p(secs),
            "amount_z": max(-10.0, min(10.0, (amount - mean) / max(std, 1.0))) if count else 0.0,
            "log_amount_ratio": log1p(amount) - log1p(mean) if count else 0.0,
            "log_amount_to_median": log1p(amount) - log1p(median(recent)) if recent else 0.0,
            "log_amount_to_max": log1p(amount) - log1p(max(recent)) if recent else 0.0,
            **{f"count_{w}": float(n) for w, (n, _) in zip(SPEND_WINDOWS, spend, strict=True)},
            **{f"log_spend_{w}": log1p(max(0.0, s)) for w, (_, s) in zip(SPEND_WINDOWS, spend, strict=True)},
        }
        if self._reference:
            row["reference_redacted"] = record["reference"]
            row["reference_has_pii"] = float(record["reference_pii"] > 0)
        if self._currency:
            row["foreign_currency"] = float(record["foreign"])
        if self._channel:
            row["channel"] = record["channel"]
            row.update(_CHANNEL_ONE_HOT[record["channel"]])
        if self._category:
            category = self.merchants[record["merchant_id"]].category  # type: ignore[index]
            category = category if category in CATEGORIES else "other"
            row["category"] = category
            row.update(_CATEGORY_ONE_HOT[category])
        lat = lon = 0.0
        if self._location:
            lat, lon = record["lat"], record["lon"]
            if last is None:
                km_last = speed = km_usual = 0.0
            else:
                km_last = haversine_km(last[1], last[2], lat, lon)
                speed = min(MAX_SPEED_KMH, km_last / max(secs / 3600.0, 1 / 60))
                km_usual = haversine_km(mean_lat, mean_lon, lat, lon)
            row["log_km_from_last"] = log1p(km_last)
            row["log_speed_kmh"] = log1p(speed)
            row["log_km_from_usual"] = log1p(km_usual)
        if self._device:
            row["new_device"] = float(last is not None and record["device"] not in history["device"])
            _remember(history["device"], record["device"])
        if self._ip:
            row["new_ip"] = float(last is not None and record["ip"] not in history["ip"])
            _remember(history["ip"], record["ip"])
        if self._identity:
            row["email_matches_name"] = float(record["email_matches_name"])

        count += 1
        delta = amount - mean
        mean += delta / count
        m2 += delta * (amount - mean)
        mean_lat += (lat - mean_lat) / count
        mean_lon += (lon - mean_lon) / count
        history["stats"] = [count, mean, m2, mean_lat, mean_lon]
        if last is None or t >= last[0]:
            history["last"] = [t, lat, lon]
        self._spend.add(history["spend"], t, amount)
        recent.append(amount)
        del recent[:-RECENT_AMOUNTS]
        state.set("history", history)
        return [row]


def _one_hot(prefix: str, values: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return {v: {f"{prefix}_{other}": float(v == other) for other in values} for v in values}


_CHANNEL_ONE_HOT = _one_hot("channel", CHANNELS)
_CATEGORY_ONE_HOT = _one_hot("category", (*CATEGORIES, "other"))


def _customer_key(record: Record) -> str:
    return str(record["customer"])


def _payment_id(record: Record) -> str:
    return str(record["payment_id"])


def _remember(recent: list[Any], value: Any) -> None:
    if value in recent:
        recent.remove(value)
    recent.append(value)
    if len(recent) > RECENT_DEVICES:
        del recent[0]


def _email_matches_name(email: str, name: str) -> bool:
    """Whether the email's local part contains a part of the cardholder's name.

    Account takeovers often change the contact email; this keeps that signal without keeping
    either value.
    """
    local = email.partition("@")[0].lower()
    return any(len(part) >= 3 and part in local for part in name.lower().replace("-", " ").split())
