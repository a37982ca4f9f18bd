"""A pack's batch schedule: which rows each slot's steps read, and their weights.

Every slot's epoch is laid out as ``(S, M, B)``: S steps (the pack's longest
epoch, or the job's for packs that write models into slots in place), M slots and
the job's widest batch B. Positions past a model's batch or its rows are padding
(weight 0); a model with no rows in a step does not take it. Each epoch, the
slots' shuffles (:mod:`~torchhpo.engine.rng`) are laid into this schedule.
"""

from __future__ import annotations

import torch

from . import native, rng


def lay_out(pack) -> None:
    """Set ``pack``'s batch schedule: positions, padding, counts, skipped steps."""
    device, dtype = pack.data.device, pack.data.dtype
    steps = torch.div(pack.n_train + pack.batch - 1, pack.batch, rounding_mode="floor")
    if pack.in_place:
        # The job's longest epoch, and every step may skip a model: a
        # model written into a slot later never changes the step's layout.
        pack.n_steps = pack.job_steps
    else:
        pack.n_steps = int(steps.max())
    # The widest batch of the whole job, whoever holds the slots now: a
    # model's padding, and so its arithmetic, never depends on its slot-mates.
    pack.width = pack.widths["batch"]
    s = torch.arange(pack.n_steps, device=device).view(1, -1, 1)
    j = torch.arange(pack.width, device=device).view(1, 1, -1)
    pos = s * pack.batch.view(-1, 1, 1) + j  # (M, S, B)
    valid = (j < pack.batch.view(-1, 1, 1)) & (pos < pack.n_train.view(-1, 1, 1))
    max_pos = pack.train_rows.shape[1] - 1
    pack.positions = pos.clamp(max=max_pos).view(len(pack.occupant), -1)
    pack.valid = valid.permute(1, 0, 2).to(dtype).contiguous()  # (S, M, B)
    pack.count = pack.valid.sum(dim=2)  # (S, M)
    # The weight sums of unweighted data (1 where a model takes no step).
    pack.valid_denom = torch.where(
        pack.count > 0, pack.count, torch.ones_like(pack.count)
    )
    if pack.in_place:
        # The ATen step reads which models skip a step from the counts on
        # the device; no host read of the schedule.
        pack.uneven_steps = set(range(pack.n_steps))
        none = torch.zeros(0, dtype=torch.int64, device=device)
        pack.inactive = [none] * pack.n_steps
        return
    active = steps.view(1, -1) > torch.arange(pack.n_steps, device=device).view(-1, 1)
    pack.uneven_steps = {
        int(i) for i in torch.nonzero(~active.all(dim=1)).flatten().tolist()
    }
    pack.inactive = [torch.nonzero(~active[i]).flatten() for i in range(pack.n_steps)]


def batch_rows(pack, base: torch.Tensor) -> torch.Tensor:
    """Return ``pack``'s batch rows ``(S, M, B)`` for this epoch's keys ``base``.

    On the CPU one fused C call (:mod:`~torchhpo.engine.native`) draws the
    permutations and lays the rows out; elsewhere tensor ops do, in the same
    order.
    """
    M, S, B = pack.size, pack.n_steps, pack.width
    width = pack.train_rows.shape[1]
    kernels = native.kernels(pack.data.dtype, pack.data.device)
    if kernels is not None:
        idx = torch.empty(S, M, B, dtype=torch.int64)
        inputs = (base, pack.n_train, pack.shuffle, pack.train_rows)
        base, n_train, shuffle, rows = (t.contiguous() for t in inputs)
        positions = pack.positions.contiguous()
        done = kernels.epoch_rows(
            base=base.data_ptr(),
            n=n_train.data_ptr(),
            shuffle=shuffle.data_ptr(),
            rows=rows.data_ptr(),
            width=width,
            positions=positions.data_ptr(),
            M=M,
            S=S,
            B=B,
            idx=idx.data_ptr(),
        )
        if done != 0:
            raise MemoryError("could not allocate an epoch's shuffle scratch")
        return idx
    order = rng.permutation_order(base, pack.n_train, width, pack.shuffle)
    rows = pack.train_rows.gather(1, order)
    idx = rows.gather(1, pack.positions).view(M, S, B)
    return idx.permute(1, 0, 2).contiguous()
