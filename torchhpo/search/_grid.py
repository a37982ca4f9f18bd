"""GridSearchCV: scikit-learn's exhaustive search, (candidate, fold) models fused."""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV as _SklearnGridSearchCV

from ._base import BaseSearchCV
from ._options import TORCHHPO_OPTIONS


class GridSearchCV(BaseSearchCV, _SklearnGridSearchCV):
    """Exhaustive search over a parameter grid, training MLPs as fused packs.

    A drop-in for :class:`sklearn.model_selection.GridSearchCV` (and an instance of
    it): same parameters, ``cv_results_``, ``best_*`` attributes and delegated
    methods. Every (candidate, fold) model of a torchhpo or scikit-learn
    ``MLPClassifier`` / ``MLPRegressor`` (alone or as the last step of a
    :class:`~sklearn.pipeline.Pipeline`) is trained by torchhpo's engine, models of
    equal shapes together as one stacked model; any other estimator is fitted one
    by one, as scikit-learn does.

    Parameters
    ----------
    estimator : estimator object
        The estimator to tune. Given scikit-learn's MLP, ``best_estimator_`` is a
        fitted scikit-learn MLP holding the weights torchhpo trained.
    param_grid : dict or list of dict
        Parameter names (``step__param`` for Pipelines) to lists of values.
    scoring, n_jobs, refit, cv, verbose, pre_dispatch, error_score, \
return_train_score :
        As scikit-learn's. ``n_jobs`` and ``pre_dispatch`` apply to estimators
        fitted one by one; fused models train on ``device``. A model whose loss
        becomes non-finite gets ``error_score`` (or, with ``"raise"``, the
        ``ValueError`` scikit-learn's MLP raises) and a ``FitFailedWarning``; its
        pack-mates are unaffected.
    device : str, torch.device or list of them, default=None
        Device of the fused training: ``"auto"``, ``"cpu"``, ``"cuda"`` (every
        visible GPU), ``"cuda:N"``, a :class:`torch.device`, or a list of devices
        to spread the packs over (``["cuda:0", "cuda:1"]``; ``["cpu", "cpu"]``
        for two CPU workers), each with its own copy of the data; results are
        those of one device. None uses a torchhpo estimator's own ``device`` and
        ``"auto"`` (CUDA when available) for scikit-learn's MLPs. When set, it
        (the first device of several) is also set on torchhpo estimators (and
        thus on ``best_estimator_``).
    dtype : {"float32", "float64"} or torch.dtype, default=None
        Training precision; None uses a torchhpo estimator's own ``dtype``
        (``"float32"`` for scikit-learn's MLPs).
    progress : bool, default=True
        Show a ``tqdm.auto`` progress bar (terminal or notebook) over the fits.
    max_pack_size : int, default=None
        Most models trained together in one pack. None sizes packs from a memory
        estimate (on CUDA, a share of the free memory; on a CPU, a cap); a CUDA
        out-of-memory error splits a pack and retries it, without training any
        model twice or changing results.
    backend : {"local", "ray"}, default="local"
        Where packs train: worker threads on ``device``, or Ray tasks (one per
        pack, asking for a GPU when ``device`` is CUDA) on the cluster the
        process is connected to (call ``ray.init(address=...)`` first; without
        it, ``ray.init()`` is called). The data goes into Ray's object store
        once; a pack whose node dies is retried elsewhere. Needs
        ``pip install 'torchhpo[ray]'``.
    checkpoint : str or path-like, default=None
        A journal file to which each (candidate, fold) model's training result
        is appended as soon as it finishes. Rerun with the same arguments and
        path after an interruption (a kill, Ctrl-C), the search trains only the
        models the journal lacks and gives the ``cv_results_`` of an
        uninterrupted run; a finished search trains nothing. A journal written
        for other data, another estimator, space or CV is refused with an
        error. The file is kept after success. Models of estimators evaluated
        one by one (not fused) are not journaled.

    Attributes
    ----------
    cv_results_ : dict of numpy (masked) ndarrays
        As scikit-learn's, same keys, order and dtypes. ``mean_fit_time`` /
        ``std_fit_time`` are computed from each fused model's share of its pack's
        training time (plus its share of fitting the Pipeline's earlier steps);
        ``score_time`` is measured per model, as scikit-learn does.
    best_estimator_, best_score_, best_params_, best_index_, scorer_, n_splits_, \
refit_time_, multimetric_, classes_, n_features_in_, feature_names_in_ :
        As scikit-learn's. ``best_estimator_`` is refitted on the whole data by the
        estimator's own ``fit`` (an engine pack of one) and is of the class passed.

    See Also
    --------
    RandomizedSearchCV : Search over sampled parameter settings.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from torchhpo import GridSearchCV, MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> search = GridSearchCV(
    ...     MLPClassifier(max_iter=20, random_state=0),
    ...     {"hidden_layer_sizes": [(50, 50), (100,)], "solver": ["adam", "sgd"]},
    ...     cv=3,
    ... ).fit(X / 16, y)  # doctest: +SKIP
    >>> search.best_params_  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        **_SklearnGridSearchCV._parameter_constraints,
        **TORCHHPO_OPTIONS,
    }

    def __init__(
        self,
        estimator,
        param_grid,
        *,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        error_score=np.nan,
        return_train_score=False,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        progress: bool = True,
        max_pack_size: int | None = None,
        backend: str = "local",
        checkpoint: str | os.PathLike | None = None,
    ):
        super().__init__(
            estimator=estimator,
            param_grid=param_grid,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            pre_dispatch=pre_dispatch,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.device = device
        self.dtype = dtype
        self.progress = progress
        self.max_pack_size = max_pack_size
        self.backend = backend
        self.checkpoint = checkpoint
