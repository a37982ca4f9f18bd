"""A pack's step at one layout: its tensors, and the arithmetic every runner shares."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from .. import functional as F
from ..activations import HIDDEN
from ..optimizers import OptimizerHyper, adam_rates

logger = logging.getLogger("torchhpo.engine")


#: In-place activation derivatives: (activated output, delta) -> delta updated.
DERIVATIVES_ = {name: a.derivative_ for name, a in HIDDEN.items()}


def _softmax_over_classes_(z: torch.Tensor) -> None:
    # scikit-learn's softmax (shift by the row maximum), over dim 1 of (M, K, B).
    z.sub_(z.amax(dim=1, keepdim=True)).exp_()
    z.div_(z.sum(dim=1, keepdim=True))


#: The hidden activations' codes in the C epilogues (``kernels.c``).
_ACTIVATION_CODES = {name: a.c_code for name, a in HIDDEN.items()}
#: Forward activations the C epilogue leaves to ATen's vectorised kernels.
_ATEN_FORWARD = (F.HIDDEN_ACTIVATIONS["tanh"], F.HIDDEN_ACTIVATIONS["logistic"])

#: The per-step arguments of :meth:`NativeSteps._native_step`, as ``(source, byte
#: offset)`` slots of :meth:`NativeSteps._epoch_inputs`.
_STEP_SLOTS = tuple(
    (name, 0)
    for name in ("idx", "w", "w_scaled", "pad", "loss", "alpha", "lr", "squares")
)

#: The losses of the C output pass (``output_pass`` in ``kernels.c``), by
#: (loss, output activation); softmax log-loss has passes of its own.
_OUTPUT_KINDS = {
    ("squared_error", "identity"): 0,
    ("log_loss", "logistic"): 1,
    ("poisson", "exp"): 2,
}

#: Output activations in place on transposed outputs ``(M, K, B)``.
OUTPUT_ACTIVATIONS_T = {**F.OUTPUT_ACTIVATIONS, "softmax": _softmax_over_classes_}


def _address_and_stride(t: torch.Tensor | None) -> tuple[int, int]:
    """A tensor's address and model stride for the kernels; (0, 0) for none."""
    return (0, 0) if t is None else (t.data_ptr(), t.stride(0))


def sum_over_steps(losses: torch.Tensor) -> torch.Tensor:
    """Each model's sum of its ``(S, M)`` step losses, added in step order.

    ``sum(dim=0)`` vectorises differently for one model than for many (a
    contiguous run against a column reduction), so the last bit of a model's
    loss would depend on its pack's size; a scan adds in one fixed order.
    """
    return torch.cumsum(losses, dim=0)[-1]


