"""The master scale: credit-score bands and the annual probability of default of each.

Reference data, loaded once by a driver and passed in. It turns the bureau score known at
application time into the probability of default that prices the expected credit loss.
"""

from __future__ import annotations

import csv
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RiskGrade:
    """One band of the master scale; `min_score` None is the grade of customers without a score."""

    grade: str
    min_score: int | None
    pd_annual: float


class MasterScale:
    """Score -> risk grade lookup; grades are bands of scores from their `min_score` up."""

    def __init__(self, grades: Sequence[RiskGrade]) -> None:
        scored = sorted((g for g in grades if g.min_score is not None), key=lambda g: g.min_score or 0)
        unscored = [g for g in grades if g.min_score is None]
        if not scored or len(unscored) != 1:
            raise ValueError(
                "the master scale needs at least one scored grade and exactly one grade without a min_score "
                f"(for customers the bureau has not scored), got {len(scored)} scored and {len(unscored)} unscored"
            )
        if len({g.min_score for g in scored}) != len(scored):
            raise ValueError("the master scale has two grades with the same min_score")
        bad = [g.grade for g in grades if not 0.0 < g.pd_annual < 1.0]
        if bad:
            raise ValueError(f"grades {bad} have a pd_annual outside (0, 1)")
        self.grades = tuple(scored)
        self.unscored = unscored[0]
        self._bounds = [g.min_score or 0 for g in scored]

    def grade(self, score: int | None) -> RiskGrade:
        """The grade of a score; below the lowest band counts as the lowest band."""
        if score is None:
            return self.unscored
        return self.grades[max(0, bisect_right(self._bounds, score) - 1)]


def load_master_scale(path: str | Path) -> MasterScale:
    """Read `risk_grades.csv` (grade, min_score, pd_annual; min_score empty for the unscored grade)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"grade", "min_score", "pd_annual"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: master scale lacks columns {sorted(missing)}")
        try:
            grades = [
                RiskGrade(row["grade"], int(row["min_score"]) if row["min_score"] else None, float(row["pd_annual"]))
                for row in reader
            ]
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    try:
        return MasterScale(grades)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
