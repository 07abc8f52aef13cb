"""A new user's first hour (issue 18): every command-line mistake ends in one ``error:`` line
with a non-zero exit status and writes nothing; runs remember their config and architecture;
one set of conventions (flag spellings, --version, --help, exit statuses) across commands;
EXIF orientation applied to photos and their mattes alike.

Subprocess checks stop before JAX compiles anything (most before it is imported)."""

import json
import logging
import os
import re
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from modnet_jax import __version__, checkpointing
from modnet_jax.data import sources
from modnet_jax.imaging import decode as images
from modnet_jax.training import cli, run_config
from modnet_jax.training.config import supervised_config
from train_driver import run_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _run(args, cwd, module="modnet_jax.train"):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


def _one_error_line(proc, status=2):
    """The single stderr line of a failed command (asserted: exit status, no traceback)."""
    assert proc.returncode == status, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    return lines[0]


# --- train: the config and the workdir, checked before anything is built ------------------

MISTAKES = [
    (["--config", "supervised:fast"], ["'fast'", "supervised:quick", "supervised:tiny"]),
    (["--config", "supervised:tiny", "--config.batchsize=4"],
     ["--config.batchsize", "did you mean --config.batch_size?"]),
    (["--config=supervised:tiny", "--config.model.lr-brnch=easpp"],
     ["did you mean --config.model.lr_branch?"]),
    (["--config", "nosuch:quick"], ["'nosuch'", "supervised, soc"]),
    (["--config", "configs/supervised.py:quick"], ["--config supervised:quick"]),  # no clone
    (["--config", "supervised_gpu:quick"], ["has no variants"]),
    ([], ["--config is required", "supervised:quick"]),
    (["--config", "supervised:tiny", "--config.batch_size=abc"], ["batch_size", "'abc'"]),
    (["--config", "supervised:tiny", "--num-processes=x"], ["num_processes", "'x'"]),
    (["--config", "supervised:tiny", "--workdirr=x"], ["workdirr", "workdir"]),
    (["--config", "supervised:quick", "--config.image-sise=64"],
     ["did you mean --config.image_size?"]),  # dashes in a field name, closest field
]


class _Proc:
    def __init__(self, status, stdout, stderr):
        self.returncode, self.stdout, self.stderr = status, stdout, stderr


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A folder outside the clone, the workdirs the driver's cases use, and their results."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    afile = cwd / "notes.txt"
    afile.write_text("mine")
    run = cwd / "run"
    _fake_run(run)
    snapshot = sorted(os.listdir(run)), (run / "config.json").read_text()
    other = cwd / "other"  # resumable, then stopped by its (empty) dataset before compiling
    _fake_run(other)
    (cwd / "empty" / "fg").mkdir(parents=True)
    (cwd / "empty" / "alpha").mkdir()
    cases = [argv for argv, _ in MISTAKES] + [
        ["--config", "supervised:tiny", "--workdir", str(afile)],
        ["--config", "supervised:tiny", "--workdir", str(run), "--config.model.lr_branch=easpp"],
        ["--config", "supervised:tiny", "--workdir", str(other), "--config.image_size=96",
         "--config.num_devices=1", "--config.data.layout=adobe",
         f"--config.data.root={cwd / 'empty'}"],
    ]
    # JAX_PLATFORMS unset, as for a user: JAX probes its backends (TPU included), whose
    # "Unable to initialize backend 'tpu'" line must not show (checked by the resume case).
    env = {k: v for k, v in ENV.items() if k != "JAX_PLATFORMS"}
    results = [_Proc(*r) for r in run_train(cases, cwd, env, timeout=300)]
    return cwd, afile, run, snapshot, results


@pytest.mark.parametrize("index", range(len(MISTAKES)))
def test_train_config_mistakes_are_one_line(outside, index):
    """Run outside the clone: the shipped configs are found by name from any folder; every
    mistake is one line and writes nothing (no workdir)."""
    cwd, _, _, _, results = outside
    line = _one_error_line(results[index])
    for text in MISTAKES[index][1]:
        assert text in line
    assert sorted(os.listdir(cwd)) == ["empty", "notes.txt", "other", "run"]


