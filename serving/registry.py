"""Models from the MLflow registry for live scoring: load, watch an alias, promote.

A model is addressed as `<name>@<alias>` (`fraud-detector@champion`) or `<name>/<version>`.
Loading resolves the reference to a version once, loads that version's pyfunc, and reads its
decision thresholds (version tags `threshold_review` / `threshold_block`, else the run's params
of those names, else defaults). `ModelWatcher` polls the alias in a background thread; when it
points to a new version, the new model is loaded beside the old one and swapped in with one
reference assignment, which the scorer reads once per event: every event is scored by exactly
one model, none is skipped or scored twice, and nothing restarts. If the registry cannot be
reached, the loaded model keeps scoring.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger("samestream.registry")

DEFAULT_REVIEW = 0.5
DEFAULT_BLOCK = 0.9


class ModelUnavailable(RuntimeError):
    """The registry has no such model, alias or version, or cannot be reached."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score cut-offs of a fraud decision: below `review` approve, from `block` on block."""

    review: float = DEFAULT_REVIEW
    block: float = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.block <= 1.0:
            raise ValueError(
                f"thresholds must satisfy 0 <= review <= block <= 1, got review={self.review}, block={self.block}"
            )

    def decide(self, score: float) -> str:
        if score >= self.block:
            return "block"
        if score >= self.review:
            return "review"
        return "approve"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One registered model version, ready to score one row at a time."""

    name: str
    version: str
    ref: str
    """What it was asked for: an alias (`champion`) or the version number."""
    feature_names: tuple[str, ...]
    thresholds: Thresholds
    predict_one: Callable[[Sequence[float]], float]

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def is_version(ref: str) -> bool:
    return ref.isdigit()


class Registry:
    """The MLflow model registry at `tracking_uri` (any URI MLflow accepts).

    HTTP retries are capped (unless set in the environment) so that an unreachable server
    delays an alias check by seconds, not minutes; scoring never waits on it anyway.
    """

    def __init__(self, tracking_uri: str) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def resolve(self, name: str, ref: str) -> Any:
        """The ModelVersion an alias or version number points to now."""
        try:
            if is_version(ref):
                return self.client.get_model_version(name, ref)
            return self.client.get_model_version_by_alias(name, ref)
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot resolve {name}{'/' if is_version(ref) else '@'}{ref} in the registry at "
                f"{self.tracking_uri}: {type(exc).__name__}: {exc}. Train and register a model first "
                f"(`samestream train`), or check the name, alias and MLFLOW_TRACKING_URI"
            ) from exc

    def load(self, name: str, ref: str, available: Sequence[str]) -> LoadedModel:
        """Load what `ref` points to; refuse a model needing features the stream lacks."""
        import mlflow.pyfunc

        version = self.resolve(name, ref)
        try:
            pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
        except Exception as exc:
            raise ModelUnavailable(f"cannot load {name} v{version.version}: {type(exc).__name__}: {exc}") from exc
        try:
            inner = pyfunc.unwrap_python_model()
        except Exception:
            inner = None
        names = _feature_names(pyfunc, inner)
        missing = [n for n in names if n not in set(available)]
        if missing:
            raise ModelUnavailable(
                f"{name} v{version.version} needs features the stream does not carry: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}; it was trained on another FeatureSet version"
            )
        return LoadedModel(
            name=name,
            version=str(version.version),
            ref=ref,
            feature_names=names,
            thresholds=self._thresholds(version),
            predict_one=_row_predictor(pyfunc, inner, names),
        )

    def _thresholds(self, version: Any) -> Thresholds:
        values: dict[str, Any] = {}
        try:
            params = self.client.get_run(version.run_id).data.params if version.run_id else {}
        except Exception:
            params = {}
        for key in ("threshold_review", "threshold_block"):
            values[key] = version.tags.get(key, params.get(key))
        try:
            return Thresholds(
                review=float(values["threshold_review"] or DEFAULT_REVIEW),
                block=float(values["threshold_block"] or DEFAULT_BLOCK),
            )
        except ValueError as exc:
            log.warning("%s v%s has unusable thresholds (%s); using the defaults", version.name, version.version, exc)
            return Thresholds()

    def promote(self, name: str, version: str, alias: str = "champion") -> str | None:
        """Point `alias` at `version`; return the version it pointed to before (None if unset)."""
        self.resolve(name, version)
        try:
            previous = str(self.client.get_model_version_by_alias(name, alias).version)
        except Exception:
            previous = None
        self.client.set_registered_model_alias(name, alias, version)
        return previous

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of a registered model."""
        try:
            return {alias: str(v) for alias, v in self.client.get_registered_model(name).aliases.items()}
        except Exception as exc:
            raise ModelUnavailable(f"no registered model {name!r} at {self.tracking_uri}: {exc}") from exc


