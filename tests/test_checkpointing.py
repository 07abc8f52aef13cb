"""Checkpoint layout: retention (newest N + best MAD), async saves, path resolution, errors."""

import os

import numpy as np
import pytest

from modnet_jax import checkpointing


def _tree(step):
    return {"train": {"params": {"w": np.full(3, step, np.float32)},
                      "batch_stats": {"m": np.zeros(2, np.float32)},
                      "step": np.asarray(step, np.int32)}}


def test_keeps_newest_and_best_by_mad(tmp_path):
    ck = checkpointing.TrainCheckpointer(str(tmp_path / "checkpoints"), keep_last=2, keep_best=1,
                                         async_save=True)
    mads = {1: 0.5, 2: 0.1, 3: 0.3, 4: None, 5: 0.4, 6: 0.45}
    for step, mad in mads.items():
        ck.save(step, _tree(step), {"next_index": step}, mad)
    ck.wait()
    kept = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
    assert kept == [2, 5, 6]  # best MAD (step 2) + the newest two
    state, data = ck.restore(6, _tree(0))
    np.testing.assert_array_equal(state["train"]["params"]["w"], 6.0)
    assert data == {"next_index": 6}
    ck.close()
    # Any path form resolves: workdir, manager dir, step dir; explicit steps too.
    assert checkpointing.resolve_checkpoint(str(tmp_path)).endswith(os.path.join("checkpoints", "6"))
    assert checkpointing.resolve_checkpoint(str(tmp_path / "checkpoints"), 2).endswith("2")
    step_dir = str(tmp_path / "checkpoints" / "5")
    assert checkpointing.resolve_checkpoint(step_dir) == step_dir
    v = checkpointing.load_variables(str(tmp_path), step=2)
    np.testing.assert_array_equal(v["params"]["w"], 2.0)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpointing.resolve_checkpoint(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no modnet_jax checkpoint"):
        checkpointing.resolve_checkpoint(str(tmp_path))
    checkpointing.save_variables(str(tmp_path / "m"), {"params": {"w": np.ones(2)},
                                                       "batch_stats": {}})
    with pytest.raises(FileNotFoundError, match="no step 7"):
        checkpointing.resolve_checkpoint(str(tmp_path / "m"), 7)
