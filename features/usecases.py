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
    references: tuple[str, ...] = ()
    """Reference files in the use case's folder the FeatureSet is built from (part of what
    makes its rows, so part of a materialization's input fingerprint)."""


def _fraud(folder: Path, secret: str) -> FeatureSet:
    """Built for the fields and merchant reference `materialize` recorded (`features.fields`);
    without a record, for every field, with `merchants.csv` if the folder has one."""
    from features.fields import read_record
    from features.fraud import FraudFeatureSet
    from features.fraud.lookups import load_merchants

    record = read_record(folder)
    given = record.references.get("merchants") if record else None
    merchants_csv = Path(given) if given else folder / "merchants.csv"
    if given and not merchants_csv.exists():
        raise FileNotFoundError(f"{merchants_csv} not found: the merchant reference {folder}/featureset.json names")
    merchants = load_merchants(merchants_csv) if merchants_csv.exists() else None
    return FraudFeatureSet(merchants, secret=secret, fields=record.fields if record else None)


def _loan(folder: Path, secret: str) -> FeatureSet:
    from features.loan import LoanFeatureSet, load_master_scale

    grades_csv = folder / "risk_grades.csv"
    if not grades_csv.exists():
        raise FileNotFoundError(
            f"{grades_csv} not found: the loan features need the master scale of risk grades; "
            "run `samestream simulate loan` or put your risk_grades.csv there"
        )
    return LoanFeatureSet(load_master_scale(grades_csv), secret=secret)


def _store(folder: Path, secret: str) -> FeatureSet:
    """Nothing of the store use case is pseudonymized (its personal fields are dropped): no secret."""
    from features.store import StoreFeatureSet, load_products, load_stores

    for name in ("products.csv", "stores.csv"):
        if not (folder / name).exists():
            raise FileNotFoundError(
                f"{folder / name} not found: the store features need the product master and the store list; "
                f"run `samestream simulate store` or put your {name} there"
            )
    return StoreFeatureSet(load_products(folder / "products.csv"), load_stores(folder / "stores.csv"))


USE_CASES: dict[str, UseCase] = {
    "fraud": UseCase("fraud", {"payment": "payments", "label": "labels"}, _fraud, "fraud-detector", ("merchants.csv",)),
    "loan": UseCase(
        "loan",
        {
            "application": "applications",
            "credit_score": "credit_scores",
            "engagement": "engagements",
            "payment": "payments",
            "outcome": "outcomes",
        },
        _loan,
        "loan-acceptance",
        ("risk_grades.csv",),
    ),
    "store": UseCase(
        "store",
        {
            "sale": "sales",
            "delivery": "deliveries",
            "stock_count": "stock_counts",
            "price_change": "price_changes",
            "day_close": "day_closes",
        },
        _store,
        "store-demand",
        ("products.csv", "stores.csv"),
    ),
}


def get_use_case(name: str) -> UseCase:
    try:
        return USE_CASES[name]
    except KeyError:
        raise ValueError(f"unknown use case {name!r}; expected one of {', '.join(USE_CASES)}") from None


def build_featureset(use_case: str, data_dir: str | Path, secret: str) -> FeatureSet:
    """The FeatureSet of `use_case` with its reference data loaded from `data_dir`."""
    return get_use_case(use_case).build(Path(data_dir), secret)
