"""Checks of a config's ``search`` section: kind, space, folds and kind options.

Values an estimator or a search takes are checked by that class's own
declarations (:meth:`~torchhpo.cli._check_base.Checker.param_value`,
:meth:`~torchhpo.cli._check_base.Checker.declared`); what is checked here by hand
are the command line's own rules: which keys go with which kind, the distribution
forms, the splitter by name, and cross-checks between sections.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import get_scorer_names

from ..search import HalvingGridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV
from ._check_base import Checker, did_you_mean, listed, show
from ._schema import (
    DISTRIBUTIONS,
    GROUP_SPLITTERS,
    HALVING_OPTIONS,
    OPTUNA_KEYS,
    PRUNERS,
    SAMPLED_KINDS,
    SAMPLERS,
    SEARCH_KINDS,
    SPLITTERS,
    CVSpec,
    DatasetSpec,
    Distribution,
    python_value,
)


class SearchChecks(Checker):
    """The ``search`` section, checked against the estimator it will tune."""

    def search(self, raw, cls: type, params: dict) -> dict:
        """Check ``search``: which keys go with its kind, and each of them."""
        spec = self.mapping(
            "search",
            raw,
            (
                "kind",
                "space",
                "cv",
                "scoring",
                "n_iter",
                "random_state",
                "n_candidates",
                *HALVING_OPTIONS,
                *OPTUNA_KEYS,
            ),
            ("kind", "space"),
        )
        kind = self.choice("search.kind", spec["kind"], SEARCH_KINDS)
        for key in OPTUNA_KEYS if kind != "optuna" else ("n_iter",):
            if key in spec:
                self.fail(
                    f"search.{key}",
                    "only used by kind: optuna."
                    if kind != "optuna"
                    else "kind: optuna takes n_trials, not n_iter.",
                )
        if kind == "grid":
            for key in ("n_iter", "random_state"):
                if key in spec:
                    self.fail(
                        f"search.{key}",
                        "only used by kind: random (a grid tries every "
                        "combination); the estimator's seed goes in "
                        "estimator.params.random_state.",
                    )
        if kind != "random" and "n_iter" in spec:
            self.fail(
                "search.n_iter",
                f"only used by kind: random; kind: {kind} "
                + (
                    "samples search.n_candidates."
                    if kind == "halving_random"
                    else "tries every combination."
                ),
            )
        halving = self.halving(spec, kind, cls)
        if halving.get("resource", "n_samples") in spec["space"]:
            self.fail(
                f"search.space.{halving['resource']}",
                "is the halving resource (search.resource): the iterations set it; "
                "it cannot also be searched.",
            )
        space = self.space(spec["space"], kind, cls, params)
        cv = self.cv(spec.get("cv", 5))
        scoring = spec.get("scoring")
        if scoring is not None and scoring not in get_scorer_names():
            self.fail(
                "search.scoring",
                f"unknown scorer {show(scoring)}"
                f"{did_you_mean(scoring, get_scorer_names())}; expected null (the "
                "estimator's score) or a name from "
                "sklearn.metrics.get_scorer_names(), such as accuracy, f1_macro, "
                "r2 or neg_mean_squared_error.",
            )
        result: dict[str, Any] = {
            "kind": kind,
            "space": space,
            "cv": cv,
            "scoring": scoring,
        }
        if kind == "optuna":
            result["optuna"] = self.optuna(spec, params)
        if kind == "random":
            result["n_iter"] = self.declared(
                "search.n_iter",
                RandomizedSearchCV,
                "n_iter",
                spec.get("n_iter", 10),
                "an integer >= 1",
            )
        if kind != "grid":
            result["random_state"] = self.declared(
                "search.random_state",
                RandomizedSearchCV,
                "random_state",
                spec.get("random_state"),
                "an integer from 0 to 2**32 - 1, or null",
            )
        result["halving"] = halving
        return result

    def optuna(self, spec: dict, params: dict) -> dict:
        """Check an Optuna search's keys; return them with defaults filled.

        ``max_iter`` defaults to the estimator's fixed one (else 200).
        """
        if importlib.util.find_spec("optuna") is None:
            self.fail(
                "search.kind",
                "kind: optuna needs Optuna: pip install 'torchhpo[optuna]'.",
            )
        from ..search import OptunaSearchCV

        n_trials = spec.get("n_trials", 20)
        if n_trials is None:  # the study's size is what the command line runs to
            self.fail("search.n_trials", "expected an integer >= 0, got null.")
        options = {
            "n_trials": self.declared(
                "search.n_trials",
                OptunaSearchCV,
                "n_trials",
                n_trials,
                "an integer >= 0",
            ),
            "sampler": self.choice(
                "search.sampler", spec.get("sampler", "tpe"), SAMPLERS
            ),
            "pruner": self.choice(
                "search.pruner", spec.get("pruner", "median"), PRUNERS
            ),
            "max_iter": self.declared(
                "search.max_iter",
                OptunaSearchCV,
                "max_iter",
                spec.get("max_iter", params.get("max_iter", 200)),
                "an integer >= 1",
            ),
            "timeout": self.declared(
                "search.timeout",
                OptunaSearchCV,
                "timeout",
                spec.get("timeout"),
                "seconds > 0 or null",
            ),
            "storage": spec.get("storage"),
            "study_name": spec.get("study_name"),
        }
        for key in ("storage", "study_name"):
            if options[key] is not None and not isinstance(options[key], str):
                self.fail(f"search.{key}", f"expected text, got {show(options[key])}.")
        return options

    def cv(self, raw) -> int | CVSpec:
        """Check ``search.cv``: a number of folds, or a splitter with options."""
        example = "{kind: kfold, n_splits: 5, shuffle: true, random_state: 0}"
        if not isinstance(raw, Mapping):
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 2:
                self.fail(
                    "search.cv",
                    f"expected an integer >= 2, got {show(raw)}; or a splitter "
                    f"such as {example}.",
                )
            return raw
        if "kind" not in raw:
            self.fail(
                "search.cv.kind",
                f"missing; name a splitter, one of {listed(SPLITTERS)} "
                f"(as in {example}).",
            )
        kind = self.choice("search.cv.kind", raw["kind"], SPLITTERS)
        cls = SPLITTERS[kind]
        accepted = tuple(inspect.signature(cls).parameters)
        options = self.mapping("search.cv", raw, ("kind", *accepted))
        del options["kind"]
        try:
            cls(**options)
        except (ValueError, TypeError) as exc:
            self.fail("search.cv", f"{cls.__name__}{show(options)} refused: {exc}")
        n_splits = options.get("n_splits")
        if n_splits is not None:
            self.integer("search.cv.n_splits", n_splits, minimum=2)
        return CVSpec(kind, options)

    def cv_fits(self, cv, dataset: DatasetSpec, estimator: str) -> None:
        """Cross-check the splitter with the dataset and the estimator."""
        kind = cv.kind if isinstance(cv, CVSpec) else None
        if kind in GROUP_SPLITTERS and dataset.groups is None:
            self.fail(
                "search.cv.kind",
                f"{kind} splits by groups; name their column in dataset.groups.",
            )
        if dataset.groups is not None and kind not in GROUP_SPLITTERS:
            self.fail(
                "dataset.groups",
                f"only used by a group splitter (search.cv.kind: "
                f"{' or '.join(GROUP_SPLITTERS)}).",
            )
        if (
            kind is not None
            and kind.startswith("stratified")
            and (estimator == "MLPRegressor")
        ):
            self.fail(
                "search.cv.kind",
                f"{kind} stratifies by class; MLPRegressor's target is a quantity: "
                "use kfold or shuffle_split.",
            )

    def halving(self, spec: dict, kind: str, cls: type) -> dict:
        """Check the halving options (scikit-learn's defaults filled in)."""
        names = [*HALVING_OPTIONS, "n_candidates"]
        if not kind.startswith("halving"):
            for name in names:
                if name in spec:
                    self.fail(
                        f"search.{name}",
                        "only used by kind: halving_grid or halving_random.",
                    )
            return {}
        if kind == "halving_grid" and "n_candidates" in spec:
            self.fail(
                "search.n_candidates",
                "only used by kind: halving_random (a grid's candidates are its "
                "combinations).",
            )
        options = {}
        for name, default in HALVING_OPTIONS.items():
            if isinstance(default, dict):
                default = default[kind]
            options[name] = spec.get(name, default)
        if kind == "halving_random":
            options["n_candidates"] = spec.get("n_candidates", "exhaust")
        owner = HalvingGridSearchCV if kind == "halving_grid" else HalvingRandomSearchCV
        expected = {
            "factor": "a number > 1",
            "resource": "n_samples or an estimator parameter such as max_iter",
            "max_resources": "an integer >= 1 or auto",
            "min_resources": "an integer >= 1 or exhaust or smallest",
            "n_candidates": "an integer >= 1 or exhaust",
            "aggressive_elimination": "true or false",
        }
        for name, value in options.items():
            self.declared(f"search.{name}", owner, name, value, expected[name])
        if not options["factor"] > 1:  # scikit-learn takes any factor > 0
            self.fail(
                "search.factor", f"expected a number > 1, got {options['factor']}."
            )
        resource = options["resource"]
        accepted = cls().get_params()
        if resource != "n_samples" and resource not in accepted:
            self.fail(
                "search.resource",
                f"expected {expected['resource']}, got {show(resource)}"
                f"{did_you_mean(resource, accepted)}.",
            )
        if resource != "n_samples" and options["max_resources"] == "auto":
            self.fail(
                "search.max_resources",
                f"expected an integer with resource: {resource} (auto means the "
                "number of samples, for resource: n_samples).",
            )
        return options

    def space(self, raw, kind: str, cls: type, params: dict) -> dict:
        """Check ``search.space``: each value as the estimator's ``fit`` would."""
        accepted = tuple(cls().get_params())
        if not isinstance(raw, Mapping):
            self.fail(
                "search.space",
                "expected a mapping of parameter names to lists of values (or, for "
                f"kind: random, distributions), got {show(raw)}.",
            )
        space = self.mapping("search.space", raw, accepted)
        if not space:
            self.fail(
                "search.space", "empty; expected at least one parameter to search."
            )
        checked = {}
        for name, values in space.items():
            key = f"search.space.{name}"
            if name in params:
                self.fail(
                    key,
                    f"also fixed in estimator.params.{name}; a parameter is either "
                    "fixed or searched.",
                )
            if isinstance(values, Mapping):
                checked[name] = self.distribution(key, values, kind, cls, params, name)
                continue
            if not isinstance(values, list) or not values:
                expected = "a non-empty list of values"
                if kind in SAMPLED_KINDS:
                    expected += " or a distribution such as {loguniform: [1e-5, 1e-1]}"
                self.fail(key, f"expected {expected}, got {show(values)}.")
            values = [python_value(name, value) for value in values]
            for i, value in enumerate(values):
                self.param_value(f"{key}[{i}]", cls, params, name, value)
            checked[name] = values
        return checked

    def distribution(
        self, key: str, raw: Mapping, kind: str, cls: type, params: dict, name: str
    ) -> Distribution:
        """Check ``{kind: [low, high]}``: its form, and values the estimator takes."""
        if kind not in SAMPLED_KINDS:
            self.fail(
                key,
                f"a distribution ({show(dict(raw))}) needs search.kind: random or "
                f"halving_random; kind: {kind} takes a list of values.",
            )
        if len(raw) != 1:
            self.fail(
                key,
                f"expected one distribution such as {{loguniform: [1e-5, 1e-1]}}, "
                f"got {show(dict(raw))}.",
            )
        ((dist_name, bounds),) = raw.items()
        if dist_name not in DISTRIBUTIONS:
            self.fail(
                key,
                f"unknown distribution {show(dist_name)}"
                f"{did_you_mean(dist_name, DISTRIBUTIONS)}; expected one of "
                f"{listed(DISTRIBUTIONS)}, or a list of values.",
            )
        form = DISTRIBUTIONS[dist_name]
        numbers_ok = (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds
            )
        )
        if numbers_ok and form.integer:
            numbers_ok = all(isinstance(b, int) for b in bounds)
        if numbers_ok:
            low, high = bounds
            numbers_ok = (
                bool(np.isfinite([low, high]).all())
                and low < high
                and (low > 0 or not form.positive)
            )
        if not numbers_ok:
            self.fail(
                f"{key}.{dist_name}",
                f"expected {form.expected}, got {show(bounds)}.",
            )
        distribution = Distribution(dist_name, *bounds)
        value = distribution.rv().rvs(random_state=np.random.RandomState(0))
        value = value.item() if hasattr(value, "item") else value
        estimator = cls(**{**params, name: value})
        try:
            estimator._validate_params()
        except (ValueError, TypeError) as exc:
            self.fail(
                key,
                f"{show(distribution.to_config())} draws values {name} cannot take "
                f"(drew {value!r}): {exc}",
            )
        return distribution
