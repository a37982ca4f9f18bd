"""Score engine-trained models through scikit-learn's own ``_fit_and_score``.

Once the engine has trained a (candidate, fold) model, the model is handed to
scikit-learn's ``_fit_and_score`` with its ``fit`` replaced by a replay of that
training (a no-op, or raising the error training ended with). Splitting, scoring
(every scoring form, ``score_params``), ``error_score`` handling, fit-error
tracebacks and ``verbose`` messages are therefore scikit-learn's, unchanged.
The measured (near-zero) fit time is replaced by the model's share of its pack's
training time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._sklearn_compat import _fit_and_score


@contextmanager
def _replayed(estimator, error: BaseException | None) -> Iterator[None]:
    """Make ``estimator.fit`` replay a finished training, and freeze its params."""

    def fit(*args, **kwargs):
        if error is not None:
            raise error.with_traceback(error.__traceback__)
        return estimator

    def set_params(**params):
        return estimator

    vars(estimator).update(fit=fit, set_params=set_params)
    try:
        yield
    finally:
        del estimator.fit, estimator.set_params


def replay_fit_and_score(
    estimator,
    X,
    y,
    *,
    train,
    test,
    parameters: dict,
    fit_time: float,
    error: BaseException | None = None,
    **fit_and_score_kwargs,
) -> dict:
    """Return ``_fit_and_score``'s result for an already trained model.

    Parameters
    ----------
    estimator : estimator
        The fitted model (or, with ``error``, any estimator).
    X, y, train, test, parameters
        As ``_fit_and_score``; ``parameters`` only show in ``verbose`` messages.
    fit_time : float
        Seconds to report as the fit time.
    error : exception, optional
        What training raised; handled as a failed fit.
    **fit_and_score_kwargs
        The search's other ``_fit_and_score`` arguments.
    """
    error_tb = None if error is None else error.__traceback__
    with _replayed(estimator, error):
        result = _fit_and_score(
            estimator,
            X,
            y,
            train=train,
            test=test,
            parameters=parameters,
            **fit_and_score_kwargs,
        )
    if error is not None:
        error.__traceback__ = error_tb
    result["fit_time"] = fit_time
    return result
