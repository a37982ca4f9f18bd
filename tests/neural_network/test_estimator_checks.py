"""scikit-learn's own estimator checks, run on torchhpo's MLPs.

The instances mirror scikit-learn's common tests for its MLPs
(``sklearn/utils/_test_common/instance_generator.py``): ``max_iter=100`` for every
check, and for ``check_sample_weight_equivalence_on_dense_data`` the per-check
parameters scikit-learn itself uses (an ``lbfgs`` classifier, an ``sgd`` regressor
with ``tol=1e-2``). ``parametrize_with_checks`` applies such per-check parameters
only to scikit-learn's own estimators, so :func:`_instances_for_check` does it here.
"""

from __future__ import annotations

import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from torchhpo import MLPClassifier, MLPRegressor

ESTIMATORS = [
    MLPClassifier(max_iter=100, device="cpu"),
    MLPRegressor(max_iter=100, device="cpu"),
]

#: scikit-learn's PER_ESTIMATOR_CHECK_PARAMS for its MLPs, trained in float64.
#: The sample-weight equivalence checks compare predictions at rtol=1e-7, which is
#: float32's own resolution (scikit-learn's MLPClassifier fitted on float32 data
#: misses the dense check by 1e-4); the SPEC's ``dtype="float64"`` is for such
#: exactness checks. The sparse variant has no parameters in scikit-learn, whose
#: MLPs always train in the float64 of the check's data.
PER_CHECK_PARAMS = {
    MLPClassifier: {
        "check_sample_weight_equivalence_on_dense_data": [
            dict(solver="lbfgs", dtype="float64"),
        ],
        "check_sample_weight_equivalence_on_sparse_data": [dict(dtype="float64")],
    },
    MLPRegressor: {
        "check_sample_weight_equivalence_on_dense_data": [
            dict(solver="sgd", tol=1e-2, random_state=42, dtype="float64"),
        ],
        "check_sample_weight_equivalence_on_sparse_data": [dict(dtype="float64")],
    },
}


def _check_name(check) -> str:
    return getattr(check, "__name__", None) or check.func.__name__


def _instances_for_check(check, estimator):
    """Yield the estimators a check runs on (scikit-learn's per-check parameters).

    Parameters
    ----------
    check : callable
        One of scikit-learn's checks (possibly a ``functools.partial``).
    estimator : BaseMLP
        The instance ``parametrize_with_checks`` generated the check for.

    Yields
    ------
    BaseMLP
        ``estimator`` itself, or a clone per parameter set scikit-learn uses for
        this check.
    """
    params = PER_CHECK_PARAMS.get(type(estimator), {}).get(_check_name(check))
    if params is None:
        yield estimator
        return
    for extra in params:
        yield clone(estimator).set_params(**extra)


@pytest.mark.slow
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    for instance in _instances_for_check(check, estimator):
        check(instance)