def test_workdir_that_is_a_file(outside):
    cwd, afile, _, _, results = outside
    line = _one_error_line(results[len(MISTAKES)])
    assert str(afile) in line and "not a folder" in line
    assert afile.read_text() == "mine"


def test_resume_with_another_architecture_is_one_line(outside):
    _, _, run, snapshot, results = outside
    line = _one_error_line(results[len(MISTAKES) + 1])
    assert "lr_branch 'se' -> 'easpp'" in line and str(run) in line
    assert (sorted(os.listdir(run)), (run / "config.json").read_text()) == snapshot


def test_resume_with_other_changes_warns(outside):
    """Resumable: one warning line listing the changed fields (here the run then stops on
    its empty dataset, before any work: exit status 2, one error line). Nothing else on
    stderr: no TPU-backend probe line, no dataset summary repeated."""
    result = outside[-1][len(MISTAKES) + 2]
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "Traceback" not in result.stderr
    assert "WARNING resuming" in lines[0] and "image_size 64 -> 96" in lines[0]
    assert lines[1].startswith("error: ") and "fg" in lines[1]


def test_config_by_name_is_the_config_file():
    by_name = cli.load_config(cli.resolve_config_spec("supervised:quick"))
    by_path = cli.load_config(cli.resolve_config_spec(os.path.join(REPO, "configs",
                                                                   "supervised.py:quick")))
    assert by_name.to_dict() == by_path.to_dict()
    assert (by_name.image_size, by_name.num_train_steps) == (96, 300)
    assert cli.load_config(cli.resolve_config_spec("soc:tiny")).mode == "soc"


def _fake_run(workdir, **model):
    """A workdir as a run leaves it: config.json and a checkpoint recording its model."""
    config = supervised_config()
    config.update_from_flattened_dict({"image_size": 64, **{f"model.{k}": v
                                                            for k, v in model.items()}})
    run_config.save_run_config(str(workdir), config)
    checkpointing.save_variables(str(workdir / "checkpoints"), {"params": {"w": np.ones(2)}},
                                 step=4, model_config=config.model)
    return config


def test_resume_checks_in_process(tmp_path):
    workdir = tmp_path / "run"
    saved = _fake_run(workdir, hr_channels=16)
    assert checkpointing.model_metadata(str(workdir))["hr_channels"] == 16
    assert run_config.load_run_config(str(workdir))["model"]["hr_channels"] == 16
    same = supervised_config()
    same.model.hr_channels = 16
    same.image_size = 96  # not architecture: resumable, listed
    same.optimizer.learning_rate = 0.5
    assert run_config.check_resume(str(workdir), same) == [
        "image_size 64 -> 96", f"optimizer.learning_rate {saved.optimizer.learning_rate!r} -> 0.5"]
    with pytest.raises(run_config.ResumeError, match="hr_channels 16 -> 32"):
        run_config.check_resume(str(workdir), supervised_config())
    # A workdir whose config.json is gone still knows its architecture from the checkpoint.
    os.remove(workdir / "config.json")
    with pytest.raises(run_config.ResumeError, match="hr_channels 16 -> 32"):
        run_config.check_resume(str(workdir), supervised_config())
    assert run_config.check_resume(str(tmp_path / "fresh"), supervised_config()) == []
    init = supervised_config()
    init.init_from = str(workdir)
    with pytest.raises(run_config.ResumeError, match=r"init_from .* \(hr_channels 16 -> 32\)"):
        run_config.check_init_from(init)


