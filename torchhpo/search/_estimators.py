"""Estimator forms: which search candidates the engine can train, and how.

The fused scheduler trains three forms of candidate:

* a torchhpo :class:`~torchhpo.MLPClassifier` / :class:`~torchhpo.MLPRegressor`;
* scikit-learn's own ``MLPClassifier`` / ``MLPRegressor``, translated to torchhpo's
  (same parameters) and translated back once fitted, so the user gets the class
  they passed, holding the weights the engine trained;
* a :class:`~sklearn.pipeline.Pipeline` whose final step is one of these: the earlier
  steps are fitted per fold on the CPU, the final MLP is trained by the engine.

Any other estimator has no form here and is evaluated per fit, as scikit-learn does.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass

import joblib
from sklearn.base import clone
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor
from sklearn.pipeline import Pipeline

from .._device import resolve_device
from ..engine.backends.local import single_threaded_kernels
from ..neural_network import BaseMLP, MLPClassifier, MLPRegressor

#: scikit-learn MLP class -> the torchhpo class it translates to.
TORCH_CLASS = {
    SklearnMLPClassifier: MLPClassifier,
    SklearnMLPRegressor: MLPRegressor,
}


def to_torch(estimator, device=None, dtype=None) -> BaseMLP | None:
    """Return the torchhpo MLP that trains like ``estimator``, or None.

    Parameters
    ----------
    estimator : estimator
        A torchhpo MLP (returned with the ``device`` / ``dtype`` overrides set on
        it), a scikit-learn MLP (translated), or anything else (None).
    device, dtype : optional
        The search's overrides; None keeps the estimator's own (torchhpo's
        defaults for a scikit-learn MLP).
    """
    overrides = {
        name: value
        for name, value in (("device", device), ("dtype", dtype))
        if value is not None
    }
    if isinstance(estimator, BaseMLP):
        return estimator.set_params(**overrides) if overrides else estimator
    torch_class = TORCH_CLASS.get(type(estimator))
    if torch_class is None:
        return None
    translated = torch_class.from_sklearn(
        estimator, **{"device": "auto", "dtype": "float32", **overrides}
    )
    if "_metadata_request" in vars(estimator):  # set_fit_request / set_score_request
        translated._metadata_request = copy.deepcopy(estimator._metadata_request)
    return translated


def to_user(fitted: BaseMLP, given):
    """Return ``fitted`` as an estimator of the class of ``given``."""
    return fitted if isinstance(given, BaseMLP) else fitted.to_sklearn()


@dataclass
class FusedForm:
    """A configured candidate whose MLP the engine can train.

    Attributes
    ----------
    estimator : estimator
        The configured, unfitted candidate as the user wrote it.
    mlp : BaseMLP
        The configured torchhpo MLP to train (translated if need be).
    prefix : list of (str, estimator)
        The steps before the MLP when ``estimator`` is a Pipeline, else empty.
    """

    estimator: object
    mlp: BaseMLP
    prefix: list

    @property
    def final_name(self) -> str | None:
        """Name of the MLP step in the Pipeline, None for a bare MLP."""
        return self.estimator.steps[-1][0] if self.prefix else None

    @property
    def given_mlp(self):
        """The MLP as the user configured it (torchhpo's or scikit-learn's)."""
        return self.estimator.steps[-1][1] if self.prefix else self.estimator

    def prefix_key(self) -> str | None:
        """Return a key equal for candidates whose earlier steps are configured alike.

        Candidates with equal keys share each fold's fitted earlier steps. None when
        the steps cannot be hashed (they are then fitted per candidate).
        """
        try:
            return joblib.hash(
                (self.prefix, self.estimator.memory, self.estimator.verbose)
            )
        except Exception:
            return None

    def prefix_pipeline(self) -> Pipeline:
        """Return a fresh Pipeline of the earlier steps, to fit on one fold."""
        return Pipeline(
            [
                (name, clone(step) if _is_estimator(step) else step)
                for name, step in self.prefix
            ],
            memory=self.estimator.memory,
            verbose=self.estimator.verbose,
        )

    def assemble(self, fitted_mlp: BaseMLP, fitted_prefix: list):
        """Return the fitted candidate, of the user's classes, for scoring."""
        final = to_user(fitted_mlp, self.given_mlp)
        if not self.prefix:
            return final
        pipeline = copy.copy(self.estimator)
        pipeline.steps = [*fitted_prefix, (self.final_name, final)]
        return pipeline

    def fit_params_supported(self, fit_params: dict, routing: bool) -> bool:
        """Whether the scheduler can route these fit params itself."""
        if not self.prefix:
            return set(fit_params) <= {"sample_weight"}
        if routing:
            return not fit_params
        names = {name for name, _ in self.estimator.steps}
        for key in fit_params:
            step, sep, param = key.partition("__")
            if not sep or step not in names:
                return False
            if step == self.final_name and param != "sample_weight":
                return False
        return True


