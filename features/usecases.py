"""The use cases by name, so every command can say `fraud`, `loan` or `store`."""

from __future__ import annotations

from pathlib import Path

from features.featureset import FeatureSet

USE_CASES: tuple[str, ...] = ("fraud",)


def build_featureset(use_case: str, data_dir: str | Path, secret: str) -> FeatureSet:
    """The FeatureSet of `use_case` with its reference data loaded from `data_dir`."""
    data_dir = Path(data_dir)
    if use_case == "fraud":
        from features.fraud import FraudFeatureSet
        from features.fraud.lookups import load_merchants

        merchants_csv = data_dir / "merchants.csv"
        if not merchants_csv.exists():
            raise FileNotFoundError(
                f"{merchants_csv} not found: the fraud features need the merchant reference; "
                "run `samestream simulate fraud` or put your merchants.csv there"
            )
        return FraudFeatureSet(load_merchants(merchants_csv), secret=secret)
    raise ValueError(f"unknown use case {use_case!r}; expected one of {', '.join(USE_CASES)}")