def test_train_help_and_version(tmp_path):
    proc = _run(["--help"], tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    out = proc.stdout
    assert "(required)" in out and "--num-processes" in out
    assert "--workdir runs/ft \\\n      --config.init_from" in out  # line breaks kept
    version = _run(["--version"], tmp_path)
    assert (version.returncode, version.stdout) == (0, f"modnet_jax {__version__}\n")


def test_flag_spellings():
    argv = ["train", "--num-processes=2", "--process-id", "1", "--no-distributed",
            "--config.data.bg-root=/a-b_c", "--work-dir=x", "positional-arg"]
    assert cli.normalise_argv(argv, ["num_processes", "process_id", "distributed"]) == [
        "train", "--num_processes=2", "--process_id", "1", "--nodistributed",
        "--config.data.bg_root=/a-b_c", "--work-dir=x", "positional-arg"]
    from modnet_jax.cliutil import dashed

    assert dashed(["--max_short_side=3", "--root", "a_b", "--", "--x_y"]) == [
        "--max-short-side=3", "--root", "a_b", "--", "--x_y"]
    from modnet_jax.data import prepare

    args = prepare.build_parser().parse_args(dashed(["--layout", "images", "--root", "r",
                                                     "--output", "o", "--max_short_side", "5"]))
    assert args.max_short_side == 5


# --- a quiet start --------------------------------------------------------------------------

def test_log_lines_go_around_the_progress_line(tmp_path, capsys):
    from modnet_jax.training import reporting

    reporter = reporting.Reporter(str(tmp_path), total_steps=4, start_step=0, batch_size=2)
    handler = reporting.LogHandler()
    logger = logging.getLogger("modnet_jax.test_cli")
    logger.addHandler(handler)
    try:
        for step in (1, 2):
            reporter.step_done(step, 0.5)
        reporter.refresh()
        logger.warning("a message")
    finally:
        logger.removeHandler(handler)
        reporter.close()
    err = capsys.readouterr().err
    pieces = [p.strip() for p in re.split(r"[\r\n]", err)]
    at = pieces.index("a message")  # a line of its own: the bar was cleared before it
    assert pieces[at - 1] == "" and any(p.startswith("train") for p in pieces[:at])
    assert any(p.startswith("train loss") for p in pieces[at + 1:])  # and redrawn after it
    assert not reporting._DRAWING


def test_dataset_summary_logged_once(caplog):
    from modnet_jax.data import pipeline

    caplog.set_level(logging.INFO, logger="modnet_jax.data")
    pipeline._LOGGED.clear()  # as in a fresh process
    cfg = {"synthetic_size": 16, "val_fraction": 0.25, "synthetic_seed": 12345}
    for _ in range(3):
        pipeline.validate_dataset(cfg, image_size=64, split="train")
    pipeline.validate_dataset(cfg, image_size=64, split="val")
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in messages if m.startswith("data[")] == ["data[train]",
                                                                             "data[val]"]


# --- EXIF orientation: photo and matte turned alike, everywhere ---------------------------

