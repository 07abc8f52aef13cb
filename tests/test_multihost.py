"""Scaling out: several jax.distributed processes on this machine (launch/local_cpu.sh) train
exactly like one process with as many devices; only the chief writes logs; checkpoints are
written collectively, keep each process's data position and resume on 2 processes or on 1;
the data do not depend on the host count; the launch scripts parse, pass shellcheck and print
their commands in dry-run mode."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from modnet_jax import checkpointing
from modnet_jax.data import make_eval_iterator, make_train_iterator
from modnet_jax.training.loop import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
sys.path.insert(0, os.path.join(REPO, "configs"))
import supervised as sup_cfg  # noqa: E402

# float64 compute (params stay fp32): at initialisation MODNet's gradients are so
# ill-conditioned that fp32 reduction-order noise alone moves updated weights by ~1e-3
# (tests/test_steps.py). In float64 two steps from the same state agree to ~4e-7, and any
# sharding error (data, statistics, gradient averaging) shows in full; the remaining noise
# (fp32 rounding of the stored params) still grows ~300x per step, so every comparison below
# starts from the same state and runs at most two steps.
OVERRIDES = {"batch_size": 8, "eval_at_start": False, "eval_batch_size": 8,
             "num_eval_batches": 1, "checkpoint_every": 2, "progress": False,
             "model.dtype": "float64"}


def _config(steps, **extra):
    c = sup_cfg.get_config("tiny")
    c.update_from_flattened_dict(dict(OVERRIDES, num_train_steps=steps, **extra))
    return c


def _flags(steps):
    return [f"--config.{k}={str(v).lower() if isinstance(v, bool) else v}"
            for k, v in dict(OVERRIDES, num_train_steps=steps).items()]


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _max_diff(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb) > 0
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(la, lb))


def _local_cpu(workdir, log_dir, steps):
    """launch/local_cpu.sh: 2 processes x 4 CPU devices, coordinator on a free local port."""
    import portpicker

    env = dict(os.environ, NUM_PROCESSES="2", DEVICES_PER_PROCESS="4", WORKDIR=workdir,
               LOG_DIR=log_dir, PORT=str(portpicker.pick_unused_port()),
               PYTHON=sys.executable, JAX_ENABLE_X64="1")
    env.pop("PER_DEVICE_BATCH", None)
    proc = subprocess.run(["bash", os.path.join(LAUNCH, "local_cpu.sh"), *_flags(steps)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    with open(os.path.join(log_dir, "process_1.log")) as f:
        other = f.read()
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:], other[-4000:])
    return proc.stdout, other


def test_two_processes_equal_one_process(tmp_path):
    """One launch (process 1 compiles everything: JAX caches compilations of process 0 only):
    3 steps on 2 processes x 4 devices, checkpoints at steps 2 and 3."""
    wd, logs = str(tmp_path / "multi"), str(tmp_path / "logs")
    out, other = _local_cpu(wd, logs, steps=3)
    assert "steps: 0 -> 3 of 3" in out
    # Process 1 reported nothing (its summary and INFO logs are suppressed).
    assert "steps:" not in other and "workdir:" not in other and "data[train]" not in other

    # The same config on 1 process x 8 devices: from the start, and from the 2-process
    # step-2 checkpoint (written collectively; its data positions fit any process count).
    elastic = str(tmp_path / "elastic")
    os.makedirs(os.path.join(elastic, "checkpoints"))
    shutil.copytree(os.path.join(wd, "checkpoints", "2"),
                    os.path.join(elastic, "checkpoints", "2"))
    with jax.enable_x64(True):
        reference = train(_config(2, num_devices=8), str(tmp_path / "reference"))
        resumed = train(_config(3, num_devices=8), elastic)
    assert resumed["start_step"] == 2 and resumed["final_step"] == 3
    diffs = {}
    for step, one in ((2, reference["final_state"]), (3, resumed["final_state"])):
        two = checkpointing.load_state_tree(wd, step)["train"]
        assert int(two["step"]) == step
        for name in ("params", "batch_stats"):
            diffs[f"step {step} {name}"] = _max_diff(two[name], getattr(one, name))
    print("max |2 processes - 1 process|:", diffs)
    assert all(d < 1e-5 for d in diffs.values()), diffs

    # One writer: each step's metrics once (the chief's), equal to the 1-process runs'.
    records = _records(wd)
    assert [(r["split"], r["step"]) for r in records] == [
        ("train", 1), ("train", 2), ("train", 3), ("val_crop", 3)]
    ones = {(r["split"], r["step"]): r
            for d in ("reference", "elastic") for r in _records(str(tmp_path / d))}
    for r in records:
        key = "total" if r["split"] == "train" else "mad"
        assert r[key] == pytest.approx(ones[r["split"], r["step"]][key], rel=1e-6), r
    assert len(os.listdir(os.path.join(wd, "tensorboard"))) == 1
    assert os.listdir(os.path.join(wd, "samples")) == ["step_0000003.png"]

    # The data item holds both processes' iterator states (alike: positions count global
    # batches, which is what let 1 process resume above).
    with open(os.path.join(wd, "checkpoints", "3", "data", "metadata")) as f:
        states = json.load(f)[checkpointing.PER_PROCESS]
    assert len(states) == 2 and states[0] == states[1]


_CHECKPOINTER = r"""
import json, sys
import jax, numpy as np
pid, port, directory = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
from modnet_jax import checkpointing, parallel
parallel.connect(jax.local_devices())
tree = {"w": np.arange(6.0).reshape(2, 3), "step": np.asarray(7, np.int32)}
ckpt = checkpointing.TrainCheckpointer(directory, async_save=True)
ckpt.save(7, tree, {"next_index": 10 + pid})
ckpt.close()
ckpt = checkpointing.TrainCheckpointer(directory)
target = {"w": np.zeros((2, 3)), "step": np.asarray(0, np.int32)}
state, data = ckpt.restore(ckpt.latest_step(), target)
ckpt.close()
print(json.dumps({"w": state["w"].tolist(), "step": int(state["step"]), "data": data}))
"""


def test_checkpointer_saves_and_restores_per_process_data_states(tmp_path):
    """2 processes (1 CPU device each) save one step collectively, each with its own
    iterator state, and each restores the train state and its own iterator state."""
    import portpicker

    directory, port = str(tmp_path / "ckpt"), str(portpicker.pick_unused_port())
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen([sys.executable, "-c", _CHECKPOINTER, str(i), port, directory],
                              cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    for i, (out, _) in enumerate(outs):
        got = json.loads(out.strip().splitlines()[-1])
        assert got == {"w": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], "step": 7,
                       "data": {"next_index": 10 + i}}
    with open(os.path.join(directory, "7", "data", "metadata")) as f:
        assert json.load(f) == {checkpointing.PER_PROCESS: [{"next_index": 10},
                                                            {"next_index": 11}]}
    # One process cannot take over differing host positions; the train state alone loads.
    ckpt = checkpointing.TrainCheckpointer(directory)
    target = {"w": np.zeros((2, 3)), "step": np.asarray(0, np.int32)}
    with pytest.raises(ValueError, match="from 2 processes and differ"):
        ckpt.restore(7, target)
    state, data = ckpt.restore(7, target, with_data=False)
    ckpt.close()
    assert data is None and int(state["step"]) == 7


def test_global_batches_do_not_depend_on_the_host_count():
    cfg = dict(synthetic_size=24, val_fraction=0.25)
    one = make_train_iterator(cfg, batch_size=8, seed=5, image_size=64)
    hosts = [make_train_iterator(cfg, batch_size=4, seed=5, image_size=64, shard_index=i,
                                 shard_count=2) for i in range(2)]
    for _ in range(4):  # 18 samples: crosses an epoch boundary
        whole, parts = next(one), [next(h) for h in hosts]
        for key in whole:
            np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))
    assert hosts[0].get_state() == hosts[1].get_state() == one.get_state()
    evals = [list(make_eval_iterator(cfg, batch_size=2, image_size=64, shard_index=i,
                                     shard_count=2)) for i in range(2)]
    whole = list(make_eval_iterator(cfg, batch_size=4, image_size=64))
    assert len(whole) == len(evals[0]) == len(evals[1]) == 1
    np.testing.assert_array_equal(whole[0]["alpha"], np.concatenate(
        [evals[0][0]["alpha"], evals[1][0]["alpha"]]))


SCRIPTS = ("local_cpu.sh", "single_node_gpu.sh", "slurm_gpu.sh", "tpu_pod.sh", "common.sh")


def test_launch_scripts_parse_and_pass_shellcheck():
    for name in SCRIPTS:
        proc = subprocess.run(["bash", "-n", os.path.join(LAUNCH, name)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, (name, proc.stderr)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (bash -n passed)")
    proc = subprocess.run(["shellcheck", "-x", *SCRIPTS], cwd=LAUNCH, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout


def _dry_run(script, *args, **env):
    proc = subprocess.run(["bash", os.path.join(LAUNCH, script), *args], cwd=REPO,
                          env=dict(os.environ, DRY_RUN="1", PYTHON="python3", **env),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


def test_launch_dry_runs_print_the_commands():
    lines = _dry_run("local_cpu.sh", "--config.num_train_steps=3", NUM_PROCESSES="3",
                     DEVICES_PER_PROCESS="2", PORT="4321")
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert "python3 -m modnet_jax.train" in line and f"--process_id {i}" in line
        assert "--coordinator localhost:4321 --num_processes 3" in line
        assert "--xla_force_host_platform_device_count=2" in line
        assert "--config.batch_size=6" in line and line.count("device_count") == 1
    (line,) = _dry_run("single_node_gpu.sh", GPUS="0,1,2,3", PER_DEVICE_BATCH="8",
                       SCALE_LR="1")
    assert line.startswith("env CUDA_VISIBLE_DEVICES=0,1,2,3 python3 -m modnet_jax.train")
    assert "--config.batch_size=32 --config.optimizer.learning_rate=0.02" in line
    assert line.endswith("--config.eval_batch_size=32")
    # Without GPUS the count comes from CUDA_VISIBLE_DEVICES (what JAX will see).
    (line,) = _dry_run("single_node_gpu.sh", CUDA_VISIBLE_DEVICES="2,3", PER_DEVICE_BATCH="4")
    assert "--config.batch_size=8 --config.eval_batch_size=8" in line
    (line,) = _dry_run("slurm_gpu.sh", NODES="2", GPUS_PER_NODE="4", MODE="per_node")
    assert line.startswith("srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=32")
    assert "--distributed" in line and "--local_device_ids 0,1,2,3" in line
    # A resubmitted job (new id, same name) must find its checkpoints: no job id in WORKDIR.
    (line,) = _dry_run("slurm_gpu.sh", NODES="1", GPUS_PER_NODE="1", SLURM_JOB_ID="123",
                       SLURM_JOB_NAME="d646", REPO_DIR=REPO)
    assert f"--workdir {REPO}/workdir/d646" in line
    (line,) = _dry_run("slurm_gpu.sh", NODES="2", GPUS_PER_NODE="4", CPUS_PER_GPU="6")
    assert "--ntasks-per-node=4 --cpus-per-task=6" in line
    (line,) = _dry_run("tpu_pod.sh", "--config.data.root=/data/my set", TPU_NAME="pod",
                       ZONE="us-central2-b", WORKDIR="/mnt/shared/run")
    assert line.startswith("gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b "
                           "--worker=all")
    assert "--distributed --config configs/supervised_tpu.py --workdir /mnt/shared/run" in line
    assert "'\\''--config.data.root=/data/my set'\\''" in line  # quoted for the remote shell
    proc = subprocess.run(["bash", os.path.join(LAUNCH, "tpu_pod.sh")], cwd=REPO,
                          env=dict(os.environ, DRY_RUN="1"), capture_output=True, text=True)
    assert proc.returncode == 2 and "set TPU_NAME" in proc.stderr
