"""A newcomer's mistakes are caught before any work (issue 30): each is exit status 2, one
``error:`` line, and no file or folder left behind; a run that fails later keeps its workdir
only if it wrote a checkpoint; the end of a run says where its results are; every command's
``--help`` is short, needs no JAX and lists what a newcomer looks for.

The ``train`` cases run in ONE subprocess (2 fake CPU devices), each through the command's
own entry point; none gets as far as compiling."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modnet_jax import __version__, checkpointing
from modnet_jax.data.synthetic import write_synthetic_folder
from train_driver import run_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}

TINY = ["--config", "finetune:tiny", "--config.progress=false"]


def _mistakes(data):
    """(argv, facts the error line must state) for each early mistake."""
    three, twenty, notmodnet, junk_onnx = (str(data / n) for n in
                                           ("three", "twenty", "notmodnet", "junk.onnx"))
    photos = ["--config.data.layout=image_matte"]
    return [
        (TINY + ["--config.data.layout=adobee"], ["adobee", "adobe"]),
        (TINY + ["--config.model.lr_branch=aspp"], ["lr_branch", "aspp", "easpp"]),
        (TINY + ["--config.batch_size=3"], ["batch_size 3", "2 devices"]),
        (TINY + ["--config.eval_batch_size=5"], ["eval_batch_size 5", "2 devices"]),
        (TINY + ["--config.num_devices=3"], ["num_devices"]),
        (TINY + ["--config.image_size=100"], ["image_size", "32"]),
        (TINY + [f"--config.init_from={notmodnet}"], ["init_from", "not in this model"]),
        (TINY + [f"--config.init_from={junk_onnx}"], ["init_from", "junk.onnx"]),
        (TINY + [f"--config.init_from={three}/image/synth_00000.jpg"], ["init_from", ".onnx"]),
        (TINY + photos + [f"--config.data.root={three}", "--config.data.val_fraction=0.1"],
         ["3 samples", "val_fraction 0.1", "rounds to no sample", "val_fraction=0.5"]),
        (TINY + photos + [f"--config.data.root={twenty}", "--config.data.val_fraction=0.1",
                          "--config.eval_batch_size=4"],
         ["20 samples", "holds 2", "eval_batch_size 4", "val_fraction=0.175"]),
        (TINY + photos + [f"--config.data.root={three}", "--config.eval_every=-1",
                          "--config.batch_size=4"], ["3 samples", "batch_size 4"]),
        (["--config", "soc:tiny"], ["SOC", "init_from"]),
    ]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    write_synthetic_folder(str(data / "three"), 3, height=64, width=64, seed=1,
                           layout="image_matte")
    write_synthetic_folder(str(data / "twenty"), 20, height=64, width=64, seed=2,
                           layout="image_matte")
    checkpointing.save_variables(str(data / "notmodnet"),
                                 {"params": {"dense": {"w": np.ones((3, 3), np.float32)}}}, 0)
    (data / "junk.onnx").write_bytes(b"not a protobuf at all")
    cwd = tmp_path_factory.mktemp("cwd")
    cases = _mistakes(data)
    argvs = [argv + ["--workdir", str(cwd / f"run{i}")] for i, (argv, _) in enumerate(cases)]
    return cwd, cases, run_train(argvs, cwd, ENV)


@pytest.mark.parametrize("index", range(len(_mistakes(Path("data")))))
def test_mistake_is_one_line_exit_2_nothing_written(outcomes, index):
    cwd, cases, results = outcomes
    status, out, err = results[index]
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert out == ""
    for fact in cases[index][1]:
        assert fact in lines[0], (fact, lines[0])
    assert os.listdir(cwd) == []  # no workdir, nothing else


# --- failing later: the workdir stays only with a checkpoint --------------------------------

@pytest.mark.parametrize("writes_checkpoint", [False, True])
def test_later_failure_keeps_workdir_only_with_a_checkpoint(tmp_path, monkeypatch, capsys,
                                                            writes_checkpoint):
    from modnet_jax import train as train_cmd
    from modnet_jax.training import loop

    workdir = tmp_path / "run"

    def failing_train(config, wd, checked=None):
        os.makedirs(os.path.join(wd, "tensorboard"))
        open(os.path.join(wd, "config.json"), "w").close()
        if writes_checkpoint:
            checkpointing.save_variables(os.path.join(wd, "checkpoints"),
                                         {"params": {"w": np.ones(2)}}, 3)
        raise ValueError("the data broke at step 7")

    monkeypatch.setattr(loop, "train", failing_train)
    with pytest.raises(SystemExit) as done:
        train_cmd._train(None, str(workdir), None)
    assert done.value.code == 1
    assert capsys.readouterr().err == "error: the data broke at step 7\n"
    assert workdir.exists() == writes_checkpoint
    # A workdir that existed before the run is never removed.
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(SystemExit):
        train_cmd._train(None, str(existing), None)
    assert existing.is_dir()


def test_end_of_run_says_where_results_are(tmp_path):
    from modnet_jax.training.reporting import summary_lines

    (tmp_path / "samples").mkdir()
    text = "\n".join(summary_lines(str(tmp_path), {
        "start_step": 0, "final_step": 300, "total_steps": 300, "stopped_by": None,
        "val_crop_before": {"mad": 0.47, "mse": 0.2}, "val_crop_after": {"mad": 0.03,
                                                                           "mse": 0.01}}))
    assert f"tensorboard --logdir {tmp_path / 'tensorboard'}" in text
    assert str(tmp_path / "checkpoints") in text and str(tmp_path / "samples") in text
    assert "0 -> 300 of 300" in text and "MAD 0.4700" in text and "MAD 0.0300" in text
    assert f"--checkpoint {tmp_path}" in text


# --- --help and --version -------------------------------------------------------------------

def _entry_points():
    """Every ``python -m`` command of the package: a module with a top-level ``if __name__ ==
    "__main__":`` block, or a package's ``__main__.py``."""
    package = Path(REPO) / "modnet_jax"
    found = []
    for path in sorted(package.rglob("*.py")):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        if path.name == "__main__.py":
            found.append(name.rsplit(".", 1)[0])
        elif re.search(r"^if __name__ == .__main__.:", path.read_text(), re.M):
            found.append(name)
    return found