def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF block (little-endian TIFF, IFD0 = one orientation entry)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _photo(height=24, width=40):
    rng = np.random.default_rng(0)
    bgr = np.kron(rng.integers(0, 256, (height // 8, width // 8, 3)), np.ones((8, 8, 1)))
    return bgr.astype(np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_opencv(tmp_path, orientation):
    """OpenCV's own EXIF rotation (IMREAD_COLOR) is the independent reference."""
    ok, jpeg = cv2.imencode(".jpg", _photo(), [cv2.IMWRITE_JPEG_QUALITY, 100])
    data = _with_orientation(jpeg.tobytes(), orientation)
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    assert images.exif_orientation(data) == orientation
    expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(images.decode_rgb(str(path)), expected)


def test_training_pair_turns_the_matte_with_its_photo(tmp_path):
    """A portrait stored sideways (EXIF 6) with its PNG matte in stored order: both come out
    upright (24 wide, 40 high), and the matte still covers the same pixels."""
    photo = _photo()
    ok, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 100])
    (tmp_path / "fg").mkdir()
    (tmp_path / "alpha").mkdir()
    (tmp_path / "fg" / "a.jpg").write_bytes(_with_orientation(jpeg.tobytes(), 6))
    matte = np.zeros(photo.shape[:2], np.uint8)
    matte[:8, :16] = 255  # the stored top-left block
    cv2.imwrite(str(tmp_path / "alpha" / "a.png"), matte)
    source = sources.ForegroundAlphaSource([("a", str(tmp_path / "fg" / "a.jpg"),
                                             str(tmp_path / "alpha" / "a.png"))])
    sample = source[0]
    assert sample["fg"].shape == (40, 24, 3) and sample["alpha"].shape == (40, 24)
    np.testing.assert_array_equal(sample["alpha"], np.rot90(matte, -1))  # 90 deg clockwise
    assert sample["alpha"][:16, -8:].min() == 255  # the block is now top-right


# --- predict's inputs: folders (recursive or reported), patterns, stable output names --------

def _tree(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_inputs_recursive_mirrors_and_plain_reports_subfolders(tmp_path):
    from modnet_jax.inference.images import collect_inputs

    _tree(tmp_path / "imgs", ["a.jpg", "notes.txt", "x/a.jpg", "x/y/b.png", "z/clip.mp4"])
    root = str(tmp_path / "imgs")
    plain = collect_inputs([root])
    assert [s for _, s in plain.images] == ["a"] and plain.videos == []
    assert plain.skipped_dirs == [os.path.join(root, "x"), os.path.join(root, "z")]
    deep = collect_inputs([root], recursive=True)
    assert [s for _, s in deep.images] == ["a", "x/a", "x/y/b"]
    assert [s for _, s in deep.videos] == ["z/clip"] and deep.skipped_dirs == []


def test_inputs_patterns_and_name_clashes(tmp_path):
    from modnet_jax.inference.images import collect_inputs

    _tree(tmp_path, ["p/x.jpg", "p/x.png", "q/x.jpg", "p/y.jpg"])
    pattern = str(tmp_path / "p" / "*.jpg")
    got = collect_inputs([pattern, str(tmp_path / "q" / "x.jpg"), str(tmp_path / "p" / "x.jpg")])
    assert [(os.path.relpath(p, tmp_path), s) for p, s in got.images] == [
        ("p/x.jpg", "x"), ("p/y.jpg", "y"), ("q/x.jpg", "x_2")]  # p/x.jpg given twice: once
    swapped = collect_inputs([str(tmp_path / "q" / "x.jpg"), pattern])
    assert dict((os.path.relpath(p, tmp_path), s) for p, s in swapped.images)["q/x.jpg"] == "x_2"
    same_folder = collect_inputs([str(tmp_path / "p")])
    assert [s for _, s in same_folder.images] == ["x", "x_2", "y"]  # x.jpg, x.png by path
    missing = collect_inputs([str(tmp_path / "nothing*.jpg")])
    assert missing.images == [] and "matches" in missing.errors[0][1]


def test_inference_reads_photo_and_matte_upright(tmp_path):
    """evaluate's case: a sideways-stored JPEG (EXIF 6) and its PNG matte in stored order."""
    from modnet_jax.inference.images import orientation_of, read_image, read_matte

    photo = _photo()
    ok, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 100])
    (tmp_path / "a.jpg").write_bytes(_with_orientation(jpeg.tobytes(), 6))
    matte = np.zeros(photo.shape[:2], np.uint8)
    matte[:8, :16] = 255
    cv2.imwrite(str(tmp_path / "a.png"), matte)
    image = read_image(str(tmp_path / "a.jpg"))
    alpha = read_matte(str(tmp_path / "a.png"), orientation_of(str(tmp_path / "a.jpg")))
    assert image.shape == (40, 24, 3) and alpha.shape == (40, 24)
    np.testing.assert_array_equal(alpha, np.rot90(matte, -1) / 255.0)
    np.testing.assert_array_equal(image, images.decode_rgb(str(tmp_path / "a.jpg")))


def test_model_config_for_reads_the_record(tmp_path):
    variables = {"params": {"w": np.ones(2)}}
    recorded = checkpointing.save_variables(str(tmp_path / "r"), variables,
                                            model_config={"lr_branch": "easpp",
                                                          "hr_channels": 16})
    assert checkpointing.model_config_for(recorded) == {
        "lr_branch": "easpp", "hr_channels": 16, "easpp_rates": [1, 2, 4, 8]}
    assert checkpointing.model_config_for(recorded, lr_branch="easpp")["lr_branch"] == "easpp"
    with pytest.raises(ValueError, match="records lr_branch='easpp', but --lr-branch se"):
        checkpointing.model_config_for(recorded, lr_branch="se")
    foreign = checkpointing.save_variables(str(tmp_path / "f"), variables)  # no record
    assert checkpointing.model_metadata(foreign) is None
    assert checkpointing.model_config_for(foreign, hr_channels=16) == {
        "lr_branch": "se", "hr_channels": 16, "easpp_rates": [1, 2, 4, 8]}


# --- predict / evaluate: the checkpoint's architecture, folders, EXIF, nothing left on failure

def _cli(fn, argv, capsys):
    rc = fn(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


@pytest.fixture(scope="module")
def easpp_checkpoint(tmp_path_factory):
    """An e-ASPP, hr_channels=16 model saved with its record (as training saves it). Random
    weights of the right shapes (abstract init: nothing compiled); the mattes are noise, the
    commands' plumbing is what is checked."""
    from modnet_jax.models.random_weights import random_variables

    cfg = {"lr_branch": "easpp", "hr_channels": 16}
    variables = random_variables(0, cfg)
    return checkpointing.save_variables(str(tmp_path_factory.mktemp("easpp")), variables,
                                        model_config=cfg)


def _sideways(folder, name):
    """A photo stored 64 x 96 with EXIF orientation 6 (upright: 96 x 64); returns its
    upright pixels as read."""
    ok, jpeg = cv2.imencode(".jpg", _photo(64, 96), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (folder / name).write_bytes(_with_orientation(jpeg.tobytes(), 6))
    return images.decode_rgb(str(folder / name))


# Every image below is 96 x 64 upright and runs with batch 1 at --ref-size 64: one compiled
# program for all the commands (persistent compilation cache).
COMMON = ["--ref-size", "64", "--batch-size", "1", "--quiet"]


def test_predict_reads_architecture_recursion_patterns_exif(easpp_checkpoint, tmp_path, capsys):
    """No --lr-branch/--hr-channels; a folder with a sub-folder (mirrored with --recursive,
    reported without); a quoted pattern; a sideways JPEG predicted upright."""
    from modnet_jax import predict

    (tmp_path / "in" / "sub").mkdir(parents=True)
    upright = _sideways(tmp_path / "in", "a.jpg")
    assert upright.shape == (96, 64, 3)
    cv2.imwrite(str(tmp_path / "in" / "sub" / "a.png"), upright[:, :, ::-1])  # same stem
    out = tmp_path / "out"
    common = ["--checkpoint", easpp_checkpoint, *COMMON]
    pattern = str(tmp_path / "in" / "s*" / "*.png")  # quoted: predict expands it
    rc, _, err = _cli(predict.cli, [str(tmp_path / "in"), pattern, "--output", str(out),
                                    *common], capsys)
    assert rc == 0 and "warning: 1 sub-folder(s) not read" in err and "--recursive" in err
    assert sorted(os.listdir(out)) == ["a_2_matte.png", "a_matte.png"]  # in/a.jpg, in/sub/a.png
    top = cv2.imread(str(out / "a_matte.png"), cv2.IMREAD_UNCHANGED)
    assert top.shape == (96, 64)
    np.testing.assert_array_equal(top, cv2.imread(str(out / "a_2_matte.png"),
                                                  cv2.IMREAD_UNCHANGED))  # same upright pixels
    rc, _, err = _cli(predict.cli, [str(tmp_path / "in"), "--output", str(out / "deep"),
                                    "--recursive", *common], capsys)
    assert rc == 0, err
    assert sorted(os.listdir(out / "deep")) == ["a_matte.png", "sub"]
    np.testing.assert_array_equal(top, cv2.imread(str(out / "deep" / "sub" / "a_matte.png"),
                                                  cv2.IMREAD_UNCHANGED))
    # A flag contradicting the record is refused, before anything is written.
    rc, _, err = _cli(predict.cli, [str(tmp_path / "in" / "a.jpg"), "--output",
                                    str(out / "no"), "--lr-branch", "se", *common], capsys)
    assert rc == 2 and err.count("\n") == 1 and "records lr_branch='easpp'" in err
    assert not (out / "no").exists()


def test_evaluate_reads_architecture_and_turns_mattes(easpp_checkpoint, tmp_path, capsys):
    """The issue's case: EXIF 6 image, matte in stored order (64 x 96); layout p3m10k (the
    training name; the old p3m still works)."""
    from modnet_jax import evaluate

    for sub in ("blurred_image", "mask"):
        (tmp_path / "ds" / sub).mkdir(parents=True)
    _sideways(tmp_path / "ds" / "blurred_image", "p.jpg")
    matte = np.zeros((64, 96), np.uint8)
    matte[:, :40] = 255
    cv2.imwrite(str(tmp_path / "ds" / "mask" / "p.png"), matte)
    for layout in ("p3m10k", "p3m"):
        out = tmp_path / f"eval_{layout}"
        rc, table, err = _cli(evaluate.cli, ["--checkpoint", easpp_checkpoint, "--data",
                                             str(tmp_path / "ds"), "--layout", layout,
                                             "--output", str(out), *COMMON], capsys)
        assert rc == 0, err
        report = json.loads((out / "summary.json").read_text())
        assert report["skipped"] == [] and report["metrics"]["image"]["count"] == 1


def test_failed_predict_and_evaluate_leave_nothing(tmp_path, capsys):
    from modnet_jax import evaluate, predict

    (tmp_path / "x.png").write_bytes(cv2.imencode(".png", _photo())[1].tobytes())
    rc, _, err = _cli(predict.cli, ["--checkpoint", str(tmp_path / "nope"), str(tmp_path / "x.png"),
                                    "--output", str(tmp_path / "out")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "nope" in err
    rc, _, err = _cli(predict.cli, ["--checkpoint", str(tmp_path / "nope"),
                                    str(tmp_path / "none*.jpg"), "--output",
                                    str(tmp_path / "out")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "matches" in err
    for flag in ("--cpu-devices", "--video-batch-size"):
        rc, _, err = _cli(predict.cli, ["--checkpoint", str(tmp_path / "nope"),
                                        str(tmp_path / "x.png"), "--output",
                                        str(tmp_path / "out"), flag, "0"], capsys)
        assert rc == 2 and err.count("\n") == 1 and f"{flag} must be >= 1, got 0" in err, err
    (tmp_path / "ds" / "image").mkdir(parents=True)
    (tmp_path / "ds" / "image" / "x.png").write_bytes((tmp_path / "x.png").read_bytes())
    rc, _, err = _cli(evaluate.cli, ["--checkpoint", str(tmp_path / "nope"), "--data",
                                     str(tmp_path / "ds"), "--output", str(tmp_path / "ev")],
                      capsys)
    assert rc == 2 and err.count("\n") == 1 and "nope" in err
    assert sorted(os.listdir(tmp_path)) == ["ds", "x.png"]


def test_version_on_every_command(capsys):
    """--version of every command (the train CLI's is checked by a subprocess above)."""
    from modnet_jax import convert_from_torch, convert_to_torch, evaluate, predict
    from modnet_jax.data import prepare

    for main in (predict.main, evaluate.main, prepare.main, convert_to_torch.parse_args,
                 convert_from_torch.parse_args):
        with pytest.raises(SystemExit) as exit_:
            main(["--version"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out == f"modnet_jax {__version__}\n"


def test_prepare_writes_tagged_photos_upright(tmp_path):
    """data.prepare follows the rule: a tagged photo (not resized) is rewritten upright
    without its tag and its matte turned alike, so the copy reads as the original does."""
    from modnet_jax.data import prepare

    photo = _photo()
    ok, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 100])
    for sub in ("fg", "alpha"):
        (tmp_path / "src" / sub).mkdir(parents=True)
    (tmp_path / "src" / "fg" / "a.jpg").write_bytes(_with_orientation(jpeg.tobytes(), 6))
    matte = np.zeros(photo.shape[:2], np.uint8)
    matte[:8, :16] = 255
    cv2.imwrite(str(tmp_path / "src" / "alpha" / "a.png"), matte)
    report, _ = prepare.prepare("adobe", str(tmp_path / "src"), str(tmp_path / "out"), 768, jobs=1)
    assert (report.copied, report.skipped) == (1, [])
    copy = (tmp_path / "out" / "fg" / "a.jpg").read_bytes()
    assert images.exif_orientation(copy) == 1
    pairs = [("a", str(root / "fg" / "a.jpg"), str(root / "alpha" / "a.png"))
             for root in (tmp_path / "src", tmp_path / "out")]
    original, prepared = (sources.ForegroundAlphaSource([p])[0] for p in pairs)
    np.testing.assert_array_equal(prepared["alpha"], original["alpha"])  # (40, 24), turned
    assert prepared["fg"].shape == original["fg"].shape == (40, 24, 3)
    # Re-encoded at quality 95 (chroma subsampling on this saturated block pattern: ~4 levels).
    assert np.abs(prepared["fg"].astype(int) - original["fg"]).mean() < 8
