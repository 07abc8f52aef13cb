"""The training loop end to end: artefacts, exact resume (in-process and after SIGKILL),
SIGTERM, SOC from a supervised checkpoint, non-finite loss, bad data before compile; the
supervised and SOC runs (evaluation included) under ``jax.transfer_guard("disallow")``."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from modnet_jax import checkpointing, parallel
from modnet_jax.data import pipeline
from modnet_jax.training import loop, preflight
from modnet_jax.training.loop import NonFiniteLossError, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "configs"))
import soc as soc_cfg  # noqa: E402
import supervised as sup_cfg  # noqa: E402

N_STEPS = 12


def _tiny(**overrides):
    c = sup_cfg.get_config("tiny")
    c.num_train_steps = N_STEPS
    c.progress = False
    c.num_devices = 1  # conftest fakes 8 CPU devices; batch 2 runs on one
    c.update_from_flattened_dict(overrides)
    return c


def _jsonl(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _fingerprints(workdir):
    return {r["step"]: r["data_fingerprint"] for r in _jsonl(workdir) if r["split"] == "train"}


def _assert_same_tree(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb) > 0
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class _Spy:
    """Wraps a function, recording its calls' positional arguments (and still calling it)."""

    def __init__(self, module, name):
        self.module, self.name, self.fn, self.calls = module, name, getattr(module, name), []

    def __enter__(self):
        def spy(*args, **kwargs):
            self.calls.append(args)
            return self.fn(*args, **kwargs)

        setattr(self.module, self.name, spy)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.fn)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """12 steps with validation at steps 0 and 12 and 6 checkpoints, run with implicit
    host<->device transfers disallowed (any would raise): the loop moves the batch in, the
    metrics and checkpoints out, only explicitly. Records what was scanned and sent."""
    workdir = str(tmp_path_factory.mktemp("straight"))
    with _Spy(pipeline, "_plan") as scans, _Spy(parallel, "put_batch") as puts:
        with jax.transfer_guard("disallow"):
            result = train(_tiny(), workdir)
    result["scanned_splits"] = [args[1] for args in scans.calls]
    result["sent_keys"] = {tuple(sorted(args[0])) for args in puts.calls}
    return workdir, result


def test_guarded_run_scans_once_and_sends_only_what_the_loss_reads(straight):
    _, result = straight
    # One scan per split for the whole run (before: four before step 1, one per evaluation).
    assert sorted(result["scanned_splits"]) == ["train", "val"]
    # The synthetic layout composites, so batches hold fg and bg; the release loss does not
    # read them and evaluation reads image and alpha only.
    assert result["sent_keys"] == {("alpha", "image", "trimap"), ("alpha", "image")}


def test_transfer_guard_is_active_in_the_hot_loop(tmp_path, monkeypatch):
    """The control for the guarded runs: a batch handed to the step as numpy (an implicit
    host->device transfer, what a forgotten ``device_put`` does) raises under the guard, so
    the loop does not lift it. (On the CPU backend JAX polices host->device only: reads are
    zero-copy there; every read in the loop is an explicit ``jax.device_get`` through
    ``parallel.get_state``/``get_rows``, which a GPU run of this file checks too.)"""
    def implicit_put(batch, devices):
        n = len(devices)
        return {k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch.items()}

    monkeypatch.setattr(loop.parallel, "put_batch", implicit_put)
    with jax.transfer_guard("disallow"):
        with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
            train(_tiny(num_train_steps=2, eval_at_start=False), str(tmp_path))


def test_logged_training_metrics_are_interval_means(tmp_path):
    """log_every=3 over 7 steps: records at steps 3, 6 (means of 3 steps) and 7 (the last,
    a mean of 1), computed by hand from the per-step values."""
    from modnet_jax.training.reporting import Reporter

    class NoCheckpoints:
        directory = "-"

        def latest_step(self):
            return None

    devices = jax.local_devices()[:2]
    totals = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    reporter = Reporter(str(tmp_path), 7, 0, 2, progress=False)
    log = loop.MetricLog(reporter, 3, 7, lambda count: 0.5 ** count, NoCheckpoints())
    for step, total in enumerate(totals, start=1):
        metrics = parallel.put_state({"total": np.float32(total),
                                      "grad_norm": np.float32(10 * total)}, devices)
        log.push(step, metrics, fingerprint=100 + step)
    log.flush()
    reporter.close()
    records = _jsonl(str(tmp_path))
    assert [r["step"] for r in records] == [3, 6, 7]
    assert [r["total"] for r in records] == [7 / 3, 56 / 3, 64.0]
    assert [r["grad_norm"] for r in records] == pytest.approx([70 / 3, 560 / 3, 640.0])
    assert [r["lr"] for r in records] == [0.5 ** 2, 0.5 ** 5, 0.5 ** 6]  # lr of the last step
    assert [r["data_fingerprint"] for r in records] == [103, 106, 107]


