"""Which waiting models enter a pack's free slots, and when.

A pack is a fixed number of slots that models flow through (see
:mod:`~torchhpo.engine.pack`). The models of a job wait in an
:class:`AdmissionQueue` in the caller's order; when models leave, the queue hands
out the next ones to take their slots at the epoch boundary.

Models of one ``ModelTask.group`` (a candidate's CV folds) may have to enter
together: an epoch policy such as Optuna's pruner compares a trial's folds epoch by
epoch, so its folds must train side by side. Such a group is one *unit* of
admission; without a policy every model is its own unit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from .spec import ModelTask


class AdmissionQueue:
    """Units of models waiting for slots, first come first served.

    Parameters
    ----------
    tasks : sequence of ModelTask
        The job's models; positions index into it.
    grouped : bool
        Admit the models of one ``ModelTask.group`` together.
    """

    def __init__(self, tasks: Sequence[ModelTask], grouped: bool) -> None:
        units: list[list[int]] = []
        by_group: dict[object, list[int]] = {}
        for position, task in enumerate(tasks):
            if grouped and task.group is not None:
                if task.group not in by_group:
                    by_group[task.group] = []
                    units.append(by_group[task.group])
                by_group[task.group].append(position)
            else:
                units.append([position])
        self._units = deque(units)

    def __len__(self) -> int:
        """Number of models waiting."""
        return sum(len(unit) for unit in self._units)

    def __bool__(self) -> bool:
        return bool(self._units)

    def push(self, positions: list[int]) -> None:
        """Queue one more unit (models that arrived from a feed).

        The list is kept, not copied: models of the same group that arrive next
        are appended to it until it is taken.
        """
        self._units.append(positions)

    def take(self, free: int) -> list[int]:
        """Return the positions of the next whole units that fit in ``free`` slots.

        Units enter in order: a unit that does not fit stops the admission (a
        later, smaller unit does not overtake it), so every model waits at most
        until enough slots are free for its own unit.
        """
        taken: list[int] = []
        while self._units and len(self._units[0]) <= free - len(taken):
            taken.extend(self._units.popleft())
        return taken

    def largest_unit(self) -> int:
        """Size of the largest waiting unit (0 when none waits)."""
        return max((len(unit) for unit in self._units), default=0)
