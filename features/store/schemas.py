"""Event schemas of the store-waste use case: what each source system sends.

The sources differ in format and clock, as they do in a real chain:

* `Sale`: one scanned line of a till receipt, JSON from the POS feed. `ts` is the till's local
  clock (with its UTC offset), `sent_at` the upload gateway's clock (epoch milliseconds);
* `Delivery`: one line of a delivery note, CSV from the warehouse system, in UTC;
* `StockCount`: one counted shelf, CSV from the store's handhelds, local time with offset;
* `PriceChange`: a new shelf price from the pricing system, published ahead of the business day
  it takes effect on (regular changes, promotions, markdowns);
* `DayClose`: the back office's end-of-day report of a store: units sold per product, the book
  of record the demand forecast is trained against.

Quantities come in the unit the sender used (`piece`, `kg`, `g`, `case`); the FeatureSet
converts them to the product master's unit, or rejects them when no conversion is unambiguous.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
Unit = Literal["piece", "kg", "g", "case"]
Quantity = Annotated[float, msgspec.Meta(gt=0.0, le=1_000_000.0)]
Counted = Annotated[float, msgspec.Meta(ge=-1_000_000.0, le=1_000_000.0)]
"""A shelf count may arrive negative (a bad handheld entry); the FeatureSet rejects it with its reason."""


class Sale(msgspec.Struct, tag="sale", tag_field="type", forbid_unknown_fields=False, gc=False):
    """One scanned receipt line, personal fields included (cashier, loyalty card)."""

    sale_id: Id
    store_id: Id
    product_id: Id
    ts: Timestamp
    sent_at: Annotated[int, msgspec.Meta(ge=0)]
    quantity: Quantity
    unit: Unit
    cashier: Annotated[str, msgspec.Meta(max_length=128)]
    loyalty_card: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class Delivery(msgspec.Struct, tag="delivery", tag_field="type", forbid_unknown_fields=False, gc=False):
    """One delivery-note line: goods received on the shelf, with their best-before date."""

    delivery_id: Id
    store_id: Id
    product_id: Id
    delivered_at: Timestamp
    quantity: Quantity
    unit: Unit
    best_before: date


class StockCount(msgspec.Struct, tag="stock_count", tag_field="type", forbid_unknown_fields=False, gc=False):
    """A closing count of one shelf: what is on it after the store closed, expiring items included."""

    count_id: Id
    store_id: Id
    product_id: Id
    counted_at: Timestamp
    quantity: Counted
    unit: Unit


class PriceChange(msgspec.Struct, tag="price_change", tag_field="type", forbid_unknown_fields=False, gc=False):
    """A shelf price valid from `effective_day` until the next change of the same product."""

    change_id: Id
    store_id: Id
    product_id: Id
    published_at: Timestamp
    effective_day: date
    price: Annotated[float, msgspec.Meta(gt=0.0, le=100_000.0)]
    reason: Literal["regular", "promotion", "markdown"]


class DayClose(msgspec.Struct, tag="day_close", tag_field="type", forbid_unknown_fields=False, gc=False):
    """The end-of-day report of one store: units sold per product on `business_day`."""

    store_id: Id
    business_day: date
    units_sold: dict[Id, Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)]]
