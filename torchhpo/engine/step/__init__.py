"""A pack's training step: one layout, three runners, chosen in one place.

The math is :mod:`~torchhpo.engine.functional`'s (scikit-learn's ``_backprop``) and
:mod:`~torchhpo.engine.optimizers`'s; this module decides where it runs. One
concept per class:

:class:`StepLayout`
    The pack's tensors at one layout (parameters, moments, hyper-parameters,
    activation and optimizer runs, uneven steps) and the arithmetic shared by
    every runner: Adam's per-step rates and the epoch's loss terms.
:class:`AtenStep`
    The step as ATen operations: the path CUDA runs (and CPUs without the C
    kernels). Written for few kernel launches, since on a GPU their latency, not
    their arithmetic, sets the time (see below).
:class:`NativeSteps`
    The CPU step with the fused C kernels of :mod:`~torchhpo.engine.native`, one
    C call per phase (batch gather, hidden epilogues, softmax output, each
    layer's L2 term with the whole Adam or SGD update), called from Python with
    per-step addresses.
:class:`EpochProgram`
    The same C calls recorded once per layout as a
    :class:`~torchhpo.engine.native.program.StepProgram`, where torch carries
    MKL: an epoch is one ``run_epoch`` call, no Python between its steps.
:class:`FusedStep`
    What a pack builds: it chooses the runner (:func:`choose_runner`) and
    forwards :meth:`FusedStep.run` (an epoch) and :meth:`FusedStep.step` (one
    step) to it.

The ATen step's layout, for launches:

* The runner keeps the pack's parameters and moments in one model-major buffer
  ``(M, 3 P)`` (``P`` parameters a model, every layer's augmented block
  ``(fan_in + 1, fan_out)`` in a row), copied in from the pack's blocks at the
  start of an epoch (one ``cat``) and back at its end (one
  ``split_with_sizes_copy``). Each optimizer run then updates every layer of its
  models in one pass per formula term, the L2 term and the squared weight sums
  take one pass each for all layers, and models that skip a step are restored
  with one ``where`` over the buffer.
* The gathered inputs carry a column of ones, so the first layer's forward
  ``bmm`` includes the intercepts and its gradient ``bmm`` yields the intercept
  gradients; the later layers' intercepts come with a ``baddbmm``.
* The softmax is ATen's one kernel; the log-loss is a clamp, a log and one
  ``bmm`` against the weighted targets.
* Per-epoch work is done once per epoch for all steps, vectorised: the weight
  scaling (``w / weight sum`` applied to the output delta, ``alpha / weight
  sum`` to the L2 term), Adam's step sizes and counters (which models take a
  step is read from the epoch's row counts, on the device), SGD's ``-lr`` and
  the loss arithmetic.

Counted with :mod:`~torchhpo.engine.instruments` on the seed grid's ``(100,)``
pack (digits, 20 models, relu and tanh, Adam and SGD): 66 launches a step before
this layout, 39 after; ``(50, 50)``: 96 before, 50 after (four activation runs:
the pack orders models by solver, then activation; each run is one pass a layer).

Everything a runner reads is fixed at construction or written in place by the
pack between epochs, so one CUDA graph of an epoch stays valid for the
runner's life (:mod:`~torchhpo.engine.cuda_graphs` says what the pack must do).
"""

from __future__ import annotations

import torch

from .. import instruments, native
from ..native.program import NotExpressible
from .aten import AtenStep
from .layout import (
    _OUTPUT_KINDS,
    StepLayout,
    logger,
    pinned_matmul_precision,
    sum_over_steps,
)
from .native_steps import NativeSteps, StepWorkspace
from .program import EpochProgram

__all__ = [
    "AtenStep",
    "EpochProgram",
    "FusedStep",
    "NativeSteps",
    "StepLayout",
    "StepWorkspace",
    "choose_runner",
    "pinned_matmul_precision",
    "sum_over_steps",
]


def choose_runner(layout: StepLayout) -> AtenStep | NativeSteps | EpochProgram:
    """Return the runner of ``layout``'s steps: the one place that chooses.

    The recorded epoch program where the C kernels built with MKL and the loss
    has a C output pass; else the per-step C calls where the kernels built (on
    the CPU, for the pack's dtype, unless ``TORCHHPO_NATIVE=0``) and the pack's
    tensors are contiguous; else ATen.
    """
    kernels = native.kernels(layout.dtype, layout.X.device)
    if kernels is None or not NativeSteps.supports(layout):
        return AtenStep(layout)
    output = (layout.loss, layout.out_activation)
    if kernels.mkl is not None and (layout.fast_loss or output in _OUTPUT_KINDS):
        try:
            return EpochProgram(layout, kernels)
        except NotExpressible as reason:
            logger.debug("the step runs from Python: %s", reason)
    return NativeSteps(layout, kernels)


