"""The training loop with the device stage (`data.augment_on_device`): only uint8 crops and the
draws cross to the device, under ``jax.transfer_guard("disallow")``, and a run killed with
SIGKILL resumes bit-identical to an uninterrupted one (the draws come from the seeded
pipeline, the pixels from the compiled step)."""

import os
import signal
import subprocess

import jax
import numpy as np
import pytest

from modnet_jax import checkpointing, parallel
from modnet_jax.training.loop import train

from test_train import (N_STEPS, REPO, _assert_same_tree, _fingerprints, _Spy, _start_and_signal,
                        _tiny, _train_cmd)

DEVICE = {"data.augment_on_device": True}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("device_straight"))
    with _Spy(parallel, "put_batch") as puts:
        with jax.transfer_guard("disallow"):
            result = train(_tiny(**DEVICE), workdir)
    result["sent"] = {tuple(sorted((k, str(v.dtype)) for k, v in args[0].items()))
                      for args in puts.calls}
    return workdir, result


def test_only_crops_and_draws_cross_and_training_learns(straight):
    workdir, result = straight
    train_batches = {("bg_crop", "uint8"), ("crop", "uint8"), ("draws", "float32")}
    eval_batches = {("alpha", "uint8"), ("image", "uint8")}  # validation: host-made images
    assert result["sent"] == {tuple(sorted(train_batches)), tuple(sorted(eval_batches))}
    assert result["final_step"] == N_STEPS
    before, after = result["val_crop_before"]["mad"], result["val_crop_after"]["mad"]
    assert np.isfinite(before) and np.isfinite(after)


@pytest.mark.slow  # two more training processes; test_train.py's SIGKILL test runs by default
def test_sigkill_then_resume_is_bit_identical_with_the_device_stage(straight, tmp_path):
    workdir, result = straight
    wd = str(tmp_path)
    extra = ("--config.data.augment_on_device=true",)
    rc, _ = _start_and_signal(wd, signal.SIGKILL, *extra)
    assert rc == -signal.SIGKILL
    killed_at = checkpointing.TrainCheckpointer(os.path.join(wd, "checkpoints")).latest_step()
    assert 2 <= killed_at < N_STEPS, "the run finished before it could be killed"
    done = subprocess.run(_train_cmd(wd, *extra), cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    variables = checkpointing.load_variables(wd)
    _assert_same_tree(variables["params"], result["final_state"].params)
    _assert_same_tree(variables["batch_stats"], result["final_state"].batch_stats)
    assert _fingerprints(wd) == _fingerprints(workdir)
