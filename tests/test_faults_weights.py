"""Faults (issue 31), weights and checkpoints: a release weights file is what its content
says (the extension is a hint), and training on a damaged checkpoint ends with one error line.
Guarantees listed in docs/faults.md.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from modnet_jax import checkpointing, predict
from modnet_jax.interop.release_files import load_release_file, release_kind
from modnet_jax.training.pretrained import load_init_variables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def _tiny_onnx_model() -> bytes:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, producer_name="test").SerializeToString()


def test_release_weights_are_identified_by_content(tmp_path):
    pytest.importorskip("torch")
    from interop_utils import random_flax_variables
    from modnet_jax.interop import keys, torch_io

    variables = random_flax_variables(seed=7)
    state_dict = keys.flax_to_torch(variables, 0, False)
    named_onnx = tmp_path / "weights.onnx"  # PyTorch weights under an ONNX name: read as such
    torch_io.save_state_dict_file(state_dict, str(named_onnx))
    assert release_kind(str(named_onnx)) == "PyTorch"
    loaded, _ = load_release_file(str(named_onnx))
    for group in ("params", "batch_stats"):
        flat_want = jax.tree_util.tree_leaves(variables[group])
        flat_got = jax.tree_util.tree_leaves(loaded[group])
        assert len(flat_got) == len(flat_want) > 0
        for got, want in zip(flat_got, flat_want):
            np.testing.assert_array_equal(got, want)
    named_pth = tmp_path / "weights.pth"  # an ONNX model under a PyTorch name
    named_pth.write_bytes(_tiny_onnx_model())
    assert release_kind(str(named_pth)) == "ONNX"

    # Content that is no weights: not taken for weights whatever the name, and said what it is.
    for name in ("image.onnx", "image.pth"):
        (tmp_path / name).write_bytes(PNG)
        assert release_kind(str(tmp_path / name)) is None
        with pytest.raises(ValueError, match="a PNG image"):
            load_init_variables(str(tmp_path / name))
    (tmp_path / "notes.ckpt").write_text("just some text\n")
    with pytest.raises(ValueError, match="a text file"):
        load_release_file(str(tmp_path / "notes.ckpt"))
    # Unrecognised content (an empty file): the extension is the hint, the loader says why.
    (tmp_path / "empty.pth").write_bytes(b"")
    assert release_kind(str(tmp_path / "empty.pth")) == "PyTorch"


def test_predict_on_an_image_named_onnx_says_what_it_is(tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(PNG)
    (tmp_path / "p.png").write_bytes(PNG)
    rc = predict.cli(["--checkpoint", str(tmp_path / "model.onnx"), str(tmp_path / "p.png"),
                      "--output", str(tmp_path / "out"), "--quiet", "--compile-cache", "none"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "a PNG image" in err[0], err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ train on a damaged checkpoint

def _train_cmd(workdir, *extra):
    return [sys.executable, "-m", "modnet_jax.train", "--config", "supervised:tiny",
            "--workdir", str(workdir), "--config.progress=false", "--config.num_devices=1",
            "--config.eval_at_start=false", "--config.eval_every=0", "--config.log_every=1",
            "--config.checkpoint_every=1", *extra]


def _write_step_one(workdir):
    """A step-1 checkpoint of the tree a `supervised:tiny` run saves (its train state, shaped
    as the loop builds it; ones for values: nothing is initialised or compiled)."""
    from modnet_jax import state as state_lib
    from modnet_jax.configs.supervised import get_config
    from modnet_jax.models import init_variables, model_from_config

    config = get_config("tiny")
    model = model_from_config(config.model)
    tx = state_lib.make_optimizer(config.optimizer, 10)
    shapes = jax.eval_shape(lambda key: state_lib.create_train_state(
        model, init_variables(model, key), tx), jax.random.key(0))
    state = jax.tree_util.tree_map(lambda leaf: np.ones(leaf.shape, leaf.dtype), shapes)
    ckpt = checkpointing.TrainCheckpointer(
        os.path.join(workdir, checkpointing.CHECKPOINT_SUBDIR), keep_best=0, async_save=False,
        model_config=config.model)
    ckpt.save(1, {"train": state}, {"position": 1})
    ckpt.close()


def _overwrite_metadata(step_dir):
    """Damage a step: its tree metadata overwritten (the run used to end with a JSON
    decoder's message naming no file)."""
    with open(os.path.join(step_dir, checkpointing.STATE_ITEM, "_METADATA"), "w") as handle:
        handle.write("{ not json")


def test_train_on_a_damaged_checkpoint_is_one_error_line(tmp_path):
    """Resuming from a damaged step, and starting from one (init_from): one error line each,
    nothing after it, the documented statuses (1: the run failed; 2: found by the preflight,
    before anything is written)."""
    run = tmp_path / "run"
    _write_step_one(str(run))
    step_dir = checkpointing.resolve_checkpoint(str(run))
    _overwrite_metadata(step_dir)
    resumed = subprocess.Popen(_train_cmd(run, "--config.num_train_steps=3"), cwd=tmp_path,
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    started = subprocess.Popen(_train_cmd(tmp_path / "fresh", "--config.num_train_steps=3",
                                          f"--config.init_from={run}"), cwd=tmp_path, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for proc, status in ((resumed, 1), (started, 2)):
        out, err = proc.communicate(timeout=600)
        lines = err.splitlines()
        assert proc.returncode == status, err[-3000:]
        assert lines and lines[-1].startswith("error: ") and step_dir in lines[-1], err[-3000:]
        assert "damaged checkpoint" in lines[-1], lines[-1]
        assert "Traceback" not in err and not any(line.startswith("error: ")
                                                  for line in lines[:-1]), err[-3000:]
    assert not (tmp_path / "fresh").exists()
    assert checkpointing.TrainCheckpointer(os.path.join(run, "checkpoints"),
                                           keep_best=0).latest_step() == 1  # kept as it was
