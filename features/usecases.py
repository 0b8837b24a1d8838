"""The use cases by name, so every command can say `fraud`, `loan` or `store`.

Each entry says which event files a use case reads (kind -> file stem under
`<data dir>/<use case>/`), how its FeatureSet is built from its reference data, and the name
its models are registered under. Adding a use case means adding a module and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from features.featureset import FeatureSet


@dataclass(frozen=True)
class UseCase:
    name: str
    files: Mapping[str, str]
    """Event kind -> file stem, e.g. {"payment": "payments"}; any of .parquet/.jsonl/.csv."""
    build: Callable[[Path, str], FeatureSet]
    """(folder with the use case's reference data, pseudonym secret) -> FeatureSet."""
    model_name: str


def _fraud(folder: Path, secret: str) -> FeatureSet:
    from features.fraud import FraudFeatureSet
    from features.fraud.lookups import load_merchants

    merchants_csv = folder / "merchants.csv"
    if not merchants_csv.exists():
        raise FileNotFoundError(
            f"{merchants_csv} not found: the fraud features need the merchant reference; "
            "run `samestream simulate fraud` or put your merchants.csv there"
        )
    return FraudFeatureSet(load_merchants(merchants_csv), secret=secret)


USE_CASES: dict[str, UseCase] = {
    "fraud": UseCase("fraud", {"payment": "payments", "label": "labels"}, _fraud, "fraud-detector"),
}


def get_use_case(name: str) -> UseCase:
    try:
        return USE_CASES[name]
    except KeyError:
        raise ValueError(f"unknown use case {name!r}; expected one of {', '.join(USE_CASES)}") from None


def build_featureset(use_case: str, data_dir: str | Path, secret: str) -> FeatureSet:
    """The FeatureSet of `use_case` with its reference data loaded from `data_dir`."""
    return get_use_case(use_case).build(Path(data_dir), secret)
