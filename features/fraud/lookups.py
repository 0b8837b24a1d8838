"""Reference data the fraud features enrich with: merchants and exchange rates.

Loaded once by a driver and passed in; the feature code never reads files or topics itself.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurant",
    "fuel",
    "electronics",
    "travel",
    "fashion",
    "pharmacy",
    "entertainment",
    "online_marketplace",
    "digital_goods",
    "jewelry",
    "atm_operator",
)
"""Merchant categories with a feature of their own; any other category counts as `other`."""

EUR_PER_UNIT: dict[str, float] = {
    "EUR": 1.0,
    "SEK": 0.087,
    "DKK": 0.134,
    "NOK": 0.085,
    "GBP": 1.17,
    "CHF": 1.05,
    "USD": 0.92,
    "PLN": 0.23,
    "CZK": 0.04,
}
"""Fixed conversion rates: part of the feature definition, so a rate change is a new version."""


@dataclass(frozen=True, slots=True)
class Merchant:
    """One row of the merchant reference."""

    merchant_id: str
    category: str
    lat: float
    lon: float


def load_merchants(path: str | Path) -> dict[str, Merchant]:
    """Read the merchant reference CSV (merchant_id, category, lat, lon), once, at start-up."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"merchant_id", "category", "lat", "lon"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: merchant reference lacks columns {sorted(missing)}")
        return {
            row["merchant_id"]: Merchant(row["merchant_id"], row["category"], float(row["lat"]), float(row["lon"]))
            for row in reader
        }
