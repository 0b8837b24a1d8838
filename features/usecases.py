"""The use cases by name, so every command can say `fraud`, `loan`, `store` or your own.

Each entry says which event files a use case reads (kind -> file stem under
`<data dir>/<use case>/`), how its FeatureSet is built from its reference data, the name its
models are registered under, and where its training job and live decider live, as import paths
(`module:attribute`): `features` must not import training or serving, and a path costs nothing
until a command needs it.

A new use case needs no edit here: a module calls `register_use_case(UseCase(...))` when it is
imported, and every command imports the modules named in `SAMESTREAM_USE_CASES`
(comma-separated) before it looks a use case up.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    job: str = ""
    """Import path of its training job (`training.jobs.Job`), e.g. `training.jobs.fraud:JOB`."""
    decider: str = ""
    """Import path of a zero-argument callable returning its live decider (`serving.deciders.Decider`)."""
    report: str = ""
    """Import path of its report view (`training.report.View`); empty: every `test_` metric is shown."""


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
    "fraud": UseCase(
        "fraud",
        {"payment": "payments", "label": "labels"},
        _fraud,
        "fraud-detector",
        ("merchants.csv",),
        job="training.jobs.fraud:JOB",
        decider="serving.deciders:FraudDecider",
        report="training.report:FRAUD_VIEW",
    ),
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
        job="training.jobs.loan:JOB",
        decider="serving.deciders:LoanDecider",
        report="training.report:LOAN_VIEW",
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
        job="training.jobs.store:JOB",
        decider="serving.deciders:StoreDecider",
        report="training.report:STORE_VIEW",
    ),
}

PLUGINS_ENV = "SAMESTREAM_USE_CASES"
"""Environment variable naming modules (comma-separated) that register use cases when imported."""


def register_use_case(use_case: UseCase, replace: bool = False) -> UseCase:
    """Add a use case to the registry (a module does it when imported); returns it.

    Registering another use case (another job) under a taken name raises ValueError unless
    `replace`; registering the same one again (a module imported twice) replaces it.
    """
    current = USE_CASES.get(use_case.name)
    if current is not None and current.job != use_case.job and not replace:
        raise ValueError(f"a use case named {use_case.name!r} is registered already; pass replace=True")
    if not use_case.job:
        raise ValueError(f"use case {use_case.name!r} names no training job (import path `module:attribute`)")
    USE_CASES[use_case.name] = use_case
    return use_case


def load_plugins() -> None:
    """Import the modules named in `SAMESTREAM_USE_CASES`, so their use cases are registered."""
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        importlib.import_module(module)


def load_object(path: str) -> Any:
    """The object an import path `package.module:attribute` names."""
    module, sep, attribute = path.partition(":")
    if not sep or not module or not attribute:
        raise ValueError(f"an import path is `module:attribute`, got {path!r}")
    return getattr(importlib.import_module(module), attribute)


def get_use_case(name: str) -> UseCase:
    """The registered use case `name`, after the plugin modules registered theirs."""
    load_plugins()
    try:
        return USE_CASES[name]
    except KeyError:
        raise ValueError(f"unknown use case {name!r}; expected one of {', '.join(USE_CASES)}") from None


def build_featureset(use_case: str, data_dir: str | Path, secret: str) -> FeatureSet:
    """The FeatureSet of `use_case` with its reference data loaded from `data_dir`."""
    return get_use_case(use_case).build(Path(data_dir), secret)
