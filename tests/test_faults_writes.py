"""Faults (issue 31), the writing side: every result file of every command (evaluate's
reports, training's metrics, sample grids and config, synthetic datasets, converted weights)
is written whole or not at all, and a failed write says what the OS said, naming the file.
Guarantees listed in docs/faults.md.

The disks are real when the test can mount them (a full tmpfs and a read-only one, in a user
namespace); elsewhere the OS's write call is replaced by one that fails with ENOSPC half-way,
as a full disk does.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}

# Each writer against a folder where nothing can be written: prints one JSON line per writer,
# {"writer", "raised": is it a WriteError (an OSError), "message", "status" (commands)}.
_WRITERS = r"""
import contextlib, errno, io, json, os, sys
import numpy as np
target, simulate = sys.argv[1], sys.argv[2] == "simulate"
if simulate:  # no tmpfs here: a disk that takes half of each write, then is full
    real_write = os.write
    def full_disk(fd, data):
        real_write(fd, bytes(memoryview(data)[:len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.write = full_disk
from modnet_jax.imaging.output import WriteError

def attempt(name, write):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            status = write()
        print(json.dumps({"writer": name, "raised": False, "status": status,
                          "stderr": err.getvalue()}))
    except SystemExit as exc:
        print(json.dumps({"writer": name, "raised": False, "status": exc.code,
                          "stderr": err.getvalue()}))
    except Exception as exc:
        print(json.dumps({"writer": name, "raised": isinstance(exc, WriteError),
                          "type": type(exc).__name__, "message": str(exc)}))
    sys.stdout.flush()

def evaluate_reports():
    from modnet_jax import evaluate
    rows = [{"name": "a", "region": "all", "mse": 0.5}]
    evaluate.write_reports(os.path.join(target, "eval"), {"per_image.csv": (
        ("name", "region", "mse"), rows)}, {"all": {"mse": 0.5, "count": 1}}, [], {"x": 1})

def reporter():
    from modnet_jax.training.reporting import Reporter
    rep = Reporter(os.path.join(target, "run"), 10, 0, 2, progress=False)
    try:
        rep.scalars(1, "train", {"total": 0.25})
    finally:
        rep.close()

def sample_grid():
    from modnet_jax.training.reporting import Reporter
    rep = Reporter(os.path.join(target, "run2"), 10, 0, 2, progress=False)
    try:
        noise = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
        rep.grid(1, noise, np.full((2, 64, 64, 1), 0.5, np.float32), noise[..., :1])
    finally:
        rep.close()

def run_config():
    from modnet_jax.training.run_config import save_run_config
    save_run_config(os.path.join(target, "run3"), {"seed": 1, "data": {"root": "x" * 3000}})

def synthetic():
    from modnet_jax.data.synthetic import write_synthetic_folder
    write_synthetic_folder(os.path.join(target, "synth"), 1, height=64)

def converted():
    from modnet_jax.interop import torch_io
    state = {"w": np.random.default_rng(0).random((64, 64), np.float32)}
    return torch_io.run_cli(lambda _: torch_io.save_state_dict_file(
        state, os.path.join(target, "model.ckpt")), None)

def train_checkpoint():  # written in the background, its failure raised when waited for
    from modnet_jax.checkpointing import TrainCheckpointer
    ckpt = TrainCheckpointer(os.path.join(target, "run4", "checkpoints"), keep_best=0)
    ckpt.save(1, {"params": {"w": np.random.default_rng(0).random(1 << 16, np.float32)}},
              {"position": 1})
    ckpt.close()

def video():  # OpenCV's writer reports no failed write: the file is read back
    from modnet_jax.imaging.video import open_writer
    writer = open_writer(os.path.join(target, "clip.mp4"), 25.0, 320, 240)
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for i in range(40):
        writer.write(np.roll(noise, 7 * i, axis=1))
    writer.release()

def model_checkpoint():  # convert_from_torch, exports
    from modnet_jax.checkpointing import save_variables
    save_variables(os.path.join(target, "export"), {"params": {"w": np.ones(1 << 16)}})

for name, write in [("evaluate_reports", evaluate_reports), ("metrics", reporter),
                    ("sample_grid", sample_grid), ("run_config", run_config),
                    ("synthetic", synthetic), ("converted", converted), ("video", video),
                    ("train_checkpoint", train_checkpoint),
                    ("model_checkpoint", model_checkpoint)]:
    if not (simulate and name.endswith(("checkpoint", "video"))):  # writes without os.write
        attempt(name, write)
"""

# Files the writers may leave: tensorboardX's event files (opened before anything is written;
# a record format whose readers skip a cut tail), the metrics log cut back to no record, and
# Orbax's temporary folder of a background save that failed (never a step).
_ALLOWED = ("events.out.tfevents",)


def _left(files):
    """The files of {relative path: size} that are none of the above."""
    return sorted(f for f, size in files.items() if f != "filler"
                  and not os.path.basename(f).startswith(_ALLOWED)
                  and not (os.path.basename(f) == "metrics.jsonl" and size == 0)
                  and not f.startswith("run4/checkpoints/1.orbax-checkpoint-tmp"))


def _run_writers(tmp_path):
    """(results by writer, files left, stderr) on a full disk: a tmpfs filled to the last
    byte where one can be mounted, else the simulated one (without the checkpoints)."""
    full = tmp_path / "full"
    full.mkdir()
    script = tmp_path / "writers.py"
    script.write_text(_WRITERS)
    fill = (f"mount -t tmpfs -o size=256k none {full} && "
            f"(dd if=/dev/zero of={full}/filler bs=4k 2>/dev/null; true) && ")
    mounted = shutil.which("unshare") and subprocess.run(
        ["unshare", "-rm", "sh", "-c", fill + f"{sys.executable} {script} {full} real && "
         f"find {full} -type f -printf 'file %P %s\\n'"], env=ENV, capture_output=True,
        text=True, timeout=600)
    if mounted and mounted.returncode == 0:
        lines = mounted.stdout.splitlines()
        files = {line.split()[1]: int(line.split()[2]) for line in lines
                 if line.startswith("file ")}
        assert "filler" in files, mounted.stdout  # the listing sees the disk's files
    else:
        done = mounted = subprocess.run([sys.executable, str(script), str(full), "simulate"],
                                        env=ENV,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        lines = done.stdout.splitlines()
        files = {os.path.relpath(os.path.join(d, n), full): os.path.getsize(os.path.join(d, n))
                 for d, _, names in os.walk(full) for n in names}
    results = [json.loads(line) for line in lines if line.startswith("{")]
    return {r["writer"]: r for r in results}, _left(files), mounted.stderr


def test_every_writer_on_a_full_disk_says_so_and_leaves_nothing(tmp_path):
    results, left, stderr = _run_writers(tmp_path)
    full = str(tmp_path / "full")
    wanted = {"evaluate_reports": "eval", "metrics": "metrics.jsonl", "sample_grid": "step_",
              "run_config": "config.json", "synthetic": "synth", "converted": "model.ckpt",
              "train_checkpoint": "checkpoints", "model_checkpoint": "export",
              "video": "clip.mp4"}
    assert set(wanted) - set(results) <= {"train_checkpoint", "model_checkpoint", "video"}, \
        results
    for writer, result in results.items():
        names = wanted[writer]
        if writer == "converted":  # a command: its one error line and its failure status
            assert result["status"] == 1, result
            lines = result["stderr"].splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result
            message = lines[0]
        else:
            assert result["raised"], result  # a WriteError: an InputError and an OSError
            message = result["message"]
        assert "No space left on device" in message and full in message, (writer, message)
        assert names in message, (writer, message)
    assert left == [], f"half-written files left behind: {left}"
    assert "Traceback" not in stderr, stderr[-3000:]  # background writers' errors contained


def test_a_write_failure_ends_a_training_run_with_one_line(monkeypatch, capsys):
    """The command's side: a WriteError in the middle of a run (the disk filled up) is its
    one error line and exit status 1, not a traceback."""
    import errno

    from modnet_jax import train as train_cli
    from modnet_jax.imaging.output import WriteError
    from modnet_jax.training import loop

    def disk_full(config, workdir, checked):
        error = WriteError(f"{workdir}/samples/step_0000010.png: cannot write (No space left "
                           "on device)")
        error.errno = errno.ENOSPC
        raise error

    monkeypatch.setattr(loop, "train", disk_full)
    with pytest.raises(SystemExit) as caught:
        train_cli._train({}, "/nonexistent/wd", None)
    assert caught.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: /nonexistent/wd/samples/step_0000010.png: cannot write (No space "
                   "left on device)"]


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare to mount a tmpfs")
def test_a_read_only_file_system_is_reported_as_itself(tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    code = ("import sys\nfrom modnet_jax import evaluate\n"
            "try:\n    evaluate.write_reports(sys.argv[1], {'a.csv': (('n',), [{'n': 1}])}, "
            "{}, [], {})\nexcept OSError as exc:\n    print(exc)\n")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro none {readonly}"
                           f" && {sys.executable} -c \"{code}\" {readonly}"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.stdout.strip() == f"{readonly / 'a.csv'}: cannot write (Read-only file system)", \
        done.stdout + done.stderr


_CUT_VIDEO = r"""
import os, sys
import numpy as np
from modnet_jax.imaging.output import WriteError
from modnet_jax.imaging.video import open_writer
path = os.path.join(sys.argv[1], "clip.avi")
writer = open_writer(path, 25.0, 320, 240)  # opens: the disk has room for its first bytes
noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
for i in range(40):
    writer.write(np.roll(noise, 7 * i, axis=1))
try:
    writer.release()
    print("released")
except WriteError as exc:
    print("WriteError:", exc)
print("left:", sorted(os.listdir(sys.argv[1])))
"""


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare to mount a tmpfs")
def test_a_video_cut_by_a_full_disk_is_reported_and_removed(tmp_path):
    """OpenCV's writer says nothing when the disk fills mid-video: the file is read back."""
    small = tmp_path / "small"
    small.mkdir()
    script = tmp_path / "cut.py"
    script.write_text(_CUT_VIDEO)
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=128k none "
                           f"{small} && {sys.executable} {script} {small}"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WriteError:" in done.stdout and "No space left on device" in done.stdout, done.stdout
    assert str(small / "clip.avi") in done.stdout, done.stdout
    assert "left: []" in done.stdout, done.stdout  # neither the video nor its temporary file
