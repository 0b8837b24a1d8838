"""Models from the MLflow registry for live scoring: load, watch an alias, promote.

A model is addressed as `<name>@<alias>` (`fraud-detector@champion`) or `<name>/<version>`.
Loading resolves the reference to a version once, loads that version's pyfunc, and has the use
case's decider (`serving.deciders`) read its decision policy from the version's tags (over its
run's params of the same names): fraud thresholds, a loan pricing policy, a store demand
spread. A version whose policy is unusable is refused like a missing one. `ModelWatcher` polls
the alias in a background thread; when it points to a new version, the new model is loaded
beside the old one and swapped in with one reference assignment, which the scorer reads once
per event: every event is scored by exactly one model, none is skipped or scored twice, and
nothing restarts. If the registry cannot be reached, the loaded model keeps scoring.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from serving.deciders import Decider, FraudDecider

log = logging.getLogger("samestream.registry")


class ModelUnavailable(RuntimeError):
    """The registry has no such model, alias or version, or cannot be reached."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One registered model version, ready to decide one row at a time."""

    name: str
    version: str
    ref: str
    """What it was asked for: an alias (`champion`) or the version number."""
    feature_names: tuple[str, ...]
    """The model's inputs, in order."""
    row_features: tuple[str, ...]
    """The inputs read from a feature row: all but those the decider supplies (the loan's rate)."""
    policy: Any
    """What the decider read from the version's tags: `Thresholds`, `PricingPolicy` or `Spread`."""
    predict_one: Callable[[Sequence[float]], float]
    """One row of model inputs -> its prediction, by the cheapest path the model offers."""
    predict_many: Callable[[NDArray[np.float64]], NDArray[np.float64]]
    """Rows of model inputs (n, len(feature_names)) -> n predictions, through the pyfunc's own
    `predict`: for deciders that ask one row several questions (a rate grid, markdown depths)."""
    featureset_version: str
    """The FeatureSet version the model was trained on: it scores rows of that version only."""
    explained_one: Callable[[Sequence[float]], tuple[float, list[dict[str, Any]]] | None] | None = None
    """One row of model inputs -> its prediction and the inputs that pushed it up most, from one
    pass over the model (`training.pyfunc.ProbabilityModel.explained`); None, or a None result:
    a model without reasons, which decides with `predict_one` alone."""
    explained_many: (
        Callable[[NDArray[np.float64]], tuple[NDArray[np.float64], list[list[dict[str, Any]]]] | None] | None
    ) = None
    """`explained_one` for rows of model inputs at once."""

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

    def load(
        self,
        name: str,
        ref: str,
        available: Sequence[str],
        decider: Decider,
        featureset_version: str | None = None,
    ) -> LoadedModel:
        """Load what `ref` points to for `decider`'s decisions; refuse a model needing features the
        stream lacks, one trained on another FeatureSet version than `featureset_version` (the one
        the feature process runs, when known), or whose version carries no usable policy."""
        import mlflow.pyfunc

        version = self.resolve(name, ref)
        trained_on = check_featureset(name, version, featureset_version)
        try:
            pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
        except Exception as exc:
            raise ModelUnavailable(f"cannot load {name} v{version.version}: {type(exc).__name__}: {exc}") from exc
        try:
            inner = pyfunc.unwrap_python_model()
        except Exception:
            inner = None
        names = _feature_names(pyfunc, inner)
        known = {*available, *decider.supplied_inputs}
        missing = [n for n in names if n not in known]
        if missing:
            raise ModelUnavailable(
                f"{name} v{version.version} needs features the stream does not carry: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}; it was trained on another FeatureSet version"
            )
        label = f"{name} v{version.version}"
        try:
            policy = decider.policy(self._params(version), names, label)
        except ValueError as exc:
            raise ModelUnavailable(f"{label} cannot make {decider.use_case} decisions: {exc}") from exc
        return LoadedModel(
            name=name,
            version=str(version.version),
            ref=ref,
            feature_names=names,
            row_features=tuple(n for n in names if n not in decider.supplied_inputs),
            policy=policy,
            predict_one=_row_predictor(pyfunc, inner, names),
            predict_many=_batch_predictor(pyfunc, names),
            featureset_version=trained_on,
            explained_one=getattr(inner, "explained_one", None),
            explained_many=getattr(inner, "explained", None),
        )

    def _params(self, version: Any) -> dict[str, str]:
        """The version's tags over its run's params: where training records a decision policy."""
        try:
            params = self.client.get_run(version.run_id).data.params if version.run_id else {}
        except Exception:
            params = {}
        return {**params, **version.tags}

    def promote(
        self, name: str, version: str, alias: str = "champion", featureset_version: str | None = None
    ) -> str | None:
        """Point `alias` at `version`, unless it was trained on another FeatureSet version than
        `featureset_version` (the one the feature process runs); return the version `alias`
        pointed to before (None if unset)."""
        check_featureset(name, self.resolve(name, version), featureset_version)
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


def check_featureset(name: str, version: Any, expected: str | None) -> str:
    """The FeatureSet version a model version was trained on (its `featureset_version` tag);
    ModelUnavailable if it has none, or not `expected`: its features would not be the ones the
    rows carry (training/serving skew)."""
    trained_on = version.tags.get("featureset_version")
    label = f"{name} v{version.version}"
    if not trained_on:
        raise ModelUnavailable(
            f"{label} has no featureset_version tag, so its features cannot be checked against the rows; "
            "register it with `samestream train`, or tag it with the FeatureSet version it was trained on"
        )
    if expected is not None and trained_on != expected:
        raise ModelUnavailable(
            f"{label} was trained on FeatureSet {trained_on}, the feature process makes {expected}: its features "
            "differ from the ones it would score; retrain it on the current features (`samestream train`)"
        )
    return str(trained_on)


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


def _batch_predictor(pyfunc: Any, names: tuple[str, ...]) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:
    """The registered model's own `predict` on a frame of rows: exactly what offline code calls.

    Its schema check costs a few milliseconds a call, paid once per row (the loan grid and the
    markdown depths are one call each): a live decision equals the offline one to the bit.
    """
    import pandas as pd

    columns = list(names)
    return lambda rows: np.asarray(pyfunc.predict(pd.DataFrame(rows, columns=columns)), dtype=np.float64)


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
    decider:
        Reads each version's decision policy (`serving.deciders.decider_for(use case)`); a
        version without a usable one is not swapped in. Default: fraud's.
    featureset_version:
        The FeatureSet version of the rows scored; a version trained on another is not loaded.
    """

    def __init__(
        self,
        registry: Registry,
        name: str,
        ref: str,
        available: Sequence[str],
        interval: float = 5.0,
        decider: Decider | None = None,
        featureset_version: str | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"watch interval must be positive seconds, got {interval}")
        self.decider = decider or FraudDecider()
        self.registry = registry
        self.name = name
        self.ref = ref
        self.available = tuple(available)
        self.featureset_version = featureset_version
        self.interval = interval
        self.current: LoadedModel | None = None
        self.swaps: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreachable = False

    def start(self) -> LoadedModel:
        """Load the model now (raising ModelUnavailable if impossible), then watch its alias."""
        self.current = self.registry.load(self.name, self.ref, self.available, self.decider, self.featureset_version)
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
            new = self.registry.load(self.name, version, self.available, self.decider, self.featureset_version)
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