class StepLayout:
    """A pack's tensors at one layout, and the arithmetic every runner shares.

    Parameters
    ----------
    X, Y : Tensor
        Inputs with a column of ones (:meth:`DeviceData.augmented_X`) and targets.
    loss, out_activation : str
        The pack's loss and output activation.
    params, first, second : sequence of Tensor
        Per-layer blocks ``(M, fan_in + 1, fan_out)`` of the parameters and the
        optimizer moments (``second`` unused by SGD-only packs).
    opt : OptimizerHyper
        Per-model optimizer hyper-parameters and counters.
    alpha : Tensor of shape (M, 1, 1)
        L2 penalties.
    act_runs, opt_runs : sequence of (start, stop, label)
        Runs of models sharing a hidden activation / an optimizer kind.
    batch : int
        Rows per step.
    inactive : dict of int to Tensor
        For the steps some models do not take (their epochs have fewer steps): the
        slots whose parameters and optimizer state the step must leave unchanged.
        The ATen step reads only the keys (the steps where a model may skip) and
        takes which models skip from ``count`` on the device: a slot pack lists
        every step, and a masked slot (zero counts) is then frozen.
    masked_steps : set of int, optional
        Steps with zero-weight rows (padding), whose output deltas are masked so
        that an overflowing output there cannot leak; ``None``: every step.
    """

    def __init__(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        loss: str,
        out_activation: str,
        params: Sequence[torch.Tensor],
        first: Sequence[torch.Tensor],
        second: Sequence[torch.Tensor],
        opt: OptimizerHyper,
        alpha: torch.Tensor,
        act_runs: Sequence[F.Run],
        opt_runs: Sequence[tuple[int, int, str]],
        batch: int,
        inactive: dict[int, torch.Tensor],
        masked_steps: set[int] | None = None,
    ) -> None:
        self.X, self.Y = X, Y
        self.loss, self.out_activation = loss, out_activation
        self.blocks = list(params)
        self.first, self.second = list(first), list(second)
        self.opt, self.alpha = opt, alpha
        self.act_runs, self.opt_runs = list(act_runs), list(opt_runs)
        self.batch = batch
        self.inactive = inactive
        self.masked_steps = masked_steps

        self.n_models = params[0].shape[0]
        self.dtype, self.device = params[0].dtype, params[0].device
        #: ``[n_features, *hidden, n_outputs]``.
        self.units = [p.shape[1] - 1 for p in params] + [params[-1].shape[2]]
        self.eps = torch.finfo(self.dtype).eps
        self.fast_loss = loss == "log_loss" and out_activation == "softmax"
        self.has_adam = any(kind == "adam" for _, _, kind in self.opt_runs)
        self._offsets: torch.Tensor | None = None

    def replace(self, **changes) -> StepLayout:
        """Return a layout of these tensors with ``changes`` (``__init__``'s names)."""
        fields = {
            "X": self.X, "Y": self.Y, "loss": self.loss,
            "out_activation": self.out_activation, "params": self.blocks,
            "first": self.first, "second": self.second, "opt": self.opt,
            "alpha": self.alpha, "act_runs": self.act_runs,
            "opt_runs": self.opt_runs, "batch": self.batch,
            "inactive": self.inactive, "masked_steps": self.masked_steps,
        }  # fmt: skip
        return StepLayout(**{**fields, **changes})

    def on(self, device: torch.device | str) -> StepLayout:
        """Return this layout on copies of its tensors on ``device``."""

        def to(t):
            return t.to(device)

        fields = self.opt.__dataclass_fields__
        return self.replace(
            X=to(self.X),
            Y=to(self.Y),
            params=[to(t) for t in self.blocks],
            first=[to(t) for t in self.first],
            second=[to(t) for t in self.second],
            opt=OptimizerHyper(*(to(getattr(self.opt, f)) for f in fields)),
            alpha=to(self.alpha),
            inactive={s: to(i) for s, i in self.inactive.items()},
        )

    def adam_step_sizes(self, n_steps: int) -> torch.Tensor | None:
        """Adam's ``lr_t`` for the next ``n_steps`` steps, ``(n_steps, M, 1, 1)``.

        A model takes the steps of an epoch in order (the ones it skips come last,
        see ``inactive``), so at step ``s`` its counter is its current one + s + 1.
        """
        if not self.has_adam:
            return None
        if self._offsets is None or len(self._offsets) < n_steps:
            self._offsets = torch.arange(
                1, n_steps + 1, dtype=torch.float64, device=self.opt.step.device
            ).view(-1, 1)
        steps = self.opt.step + self._offsets[:n_steps]
        rates = adam_rates(self.opt, steps).to(self.dtype)
        return rates.view(n_steps, -1, 1, 1)

    def epoch_loss(self, data_loss, squares, denom, count) -> torch.Tensor:
        """Each step's loss contribution ``(S, M)`` from its data and weight sums.

        ``data_loss`` holds the data-loss sums (softmax log-loss: the unscaled
        ``sum of y log p w``) and ``squares`` the squared coefficient sums; both
        are overwritten.
        """
        if self.fast_loss:
            data_loss = data_loss.neg_().div_(denom)  # -(sum of y log p w) / denom
        # alpha / 2 read now: the pack may write alpha in place between epochs.
        penalty = squares.mul_(self.alpha.view(-1)).mul_(0.5).div_(denom)
        return data_loss.add_(penalty).mul_(count)


_precision_lock = threading.Lock()
_precision_users = 0
_precision_saved = "highest"


@contextmanager
def pinned_matmul_precision() -> Iterator[None]:
    """Run the block with float32 matmuls in full precision (no TF32), then restore.

    A user's ``torch.set_float32_matmul_precision("high")`` would otherwise change
    a pack's results (TF32 on CUDA). Nested and concurrent blocks (worker
    threads) share one pin; the last to leave restores the user's setting.
    """
    global _precision_users, _precision_saved
    with _precision_lock:
        if _precision_users == 0:
            _precision_saved = torch.get_float32_matmul_precision()
            if _precision_saved != "highest":
                torch.set_float32_matmul_precision("highest")
        _precision_users += 1
    try:
        yield
    finally:
        with _precision_lock:
            _precision_users -= 1
            if _precision_users == 0 and _precision_saved != "highest":
                torch.set_float32_matmul_precision(_precision_saved)


def _block_views(flat: torch.Tensor, shapes: Sequence[tuple[int, int]]):
    """Per-layer ``(M, rows, cols)`` views of a model-major ``(M, P)`` buffer."""
    views, start = [], 0
    for rows, cols in shapes:
        views.append(flat[:, start : start + rows * cols].view(-1, rows, cols))
        start += rows * cols
    return views


#: Inputs and targets side by side, ``(N, n_features + 1 + K)``, per (X, Y) pair.
_joined: dict[tuple[int, int], tuple] = {}
_joined_lock = threading.Lock()


def _inputs_and_targets(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``[X | Y^T]``, made once per data (one gather then reads a batch's rows)."""
    key = (id(X), id(Y))
    with _joined_lock:  # packs are built in worker threads
        entry = _joined.get(key)
        if entry is not None and entry[0]() is X and entry[1]() is Y:
            return entry[2]
        joined = torch.cat([X, Y.t().to(X.dtype)], dim=1)
        for stale in [k for k, (x, y, _) in _joined.items() if x() is None]:
            del _joined[stale]
        _joined[key] = (weakref.ref(X), weakref.ref(Y), joined)
        return joined
