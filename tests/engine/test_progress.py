"""Progress in model-epochs: reported while packs train, adding up to the sum of
the tasks' ``max_iter`` on every backend path (one process, threads, forked
workers), with early stopping, lbfgs and an out-of-memory split."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, train_models
from torchhpo.engine.backends.forked import fork_usable
from torchhpo.engine.backends.local import LocalBackend
from torchhpo.engine.jobs import epoch_budget


@pytest.fixture(scope="module")
def problem():
    X, y = load_digits(return_X_y=True)
    X, y = X[:240] / 16.0, y[:240]
    data = DeviceData.from_numpy(
        X, np.eye(10)[y], target_kind="multiclass", loss="log_loss"
    )
    folds = [train for train, _ in StratifiedKFold(3).split(X, y)]
    tasks = [
        ModelTask(
            Hyperparams(
                hidden_layer_sizes=(8,),
                solver=solver,
                max_iter=max_iter,
                tol=tol,
                n_iter_no_change=2,
            ),
            fold,
            seed=i,
        )
        for i, (solver, max_iter, tol) in enumerate(
            [("adam", 12, 1e-4), ("sgd", 9, 10.0), ("adam", 15, 10.0)]  # 2 stop early
        )
        for fold in folds
    ]
    return data, tasks


def _train(data, tasks, **options):
    events = []
    results = train_models(
        data,
        tasks,
        on_epochs=lambda n: events.append(("epochs", n)),
        on_finished=lambda n: events.append(("finished", n)),
        **options,
    )
    return results, events


def _total(events, kind):
    return sum(n for k, n in events if k == kind)


@pytest.mark.parametrize(
    "options",
    [
        {"n_workers": 1},
        {"n_workers": 2, "max_pack_size": 2, "backend": LocalBackend(processes=False)},
        pytest.param(
            {"n_workers": 2, "max_pack_size": 2},
            marks=pytest.mark.skipif(
                not fork_usable([torch.device("cpu")]), reason="needs Linux fork"
            ),
        ),
    ],
    ids=["one-process", "threads", "forked"],
)
def test_epochs_add_up_to_the_budget(problem, options):
    data, tasks = problem
    results, events = _train(data, tasks, **options)
    assert any(r.n_iter < t.hyper.max_iter for r, t in zip(results, tasks, strict=True))
    assert _total(events, "epochs") == sum(t.hyper.max_iter for t in tasks)
    assert _total(events, "finished") == len(tasks)


def test_the_bar_moves_before_any_model_finishes(problem):
    data, tasks = problem
    _, events = _train(data, tasks, n_workers=1, max_pack_size=len(tasks))
    first_finish = next(i for i, (k, _) in enumerate(events) if k == "finished")
    before = _total(events[:first_finish], "epochs")
    assert before >= 2 * len(tasks)  # at least two epochs of the whole pack


def test_lbfgs_and_partial_fit_budgets(problem):
    data, tasks = problem
    lbfgs = ModelTask(
        Hyperparams(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=7),
        tasks[0].train_index,
    )
    _, events = _train(data, [lbfgs], n_workers=1)
    assert _total(events, "epochs") == 7
    assert (
        epoch_budget(ModelTask(tasks[0].hyper, tasks[0].train_index, incremental=True))
        == 1
    )


def test_an_out_of_memory_split_takes_back_the_retried_epochs(problem):
    data, tasks = problem
    state = {"raised": False}

    def hook(device, n_models, epoch):
        if epoch == 3 and n_models > 1 and not state["raised"]:
            state["raised"] = True
            raise torch.OutOfMemoryError("out of memory (injected)")

    _, events = _train(
        data, tasks, n_workers=1, max_pack_size=len(tasks), pack_hook=hook
    )
    assert state["raised"]
    assert any(k == "epochs" and n < 0 for k, n in events)
    assert _total(events, "epochs") == sum(t.hyper.max_iter for t in tasks)