def test_smoke_run_artefacts(straight):
    workdir, result = straight
    assert result["final_step"] == N_STEPS and result["stopped_by"] is None
    records = _jsonl(workdir)
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == list(range(1, N_STEPS + 1))
    val = [r for r in records if r["split"] == "val_crop"]
    assert [r["step"] for r in val] == [0, N_STEPS]
    assert all(0 <= r["mad"] <= 1 and r["mse"] <= r["mad"] for r in val)
    # Checkpoints: the newest 3 plus the best-by-MAD one; each loads as model variables.
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))
    assert steps[-1] == N_STEPS and len(steps) <= 4
    variables = checkpointing.load_variables(workdir)
    _assert_same_tree(variables["params"], result["final_state"].params)
    # The run remembers itself: its resolved config, and its model in every checkpoint.
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f) == json.loads(json.dumps(_tiny().to_dict()))
    for step in steps:
        assert checkpointing.model_metadata(workdir, step) == checkpointing.model_record(None)
    # PNG grids of input | prediction | truth.
    import cv2

    pngs = sorted(os.listdir(os.path.join(workdir, "samples")))
    assert pngs == ["step_0000000.png", f"step_{N_STEPS:07d}.png"]
    grid = cv2.imread(os.path.join(workdir, "samples", pngs[-1]))
    assert grid.shape == (2 * 64, 3 * 64, 3)


def test_tensorboard_events_readable(straight):
    workdir, _ = straight
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(workdir, "tensorboard"))
    acc.Reload()
    tags = acc.Tags()
    assert "train/total" in tags["scalars"] and "val_crop/mad" in tags["scalars"]
    assert [e.step for e in acc.Scalars("train/total")] == list(range(1, N_STEPS + 1))
    ours = {r["step"]: r["total"] for r in _jsonl(workdir) if r["split"] == "train"}
    for e in acc.Scalars("train/total"):
        assert e.value == pytest.approx(ours[e.step], rel=1e-6)
    img = acc.Images("val_crop/grid")[-1]
    assert (img.height, img.width) == (128, 192)


