"""What each feature family adds: the champion's model refitted without one family at a time.

Every fit sees the same training rows and is judged on the same validation and test rows as the
full model, so a drop in a figure is what the family contributed (and a rise, what it cost).
Families come from the FeatureSet (`FeatureSet.families`); a family whose features are all off
for this dataset is not listed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from rich.table import Table
from sklearn.base import clone

from training.datasets import Splits
from training.prequential import FoldScore

FULL = "all features"


@dataclass(frozen=True)
class Ablated:
    family: str
    n_features: int
    """Features left."""
    validation: dict[str, float]
    test: dict[str, float]


def ablate(
    estimator: Any,
    data: Splits,
    inputs: Sequence[str],
    families: dict[str, tuple[str, ...]],
    score: FoldScore,
) -> list[Ablated]:
    """The full model first, then one fit per family without that family's features."""
    learnt = pd.concat([data.train, data.validation], ignore_index=True)
    runs = [(FULL, list(inputs))]
    for family, members in families.items():
        dropped = set(members) & set(inputs)
        if dropped:
            runs.append((family, [c for c in inputs if c not in dropped]))
    out = []
    for family, columns in runs:
        model = clone(estimator)
        model.fit(data.train[columns].to_numpy(dtype=np.float64), data.train["label"].to_numpy())

        def scored(frame: pd.DataFrame, model: Any = model, columns: list[str] = columns) -> np.ndarray:
            return model.predict_proba(frame[columns].to_numpy(dtype=np.float64))[:, 1]

        out.append(
            Ablated(
                family,
                len(columns),
                score(data.validation, scored(data.validation), data.train),
                score(data.test, scored(data.test), learnt),
            )
        )
    return out


def log(rows: list[Ablated], candidate: str, tags: dict[str, str]) -> None:
    """One MLflow run holding every fit's figures, named `<split>_<metric>__without_<family>`."""
    with mlflow.start_run(run_name=f"ablation-{candidate}", tags=tags | {"role": "ablation", "candidate": candidate}):
        mlflow.log_param("candidate", candidate)
        metrics = {}
        for row in rows:
            suffix = "" if row.family == FULL else "__without_" + "_".join(re.findall(r"[a-z0-9]+", row.family.lower()))
            for split, figures in (("val", row.validation), ("test", row.test)):
                for name, value in figures.items():
                    metrics[f"{split}_{name}{suffix}"[:250]] = value
        mlflow.log_metrics(metrics)


def table(rows: list[Ablated], candidate: str, columns: list[tuple[str, str, str]]) -> Table:
    """`columns`: (heading, split, metric); each cell the figure and its change from the full model."""
    out = Table(title=f"ablation: {candidate} refitted without one feature family at a time")
    out.add_column("without", justify="left")
    out.add_column("features", justify="right")
    for heading, _, _ in columns:
        out.add_column(heading, justify="right")
    full = rows[0]
    for row in rows:
        cells = []
        for _, split, metric in columns:
            value = getattr(row, split)[metric]
            base = getattr(full, split)[metric]
            cells.append(f"{value:.3f}" if row is full else f"{value:.3f} ({value - base:+.3f})")
        out.add_row("-" if row is full else row.family, str(row.n_features), *cells)
    return out
