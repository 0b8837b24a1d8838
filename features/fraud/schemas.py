"""Event schemas of the fraud use case: what a payment and a fraud label look like on the wire.

Declared with msgspec so one declaration validates JSON bytes (the stream), dicts read from
Parquet/CSV (the batch replay) and documents the contract in the README.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Channel = Literal["pos", "contactless", "online", "atm"]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
Amount = Annotated[float, msgspec.Meta(gt=0.0, le=1_000_000.0)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class Payment(msgspec.Struct, tag="payment", tag_field="type", forbid_unknown_fields=False):
    """A card payment as the acquirer sees it, personal fields included."""

    payment_id: Id
    ts: Timestamp
    customer_id: Id
    card_number: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{12,19}$")]
    merchant_id: Id
    amount: Amount
    currency: Currency
    lat: Latitude
    lon: Longitude
    channel: Channel
    device_id: Id
    ip: Annotated[str, msgspec.Meta(min_length=2, max_length=64)]
    cardholder_name: Annotated[str, msgspec.Meta(max_length=256)]
    email: Annotated[str, msgspec.Meta(max_length=256)]
    reference: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class FraudLabel(msgspec.Struct, tag="label", tag_field="type", forbid_unknown_fields=False):
    """The verdict on one payment, known only `known_at` (chargebacks arrive days later)."""

    payment_id: Id
    merchant_id: Id
    is_fraud: bool
    known_at: Timestamp


FraudEvent = Payment | FraudLabel
