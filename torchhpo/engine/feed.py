"""Models that arrive while others train: the engine's side of a streaming search.

A search that decides what to train from what already finished (Optuna's samplers)
gives :func:`~torchhpo.engine.train_models` a :class:`TaskFeed` instead of, or
besides, a fixed task list. Whenever a pack has free slots and nothing waiting, it
asks the feed for models of its shape; a worker without a pack asks for models of
any shape and starts a pack for them. Calls are serialised with the result
callbacks, so a feed may read the results of the models that finished so far.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .spec import Hyperparams, ModelTask


class TaskFeed(ABC):
    """A source of models to train, asked as slots free.

    Subclasses implement :meth:`more` and :meth:`exhausted`. The engine numbers
    the models a feed hands out after the call's own tasks, in the order handed
    out; results come back through ``train_models``' ``on_result`` under those
    numbers.
    """

    #: Most units the feed hands out at once for a while after it starts (e.g.
    #: the trials a pruner lets run before it can prune), or None. The engine
    #: sizes the packs it starts for fed models so that this many units fill
    #: its workers' slots.
    startup_units: int | None = None

    #: What the models of one pack share, as the packs that ask see it: the
    #: engine sets it (``Hyperparams.shape_key``, or
    #: :func:`~torchhpo.engine.slot_init.slot_key` where packs write models into
    #: slots in place); :meth:`more` hands out models of the asking pack's key.
    pack_key = staticmethod(Hyperparams.shape_key)

    def starting(self) -> bool:
        """Whether the feed is still in its start (see :attr:`startup_units`).

        Packs sized for the start grow to their full capacity once it is over.
        """
        return False

    @abstractmethod
    def more(self, shape_key: tuple | None, free: int) -> list[ModelTask]:
        """Return models to start now: whole units, at most ``free`` models.

        Parameters
        ----------
        shape_key : tuple or None
            The asking pack's :attr:`pack_key`: every model returned
            must have it. None: a worker without a pack asks, any one shape.
        free : int
            Free slots (models of one ``ModelTask.group`` must all fit).

        Returns
        -------
        list of ModelTask
            Possibly empty: nothing of that shape now.
        """

    @abstractmethod
    def exhausted(self) -> bool:
        """Whether the feed will hand out no more models."""