def _feature_names(pyfunc: Any, inner: Any) -> tuple[str, ...]:
    names = getattr(inner, "feature_names", None)
    if names:
        return tuple(names)
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        raise ModelUnavailable("the model has neither feature_names nor a signature naming its inputs")
    return tuple(schema.input_names())


def _row_predictor(pyfunc: Any, inner: Any, names: tuple[str, ...]) -> Callable[[Sequence[float]], float]:
    """The cheapest way this model offers to score one row.

    One row is too little work to share: OpenMP and BLAS pools are limited to one thread in a
    scoring process, which on shared cores cuts a tree ensemble's time per row by half or more.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    if callable(getattr(inner, "predict_one", None)):
        return inner.predict_one  # type: ignore[no-any-return]
    estimator = getattr(inner, "estimator", None)
    if estimator is not None and hasattr(estimator, "predict_proba"):
        import numpy as np

        return lambda row: float(estimator.predict_proba(np.asarray([row], dtype=np.float64))[0, 1])
    import pandas as pd

    return lambda row: float(pyfunc.predict(pd.DataFrame([list(row)], columns=list(names)))[0])


class ModelWatcher:
    """Keeps the model behind `name@ref` current while the stream is scored.

    Parameters
    ----------
    registry:
        Where to look.
    name, ref:
        The registered model and an alias (watched) or a version number (fixed).
    available:
        Feature names the stream carries; a version needing others is not swapped in.
    interval:
        Seconds between alias checks.
    """

    def __init__(
        self, registry: Registry, name: str, ref: str, available: Sequence[str], interval: float = 5.0
    ) -> None:
        if interval <= 0:
            raise ValueError(f"watch interval must be positive seconds, got {interval}")
        self.registry = registry
        self.name = name
        self.ref = ref
        self.available = tuple(available)
        self.interval = interval
        self.current: LoadedModel | None = None
        self.swaps: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreachable = False

    def start(self) -> LoadedModel:
        """Load the model now (raising ModelUnavailable if impossible), then watch its alias."""
        self.current = self.registry.load(self.name, self.ref, self.available)
        log.info("scoring with %s (%s)", self.current.label, self.ref)
        if not is_version(self.ref):
            self._thread = threading.Thread(target=self._watch, name=f"watch-{self.ref}", daemon=True)
            self._thread.start()
        return self.current

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 15)

    def check(self) -> None:
        """One alias check: swap in the version the alias points to if it changed."""
        assert self.current is not None, "start() first"
        try:
            version = str(self.registry.resolve(self.name, self.ref).version)
        except ModelUnavailable as exc:
            if not self._unreachable:
                log.warning("model registry unavailable (%s); still scoring with %s", exc, self.current.label)
            self._unreachable = True
            return
        if self._unreachable:
            log.info("model registry reachable again")
            self._unreachable = False
        if version == self.current.version:
            return
        try:
            new = self.registry.load(self.name, version, self.available)
        except ModelUnavailable as exc:
            log.error(
                "%s@%s now points to v%s, which cannot be used (%s); still scoring with %s",
                self.name,
                self.ref,
                version,
                exc,
                self.current.label,
            )
            return
        new = replace(new, ref=self.ref)
        old, self.current = self.current, new
        self.swaps.append((old.version, new.version))
        log.info("%s@%s moved: scoring with v%s (was v%s)", self.name, self.ref, new.version, old.version)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watcher must outlive any registry surprise
                log.exception("alias check failed; still scoring with %s", self.current.label if self.current else "-")