class FusedStep:
    """The training step of one pack at one layout (fixed tensors and shapes).

    Everything the step touches is fixed at construction: the tensors it reads
    and writes, their views and the workspace, so a step does no Python work per
    model and no slicing. Epoch constants (padding masks, 1 / weight sums,
    Adam's step sizes) are computed once per epoch. The runner (ATen, the C
    kernels step by step, or the recorded epoch program) is chosen once, by
    :func:`choose_runner`.

    Parameters
    ----------
    layout : StepLayout
        The pack's tensors at this layout.
    aten : bool, default=False
        Run the ATen step whatever the device (the path CUDA runs), which takes
        which models skip a step from ``count`` on the device.
    """

    def __init__(self, layout: StepLayout, *, aten: bool = False) -> None:
        self.layout = layout
        # The ATen step reads which models skip a step from `count` on the
        # device (blocks of epochs: a stopped model's counts are zero).
        self.runner = AtenStep(self.layout) if aten else choose_runner(self.layout)

    @property
    def native(self) -> native.Kernels | None:
        """The fused CPU kernels the step runs on; None where ATen runs it."""
        return getattr(self.runner, "native", None)

    @property
    def _program(self):
        """The recorded epoch program, or None where the step runs from Python."""
        return getattr(self.runner, "_program", None)

    def on(self, device: torch.device | str) -> FusedStep:
        """Return this step built on copies of its tensors on ``device``.

        For checks: on ``meta`` tensors an epoch runs without data, so any host
        read or data-dependent shape in it raises.
        """
        return FusedStep(self.layout.on(device))

    def adam_step_sizes(self, n_steps: int) -> torch.Tensor | None:
        """Adam's ``lr_t`` for the next ``n_steps`` steps (see :class:`StepLayout`)."""
        return self.layout.adam_step_sizes(n_steps)

    def run(
        self,
        idx: torch.Tensor,
        weight: torch.Tensor,
        denom: torch.Tensor,
        count: torch.Tensor,
        loss_acc: torch.Tensor,
    ) -> None:
        """Run every step of an epoch, adding each model's loss to ``loss_acc``.

        Parameters
        ----------
        idx : Tensor of int64, shape (S, M, B)
            Row indices of each step's batches.
        weight : Tensor of shape (S, M, B)
            Sample weights, zero on padding rows.
        denom : Tensor of shape (S, M)
            Weight sums (1 where a model takes no step).
        count : Tensor of shape (S, M)
            Real rows per step and model (loss accumulation weights); a model
            with no rows in a step does not take it.
        loss_acc : Tensor of shape (M,)
            Accumulator, updated in place.
        """
        with pinned_matmul_precision(), instruments.section("step"):
            self.runner.run(idx, weight, denom, count, loss_acc)
        instruments.record_steps(idx.shape[0])

    def step(
        self,
        idx: torch.Tensor,
        w3: torch.Tensor,
        w_scaled: torch.Tensor,
        alpha_scaled: torch.Tensor,
        pad: torch.Tensor | None,
        denom: torch.Tensor,
        count: torch.Tensor,
        loss_acc: torch.Tensor,
        step_index: int,
        rates: torch.Tensor | None = None,
    ) -> None:
        """Run one step: forward, loss, backward and the optimizer updates.

        Parameters
        ----------
        idx : Tensor of int64, shape (M, B)
        w3 : Tensor of shape (M, 1, B)
            Sample weights, zero on padding rows.
        w_scaled, alpha_scaled : Tensor of shape (M, 1, B) and (M, 1, 1)
            ``w3 / denom`` and ``alpha / denom``: the gradient's scaling, applied
            to the output delta and the penalty term instead of to the gradients
            (one pass fewer over them).
        pad : Tensor of bool, shape (M, 1, B), or None
            Padding rows, whose output deltas are zeroed; ``None``: there are none.
        denom : Tensor of shape (M,)
        count : Tensor of shape (M,)
        loss_acc : Tensor of shape (M,)
        step_index : int
            Position of the step in the epoch.
        rates : Tensor of shape (M, 1, 1), optional
            Adam's ``lr_t`` for this step (:meth:`adam_step_sizes`); computed here
            when not given.
        """
        with pinned_matmul_precision(), instruments.section("step"):
            self.runner.step(
                idx, w3, w_scaled, alpha_scaled, pad, denom, count, loss_acc,
                step_index, rates,
            )  # fmt: skip
        instruments.record_steps(1)
