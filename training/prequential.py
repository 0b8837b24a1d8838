"""Prequential folds: shifted train/delay/validation pairs inside the training window.

One validation window judges a model on one stretch of days; the field protocol
(`training.protocol`) averages several, each fold trained only on the labels known when it would
have been trained (its validation start, one feedback delay after its training end) and judged
on the labels known at the cut-off, like the single validation window. Model selection and
hyperparameter search (`training.tuning`) both read these folds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from features.featureset import FeatureSet
from training.datasets import Windows, labelled_rows
from training.protocol import PrequentialSplit, prequential_splits
from training.store import connect

FOLD_VALIDATION_DAYS = 7
"""Each fold validates on one week, as the field's handbook does."""

FoldScore = Callable[[pd.DataFrame, np.ndarray, pd.DataFrame], dict[str, float]]
"""A task's figures of one fold: its validation rows, their scores, and the fold's training rows."""


@dataclass
class Fold:
    split: PrequentialSplit
    train: pd.DataFrame
    validation: pd.DataFrame


def fold_splits(windows: Windows, *, n_folds: int, delay_days: int) -> list[PrequentialSplit]:
    """`n_folds` folds ending at the training window's end, all with the longest training period
    that lets the oldest one start at the training start."""
    span_days = (windows.train_end - windows.train_start) // timedelta(days=1)
    train_days = span_days - delay_days - n_folds * FOLD_VALIDATION_DAYS
    if train_days < 1:
        raise ValueError(
            f"{n_folds} prequential folds of {FOLD_VALIDATION_DAYS} validation days and a {delay_days}-day delay "
            f"need more than the training window's {span_days} days; use fewer folds or a longer window"
        )
    return prequential_splits(
        windows.train_end,
        n_folds=n_folds,
        train_days=train_days,
        delay_days=delay_days,
        validation_days=FOLD_VALIDATION_DAYS,
        earliest=windows.train_start,
    )


def load_folds(db: Path, fs: FeatureSet, windows: Windows, *, n_folds: int, delay_days: int) -> list[Fold]:
    """Each fold's rows from DuckDB: training labels as known at its validation start, validation
    labels as known at the cut-off."""
    con = connect(db, read_only=True)
    try:
        folds = []
        for split in fold_splits(windows, n_folds=n_folds, delay_days=delay_days):
            train = labelled_rows(con, fs, split.train_start, split.train_end, split.validation_start)
            validation = labelled_rows(con, fs, split.validation_start, split.validation_end, windows.cutoff)
            for name, frame in (("training", train), ("validation", validation)):
                if frame["label"].nunique() < 2:
                    raise ValueError(
                        f"the prequential fold validating from {split.validation_start:%Y-%m-%d} has a {name} "
                        f"period of {len(frame)} rows with one class; use fewer folds or more history"
                    )
            folds.append(Fold(split, train, validation))
        return folds
    finally:
        con.close()


def fold_metrics(estimator: Any, folds: Sequence[Fold], inputs: Sequence[str], score: FoldScore) -> dict[str, float]:
    """Mean of each figure over the folds, a fresh copy of `estimator` fitted on each."""
    columns = list(inputs)
    per_fold = []
    for fold in folds:
        model = clone(estimator)
        model.fit(fold.train[columns].to_numpy(dtype=np.float64), fold.train["label"].to_numpy())
        scores = model.predict_proba(fold.validation[columns].to_numpy(dtype=np.float64))[:, 1]
        per_fold.append(score(fold.validation, scores, fold.train))
    return {name: float(np.nanmean([m[name] for m in per_fold])) for name in per_fold[0]}
