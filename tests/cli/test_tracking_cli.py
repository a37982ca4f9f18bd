"""The config's ``tracking:`` section: TensorBoard loss curves of the best
candidates (skipped without tensorboard) and its checks."""

import pytest
import yaml

from torchhpo.cli import ConfigError, run

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def test_tensorboard_gets_the_best_candidates_loss_curves(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    config = tiny_config(tracking={"tensorboard": True, "top": 2})
    config["estimator"]["params"]["max_iter"] = 15
    path = write_config(tmp_path / "t.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    board = result.folder / "tensorboard"
    names = sorted(p.name for p in board.iterdir())
    assert len(names) == 3 and "best_refit" in names
    assert sum(n.startswith("rank") for n in names) == 2
    first = next(p for p in board.iterdir() if p.name.startswith("rank"))
    events = EventAccumulator(str(first))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"loss/fold0", "loss/fold1", "loss/mean"}
    steps = [e.step for e in events.Scalars("loss/fold0")]
    assert steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) <= 15
    recorded = yaml.safe_load((result.folder / "config.yaml").read_text())
    assert recorded["tracking"] == {"tensorboard": True, "top": 2}


@pytest.mark.parametrize(
    "section, key",
    [
        ({"tensorboard": 3}, "tracking.tensorboard"),
        ({"mlflow": "yes"}, "tracking.mlflow"),
        ({"tensorboard": True, "top": 0}, "tracking.top"),
        ({"tensorbord": True}, "tracking.tensorbord"),
    ],
)
def test_bad_tracking_keys_are_named(tmp_path, section, key):
    path = write_config(tmp_path / "b.yaml", tiny_config(tracking=section))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run(path, out=tmp_path / "run", progress=False, plots=False)
