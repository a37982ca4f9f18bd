"""Every private scikit-learn name torchhpo uses, in one place.

torchhpo lives on scikit-learn's internals: its searches subclass scikit-learn's,
score through ``_fit_and_score`` and copy ``BaseSearchCV.fit``
(:mod:`~torchhpo.search._sklearn_fit`); its MLPs reuse scikit-learn's parameter
constraints and optimizer objects. Private names may change in any scikit-learn
release, so no other module imports one (``tests/test_sklearn_compat.py`` checks
it): supporting a new scikit-learn release means reading this file and
:data:`GUARDED_SOURCES`, whose recorded digests the same test compares with the
installed scikit-learn's source. Run ``python -m torchhpo._sklearn_compat`` to
print the installed version's digests.

The pin ``scikit-learn>=1.9,<1.10`` in ``pyproject.toml`` is the decision this
module stands for.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import textwrap
from collections.abc import Callable, Mapping

# Validates an estimator's parameters at ``fit`` from ``_parameter_constraints``
# (the searches' and MLPs' ``fit`` / ``partial_fit``).
from sklearn.base import _fit_context

# Scorer internals: which metric a scorer computes, read by the batched metrics
# (``_Scorer._score_func`` / ``_kwargs`` / ``_response_method``); ``scoring=None``'s
# scorer; the dict of scorers a multi-metric search holds (``_scorers``).
from sklearn.metrics._scorer import _MultimetricScorer, _PassthroughScorer, _Scorer

# The base class whose ``fit`` torchhpo's searches replace (and whose
# ``_format_results``, ``_select_best_index``, ``_get_scorers`` ... they inherit).
from sklearn.model_selection._search import BaseSearchCV as SklearnBaseSearchCV

# The halving searches torchhpo's subclass (public only behind the experimental
# ``enable_halving_search_cv`` import, which torchhpo does not require).
from sklearn.model_selection._search_successive_halving import (
    HalvingGridSearchCV as SklearnHalvingGridSearchCV,
)
from sklearn.model_selection._search_successive_halving import (
    HalvingRandomSearchCV as SklearnHalvingRandomSearchCV,
)

# Scoring one trained model, with scikit-learn's own error handling and result
# dict (``_replay``, the scheduler's non-MLP fallback); what the search's ``fit``
# does with failed fits and a callable scorer's error scores.
from sklearn.model_selection._validation import (
    _fit_and_score,
    _insert_error_scores,
    _warn_or_raise_about_fit_failures,
)

# The MLP base whose ``_parameter_constraints`` torchhpo's MLPs share; the
# optimizer objects ``to_sklearn`` hands back with their moments.
from sklearn.neural_network._multilayer_perceptron import BaseMultilayerPerceptron
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

# Indexing rows of arrays, DataFrames and lists alike (folds, sample indices).
from sklearn.utils import _safe_indexing

# Parameter constraint types for ``_parameter_constraints``, and the check the
# command line's config runs against a search's own constraints.
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    RealNotInt,
    StrOptions,
    validate_parameter_constraints,
)

# Whether metadata routing is on (how ``sample_weight`` reaches fit and scorers).
from sklearn.utils.metadata_routing import _routing_enabled

# A fold's (X, y) as scikit-learn cuts it (pairwise estimators included).
from sklearn.utils.metaestimators import _safe_split

# ``classes`` on the first ``partial_fit`` call.
from sklearn.utils.multiclass import _check_partial_fit_first_call

# Splitting fit params along with X; ``sample_weight`` checks; the row count of
# any array-like.
from sklearn.utils.validation import (
    _check_method_params,
    _check_sample_weight,
    _num_samples,
)

__all__ = [
    "GUARDED_SOURCES",
    "AdamOptimizer",
    "BaseMultilayerPerceptron",
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "RealNotInt",
    "SGDOptimizer",
    "SklearnBaseSearchCV",
    "SklearnHalvingGridSearchCV",
    "SklearnHalvingRandomSearchCV",
    "StrOptions",
    "_MultimetricScorer",
    "_PassthroughScorer",
    "_Scorer",
    "_check_method_params",
    "_check_partial_fit_first_call",
    "_check_sample_weight",
    "_fit_and_score",
    "_fit_context",
    "_insert_error_scores",
    "_num_samples",
    "_routing_enabled",
    "_safe_indexing",
    "_safe_split",
    "_warn_or_raise_about_fit_failures",
    "changed_sources",
    "source_digest",
    "validate_parameter_constraints",
]

_MLP = "sklearn.neural_network._multilayer_perceptron.BaseMultilayerPerceptron"

#: scikit-learn functions torchhpo copied or depends on by shape: dotted name ->
#: (digest of scikit-learn 1.9.1's normalised source, why it is guarded). A changed
#: digest means a scikit-learn release changed code torchhpo reproduces or whose
#: inputs/outputs it builds by hand: read the diff, carry it over, then record the
#: new digest.
GUARDED_SOURCES: dict[str, tuple[str, str]] = {
    "sklearn.model_selection._search.BaseSearchCV.fit": (
        "0f764516f553b025",
        "copied into torchhpo.search._sklearn_fit",
    ),
    "sklearn.model_selection._search_successive_halving.BaseSuccessiveHalving.fit": (
        "d3a6748c0835bba4",
        "reproduced by torchhpo.search._halving._FusedHalving.fit",
    ),
    "sklearn.model_selection._search.BaseSearchCV._format_results": (
        "42ac475a4214cb95",
        "reads the _fit_and_score dicts torchhpo's device scoring writes by hand",
    ),
    "sklearn.model_selection._validation._fit_and_score": (
        "85968acc2ae9ff7c",
        "its result dict is written by hand by torchhpo.search._device_scoring",
    ),
    "sklearn.model_selection._validation._warn_or_raise_about_fit_failures": (
        "cbdd10b2ed23a194",
        "called with torchhpo's result dicts",
    ),
    "sklearn.model_selection._validation._insert_error_scores": (
        "8b6b2472ff051601",
        "called with torchhpo's result dicts",
    ),
    "sklearn.metrics._scorer._Scorer.__init__": (
        "056366d3ca4182bb",
        "torchhpo.metrics reads _score_func, _sign, _kwargs, _response_method",
    ),
    "sklearn.metrics._scorer._MultimetricScorer.__init__": (
        "f0a2767c32f42f91",
        "the searches read _scorers",
    ),
    f"{_MLP}._initialize": (
        "fefda313d0f00ccb",
        "the engine's output activation and initialisation reproduce it",
    ),
    f"{_MLP}._backprop": (
        "e1fdd220701fb8c7",
        "torchhpo.engine.functional reproduces the regularised loss's gradients",
    ),
    f"{_MLP}._fit_stochastic": (
        "9d6e83966402a4cc",
        "the engine's epoch loop, early stopping and learning-rate rules",
    ),
    f"{_MLP}._fit_lbfgs": (
        "af34a5557649b4c5",
        "torchhpo.engine.lbfgs reproduces it",
    ),
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer.__init__": (
        "478bbcf1bb1666db",
        "to_sklearn sets its ms, vs and t",
    ),
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer.__init__": (
        "1f456e45779332be",
        "to_sklearn sets its velocities",
    ),
}


def resolve(dotted: str) -> Callable:
    """Return the scikit-learn function a dotted name (module.Class.method) names.

    Parameters
    ----------
    dotted : str
        ``package.module.function`` or ``package.module.Class.method``.

    Returns
    -------
    callable
        The function.
    """
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"cannot import any module of {dotted!r}")


def source_digest(source: str) -> str:
    """Return a digest of Python source that ignores formatting, comments, docstrings.

    Parameters
    ----------
    source : str
        The source of one function (indented or not), as ``inspect.getsource``
        returns it.

    Returns
    -------
    str
        16 hex digits of the SHA-256 of the syntax tree without docstrings.
    """
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def changed_sources(
    guarded: Mapping[str, tuple[str, str]] = GUARDED_SOURCES,
    source_of: Callable[[str], str] | None = None,
) -> list[str]:
    """Return a line per guarded function whose source no longer has its digest.

    Parameters
    ----------
    guarded : mapping, default=GUARDED_SOURCES
        Dotted name -> (recorded digest, why it is guarded).
    source_of : callable, default=None
        Returns a dotted name's source; None reads the installed scikit-learn's
        with ``inspect.getsource``.

    Returns
    -------
    list of str
        ``"<name> (<why>): recorded <digest>, now <digest>"``; empty when nothing
        changed.
    """
    if source_of is None:

        def source_of(name: str) -> str:
            return inspect.getsource(resolve(name))

    changed = []
    for name, (recorded, why) in guarded.items():
        now = source_digest(source_of(name))
        if now != recorded:
            changed.append(f"{name} ({why}): recorded {recorded}, now {now}")
    return changed


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    for name in GUARDED_SOURCES:
        print(f"{source_digest(inspect.getsource(resolve(name)))}  {name}")