def test_resume_in_process_is_bit_identical(straight, tmp_path):
    workdir, result = straight
    half = train(_tiny(num_train_steps=N_STEPS // 2), str(tmp_path))
    assert half["final_step"] == N_STEPS // 2
    rest = train(_tiny(), str(tmp_path))
    assert rest["start_step"] == N_STEPS // 2 and rest["final_step"] == N_STEPS
    _assert_same_tree(rest["final_state"].params, result["final_state"].params)
    _assert_same_tree(rest["final_state"].batch_stats, result["final_state"].batch_stats)
    _assert_same_tree(rest["final_state"].opt_state, result["final_state"].opt_state)
    assert _fingerprints(str(tmp_path)) == _fingerprints(workdir)


def _train_cmd(workdir, *extra):
    return [sys.executable, "-m", "modnet_jax.train", "--config",
            os.path.join(REPO, "configs", "supervised.py:tiny"), "--workdir", workdir,
            f"--config.num_train_steps={N_STEPS}", "--config.progress=false",
            "--config.checkpoint_every=1", "--config.num_devices=1", *extra]


def _start_and_signal(workdir, sig, *extra):
    """Start a training process (``extra``: more flags); once its step-2 checkpoint exists,
    send ``sig``."""
    proc = subprocess.Popen(_train_cmd(workdir, *extra), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    marker = os.path.join(workdir, "checkpoints", "2")
    deadline = time.time() + 600
    while not os.path.isdir(marker):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def test_sigkill_then_resume_is_bit_identical(straight, tmp_path):
    workdir, result = straight
    wd = str(tmp_path)
    rc, _ = _start_and_signal(wd, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    killed_at = checkpointing.TrainCheckpointer(os.path.join(wd, "checkpoints")).latest_step()
    assert 2 <= killed_at < N_STEPS, "the run finished before it could be killed"
    done = subprocess.run(_train_cmd(wd), cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"steps: {killed_at} -> {N_STEPS}" in done.stdout
    variables = checkpointing.load_variables(wd)
    _assert_same_tree(variables["params"], result["final_state"].params)
    _assert_same_tree(variables["batch_stats"], result["final_state"].batch_stats)
    assert _fingerprints(wd) == _fingerprints(workdir)  # same batches at every step


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    wd = str(tmp_path)
    rc, out = _start_and_signal(wd, signal.SIGTERM)
    assert rc == 0, out[-3000:]
    assert "stopped by SIGTERM" in out
    stopped = checkpointing.TrainCheckpointer(os.path.join(wd, "checkpoints")).latest_step()
    assert 2 <= stopped < N_STEPS
    assert max(r["step"] for r in _jsonl(wd) if r["split"] == "train") == stopped


def test_soc_from_supervised_never_changes_frozen(straight, tmp_path):
    workdir, result = straight
    c = soc_cfg.get_config("tiny")
    c.init_from = workdir
    c.progress = False
    c.num_devices = 1
    with jax.transfer_guard("disallow"):  # as the supervised run: explicit transfers only
        out = train(c, str(tmp_path))
    assert out["final_step"] == c.num_train_steps
    supervised = checkpointing.load_variables(workdir)
    saved = checkpointing.load_state_tree(str(tmp_path))
    _assert_same_tree(saved["frozen"], supervised)  # M' is the supervised model, untouched
    _assert_same_tree(out["final_state"].batch_stats, supervised["batch_stats"])  # BN frozen
    moved = [not np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(out["final_state"].params),
        jax.tree_util.tree_leaves(supervised["params"]))]
    assert any(moved)
    losses = [r["total"] for r in _jsonl(str(tmp_path)) if r["split"] == "train"]
    assert len(losses) == c.num_train_steps and all(np.isfinite(losses))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    c = _tiny(num_train_steps=6, checkpoint_every=1, eval_at_start=False)
    c.optimizer.learning_rate = 1e30
    with pytest.raises(NonFiniteLossError, match=r"at step (\d+)") as err:
        train(c, str(tmp_path))
    bad_step = int(err.value.args[0].split("at step ")[1].split(";")[0])
    last = checkpointing.TrainCheckpointer(os.path.join(str(tmp_path), "checkpoints"))
    assert last.latest_step() == bad_step - 1
    state = checkpointing.load_state_tree(str(tmp_path))
    assert all(np.isfinite(np.asarray(x)).all()
               for x in jax.tree_util.tree_leaves(state["train"]["params"]))


def test_unusable_dataset_fails_before_compiling(tmp_path):
    empty = tmp_path / "data"
    (empty / "fg").mkdir(parents=True)
    (empty / "alpha").mkdir()
    proc = subprocess.run(
        _train_cmd(str(tmp_path / "wd"), "--config.data.layout=adobe",
                   f"--config.data.root={empty}"),
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2  # found before any work: a usage mistake, nothing written
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "fg" in last
    assert not os.path.exists(tmp_path / "wd")
    with pytest.raises(preflight.ConfigError):
        train(_tiny(**{"data.layout": "adobe", "data.root": str(empty)}), str(tmp_path / "w2"))
    assert not os.path.exists(tmp_path / "w2")


@pytest.mark.parametrize("batch, eval_batch, match", [(3, 4, "batch_size 3"),
                                                      (4, 3, "eval_batch_size 3"),
                                                      (4, 0, "eval_batch_size 0")])
def test_batches_must_fill_every_device(tmp_path, batch, eval_batch, match):
    """On 2 devices: a global batch or an evaluation batch that does not split evenly over
    the devices is refused at start-up (before, a bad eval batch failed at the first
    evaluation, after compiling and training)."""
    config = _tiny(num_devices=2, batch_size=batch, eval_batch_size=eval_batch)
    with pytest.raises(preflight.ConfigError, match=match):
        train(config, str(tmp_path / "wd"))
    assert not os.path.exists(tmp_path / "wd")


def test_finetune_preparation_keeps_the_eval_function(straight, tmp_path):
    """configs/finetune.py re-estimates BatchNorms and distils the heads before step 1: the
    validation at step 0 must equal the starting checkpoint's (eval function unchanged)."""
    import finetune as ft_cfg

    workdir, result = straight
    c = ft_cfg.get_config("tiny")
    c.init_from = workdir
    c.num_train_steps = 2
    c.progress = False
    c.num_devices = 1
    out = train(c, str(tmp_path))
    assert out["final_step"] == 2
    plain = _tiny(num_train_steps=1, init_from=workdir)
    before = train(plain, str(tmp_path / "plain"))["val_crop_before"]
    for k in ("mse", "mad"):
        assert abs(out["val_crop_before"][k] - before[k]) <= 1e-5, k
    start = checkpointing.load_variables(workdir)
    saved = checkpointing.load_variables(str(tmp_path))
    assert not np.array_equal(saved["batch_stats"]["backbone"]["features_0_1"]["mean"],
                              start["batch_stats"]["backbone"]["features_0_1"]["mean"])