COMMANDS = _entry_points()

_HELP_DRIVER = """
import json, runpy, sys, io, contextlib
module, flag = sys.argv[1], sys.argv[2]
sys.argv = ["x", flag]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
print(json.dumps([code, out.getvalue(), "jax" in sys.modules]))
"""


def _help(command, flag="--help"):
    proc = subprocess.run([sys.executable, "-c", _HELP_DRIVER, command, flag],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_short_needs_no_jax_and_version_exists(command):
    """Each command answers --help in at most ~60 lines and --version with the package's
    version, neither importing JAX."""
    code, text, jax_imported = _help(command)
    assert code in (0, None) and text.strip()
    assert len(text.splitlines()) <= 60, len(text.splitlines())
    assert not jax_imported, f"{command} --help imported jax"
    code, text, jax_imported = _help(command, "--version")
    assert code in (0, None) and text == f"modnet_jax {__version__}\n"
    assert not jax_imported, f"{command} --version imported jax"


def test_every_command_is_found():
    """The list above is the package's commands (a new one is checked without being listed)."""
    assert {"modnet_jax.train", "modnet_jax.predict", "modnet_jax.evaluate",
            "modnet_jax.recalibrate", "modnet_jax.serve", "modnet_jax.data.prepare",
            "modnet_jax.convert_to_torch", "modnet_jax.convert_from_torch"} <= set(COMMANDS)


def test_train_help_lists_every_shipped_config_and_variant():
    import importlib

    from modnet_jax.configs import NAMES

    _, text, _ = _help("modnet_jax.train")
    for name in NAMES:
        assert name in text, name
        for variant in getattr(importlib.import_module(f"modnet_jax.configs.{name}"),
                               "VARIANTS", ()):
            if variant != "tiny":
                assert f":{variant}" in text, (name, variant)


def test_evaluate_parser_values_match_their_homes():
    """The light parser's copies of the choices are the modules' own."""
    from modnet_jax import evaluate, metrics
    from modnet_jax import temporal as ofd
    from modnet_jax.inference import cli as compile_cache, sizes as preprocess

    assert evaluate.PRECISIONS == metrics.PRECISIONS
    assert evaluate.OFD_THRESHOLD == ofd.OFD_THRESHOLD
    assert (preprocess.REF_SIZE, compile_cache.ENV_VAR) == (512, "MODNET_JAX_COMPILE_CACHE")