def fused_form(estimator, device=None, dtype=None) -> FusedForm | None:
    """Return the form in which the engine can train ``estimator``, or None.

    Parameters
    ----------
    estimator : estimator
        A configured (``set_params``) candidate.
    device, dtype : optional
        The search's overrides for the MLP.
    """
    if type(estimator) is Pipeline:
        if getattr(estimator, "transform_input", None) is not None:
            return None
        steps = estimator.steps
        if not isinstance(steps, list) or not steps:
            return None
        final = steps[-1][1]
        mlp = to_torch(clone(final), device, dtype) if _is_estimator(final) else None
        if mlp is None:
            return None
        return FusedForm(estimator, mlp, list(steps[:-1]))
    mlp = to_torch(clone(estimator), device, dtype)
    return None if mlp is None else FusedForm(estimator, mlp, [])


def may_fuse(estimator) -> bool:
    """Whether some parameters could give ``estimator`` a fused form.

    An MLP or a Pipeline may be fused; any other estimator's parameters cannot
    turn it into one, so its candidates need not be configured ahead of the fits.
    """
    return (
        type(estimator) is Pipeline
        or isinstance(estimator, BaseMLP)
        or type(estimator) in TORCH_CLASS
    )


def _is_estimator(step) -> bool:
    return step is not None and not isinstance(step, str)


def refit(estimator, X, y, fit_params: dict, device=None, dtype=None):
    """Fit ``estimator`` on all the data through its own ``fit`` (a pack of one).

    A scikit-learn MLP (alone or ending a Pipeline) is trained as its torchhpo
    translation and returned as the class the user passed, with those weights.

    On a CPU the MLP trains on one thread, as the search's packs do: its kernels are
    small, and OpenMP teams waiting for cores that other processes hold made a
    refit 14-30x slower on a busy 2-core machine. The weights are those of a fit
    with torch's default thread count (bit for bit: torch splits these kernels
    over output elements, not over the summed axis; held by a test).

    Returns
    -------
    estimator
        The fitted estimator (a new object where a translation was needed).
    """
    form = fused_form(estimator, device, dtype)
    args = (X,) if y is None else (X, y)
    if form is None:
        # As scikit-learn: the fitted estimator is the object, whatever fit returns.
        estimator.fit(*args, **fit_params)
        return estimator
    threads = nullcontext()
    try:
        if resolve_device(form.mlp.device).type == "cpu":
            threads = single_threaded_kernels()
    except Exception:  # an invalid device: let fit raise its own error
        pass
    with threads:
        if not form.prefix:
            form.mlp.fit(*args, **fit_params)
            return to_user(form.mlp, estimator)
        name, given = estimator.steps[-1]
        estimator.steps = [*estimator.steps[:-1], (name, form.mlp)]
        estimator.fit(*args, **fit_params)
    estimator.steps = [*estimator.steps[:-1], (name, to_user(form.mlp, given))]
    return estimator
