"""Event schemas of the fraud use case: what a payment and a fraud label look like on the wire.

Declared with msgspec so one declaration validates JSON bytes (the stream), dicts read from
Parquet/CSV (the batch replay) and documents the contract in the README.

The minimal payment is its id, time, customer, merchant (or terminal) and amount: every other
field is optional, and the features computed from it are a feature group of its own
(`features.fraud.featureset.GROUPS`) that is off for a dataset without it. A missing optional
field encodes to nothing (`omit_defaults`), so a payment looks the same on a topic whether it
came from a file without the field or from one mapped without it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Channel = Literal["pos", "contactless", "online", "atm"]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
Amount = Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)]
"""Zero is an amount: zero-amount authorizations are real, and card testing uses them."""
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class Payment(
    msgspec.Struct, tag="payment", tag_field="type", forbid_unknown_fields=False, kw_only=True, omit_defaults=True
):
    """A card payment as the acquirer sees it, personal fields included; None: not in the data.

    Without a card number a customer is its own card (`card_key`); a terminal id is a
    `merchant_id`; without a currency the amounts are all in one currency.
    """

    payment_id: Id
    ts: Timestamp
    customer_id: Id
    card_number: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{12,19}$")] | None = None
    merchant_id: Id
    amount: Amount
    currency: Currency | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    channel: Channel | None = None
    device_id: Id | None = None
    ip: Annotated[str, msgspec.Meta(min_length=2, max_length=64)] | None = None
    cardholder_name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    email: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    reference: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class FraudLabel(msgspec.Struct, tag="label", tag_field="type", forbid_unknown_fields=False, omit_defaults=True):
    """The verdict on one payment, known only `known_at` (chargebacks arrive days later).

    With the payment's `customer_id`, a fraud also counts in the customer's label history (the
    frauds already known on the customer's cards); without it, only in the merchant's.
    """

    payment_id: Id
    merchant_id: Id
    is_fraud: bool
    known_at: Timestamp
    customer_id: Id | None = None


FraudEvent = Payment | FraudLabel
