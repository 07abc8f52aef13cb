"""Inference: resize rule, jit cache per shape bucket, CLIs, video round trip, bad inputs, and a
tiny trained checkpoint beating an untrained one.

Shapes are kept to a few (64x64, 64x96 model inputs, ``ref_size=64``) since every new one is a
multi-second XLA compile on CPU; the model is initialised once for the module.
"""

import io
import json

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from modnet_jax import evaluate, metrics, predict, video_eval
from modnet_jax.checkpointing import save_variables
from modnet_jax.inference import (
    CheckpointError,
    MattingEngine,
    check_variables,
    count_frames,
    model_input_size,
    process_video,
)
from modnet_jax.inference.video import open_video, read_frames
from modnet_jax.progress import Progress
from modnet_jax.temporal import flicker_score, temporal_metrics
from numpy_reference import area_resize, postprocess, preprocess

REF = 64


# ---------------------------------------------------------------- pure helpers (no model)

@pytest.mark.parametrize("hw, ref, want", [
    ((1080, 1920), 512, (512, 896)),   # short side above ref: 1920/1080*512 = 910 -> 896
    ((300, 400), 512, (512, 672)),     # both below: 400/300*512 = 682 -> 672
    ((400, 600), 512, (384, 576)),     # straddles ref: kept, floored to multiples of 32
    ((2000, 1000), 512, (1024, 512)),  # portrait
    ((512, 20), 512, (512, 32)),       # never below 32
    ((70, 90), 64, (64, 64)),
    ((64, 100), 64, (64, 96)),
])
def test_model_input_size_release_rule(hw, ref, want):
    assert model_input_size(*hw, ref_size=ref) == want


def test_area_resize_is_adaptive_average_pooling():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(area_resize(x, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    # 3 -> 2 cells: [0, 2) and [1, 3); 2 -> 3 cells (upscaling): [0], [0, 1], [1].
    np.testing.assert_allclose(area_resize(np.array([[0.0, 1.0, 5.0]]), 1, 2), [[0.5, 3.0]])
    np.testing.assert_allclose(area_resize(np.array([[0.0, 1.0]]), 1, 3), [[0.0, 0.5, 1.0]])
    assert area_resize(np.zeros((5, 7, 3), np.uint8), 3, 4).shape == (3, 4, 3)


def test_progress_bar():
    out = io.StringIO()
    bar = Progress(3, desc="clip", unit="frames", stream=out, min_interval=0.0)
    for _ in range(3):
        bar.update()
    bar.close()
    text = out.getvalue()
    assert "\r" in text and "3/3 frames" in text and "frames/s" in text and text.endswith("\n")


# ---------------------------------------------------------------- synthetic data

def portrait(rng, h=64, w=64):
    """(RGB uint8 [h, w, 3], alpha float [h, w]): a warm head-and-shoulders on a cool background."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx = rng.uniform(0.4, 0.6) * w
    head = ((yy - rng.uniform(0.3, 0.45) * h) / (0.2 * h)) ** 2 + ((xx - cx) / (0.15 * w)) ** 2
    body = ((yy - h) / (0.35 * h)) ** 2 + ((xx - cx) / (0.35 * w)) ** 2
    alpha = np.clip((1.0 - np.minimum(head, body)) * 6.0, 0.0, 1.0)
    fg = np.array([220, 170, 140]) + rng.normal(0, 12, (h, w, 3))
    bg = rng.uniform(20, 110, 3) + rng.normal(0, 12, (h, w, 3))
    image = fg * alpha[..., None] + bg * (1 - alpha[..., None])
    return np.clip(image, 0, 255).astype(np.uint8), alpha


def write_rgb(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_video(path, frames, fps=12.5, fourcc="MJPG", size=(64, 80)):
    h, w = frames[0].shape[:2] if frames else size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), True)
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def video_fps(path):
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return fps


# ---------------------------------------------------------------- with the model
# (``untrained`` and ``engine``: tests/conftest.py)

def reference_mattes(model, variables, images):
    """The host path the engine replaces: numpy pre-processing, the model on the batch of all
    ``images`` (equal model sizes), numpy resize back."""
    x = np.stack([preprocess(im, *model_input_size(*im.shape[:2], REF)) for im in images])
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False, inference=True)[2])(
        variables, x))[..., 0]
    return [postprocess(m, *im.shape[:2]) for m, im in zip(out, images)]


def test_mixed_size_folder_equals_host_path_and_shares_one_canvas(untrained, engine):
    model, variables, _ = untrained
    rng = np.random.default_rng(0)
    # 64x80 four times: one full batch; 70x90 (model 64x64) and 64x100 (64x96) alone. The
    # first size makes a 64x128 canvas (long side up to 7/4 of the short), which the others
    # fit within twice their area: one model program per batch size, resizes per image size.
    sizes = [(64, 80), (70, 90), (64, 80), (64, 80), (64, 80), (64, 100)]
    items = [(i, portrait(rng, h, w)[0]) for i, (h, w) in enumerate(sizes)]
    out = {k: r.matte for k, r in engine.images(items)}
    assert engine.canvas_policy.canvases == [(64, 128)]  # one canvas served the three sizes
    for i, (h, w) in enumerate(sizes):
        assert out[i].shape == (h, w) and out[i].dtype == np.float32
        assert 0.0 <= out[i].min() and out[i].max() <= 1.0
    # Each photo's matte is the model's at its own size (batches as the engine's: [0, 2, 3, 4],
    # then [1] and [5] alone).
    ref = reference_mattes(model, variables, [items[i][1] for i in (0, 2, 3, 4)])
    ref += reference_mattes(model, variables, [items[1][1]])
    ref += reference_mattes(model, variables, [items[5][1]])
    # Summation order only: the canvas's conv shapes differ from the photo's, and XLA's CPU
    # conv kernels (the tests run them) block their sums by shape: up to ~5e-6 apart here (a
    # 0..255 matte moves by < 0.002 levels); test_exact_shapes_... holds the exact path to 1e-6.
    for i, want in zip((0, 2, 3, 4, 1, 5), ref):
        np.testing.assert_allclose(out[i], want, rtol=0, atol=1e-5)
    again = {k: r.matte for k, r in engine.images(items)}
    for i in out:
        np.testing.assert_array_equal(again[i], out[i])


def test_exact_shapes_give_the_host_path_mattes(untrained):
    model, variables, _ = untrained
    exact = MattingEngine(model, variables, ref_size=REF, batch_size=4, canvases=False)
    rng = np.random.default_rng(1)
    items = [(i, portrait(rng, h, w)[0]) for i, (h, w) in enumerate([(64, 80), (64, 100)])]
    out = {k: r.matte for k, r in exact.images(items)}
    assert exact.canvas_policy.canvases == []
    for i, (_, image) in enumerate(items):
        np.testing.assert_allclose(out[i], reference_mattes(model, variables, [image])[0],
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("ofd", [True, False])
def test_video_round_trip_keeps_frame_count_and_rate(engine, tmp_path, ofd):
    rng = np.random.default_rng(1)
    src = tmp_path / "clip.avi"
    write_video(src, [portrait(rng, 64, 80)[0] for _ in range(10)])
    result = process_video(engine, str(src), matte_path=str(tmp_path / "m.mp4"),
                           composite_path=str(tmp_path / "c.avi"), ofd=ofd, progress=False)
    assert result.frames == 10 and result.fps == pytest.approx(12.5)
    for out in ("m.mp4", "c.avi"):
        assert count_frames(str(tmp_path / out)) == 10
        assert video_fps(tmp_path / out) == pytest.approx(12.5)


def test_video_flicker_readout_equals_the_score_of_the_written_mattes(engine, tmp_path):
    """process_video(flicker=True) reports temporal.flicker_score of the OFD mattes it writes,
    here on a clip whose frames 2-3 repeat (still pixels) and whose others change."""
    rng = np.random.default_rng(5)
    frames = [portrait(rng, 64, 80)[0] for _ in range(3)]
    frames = [frames[0], frames[1], frames[1], frames[1], frames[2]]
    src = tmp_path / "still.avi"
    write_video(src, frames)
    cap, _ = open_video(str(src))
    decoded = list(read_frames(cap))
    cap.release()
    result = process_video(engine, str(src), matte_path=str(tmp_path / "m.avi"), ofd=True,
                           progress=False, flicker=True)
    mattes = [r.matte for r in engine.video(decoded, ofd=True, with_image=True)]
    want = flicker_score(decoded, mattes)
    assert np.isfinite(want)
    assert result.flicker == pytest.approx(want, rel=1e-12, abs=1e-15)
    plain = process_video(engine, str(src), matte_path=str(tmp_path / "m2.avi"), progress=False)
    assert plain.flicker is None


def test_video_evaluation_against_the_models_own_mattes(engine, tmp_path):
    """Ground truth = the engine's raw mattes (8-bit): without OFD every error is 0; with OFD
    the scores are those of the OFD-corrected mattes against the raw ones."""
    rng = np.random.default_rng(2)
    frames = [portrait(rng, 64, 80)[0] for _ in range(6)]
    # with_image=True: the programs evaluate_clips runs, so nothing more to compile
    raw = [r.matte for r in engine.video(frames, ofd=False, with_image=True)]
    root = tmp_path / "clips"
    for sub in ("video/a", "matte/a"):
        (root / sub).mkdir(parents=True)
    for i, (f, m) in enumerate(zip(frames, raw)):
        cv2.imwrite(str(root / "video" / "a" / f"{i:02d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "matte" / "a" / f"{i:02d}.png"), np.rint(m * 255).astype(np.uint8))
    clips = video_eval.find_clips(str(root))
    rows, frame_rows, _, failures = video_eval.evaluate_clips(engine, clips, ofd=False)
    assert failures == [] and rows[0]["frames"] == 6 and len(frame_rows) == 6
    assert rows[0]["mse"] == 0 and rows[0]["dtssd"] == 0 and rows[0]["messddt"] == 0
    smoothed = [r.matte for r in engine.video(frames, ofd=True, with_image=True)]
    want = temporal_metrics([metrics.quantize_8bit(m) for m in smoothed],
                            [metrics.quantize_8bit(m) for m in raw])
    assert want["mad"] > 0  # OFD changed some pixels of these unrelated frames
    rows, *_ = video_eval.evaluate_clips(engine, clips, ofd=True)
    for name in ("mse", "mad", "dtssd", "messddt"):
        assert rows[0][name] == pytest.approx(want[name], abs=1e-12)


def test_check_variables_reports_mismatch(untrained):
    model, variables, _ = untrained
    check_variables(model, variables)
    bad = jax.tree_util.tree_map(np.asarray, variables)
    bad["params"]["f_branch"]["conv_f_1"]["layers_0"]["kernel"] = np.zeros((1, 1, 16, 2))
    del bad["batch_stats"]["hr_branch"]
    with pytest.raises(CheckpointError) as err:
        check_variables(model, bad, source="ck")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("ck: does not fit")
    assert "params/f_branch/conv_f_1/layers_0/kernel is (1, 1, 16, 2)" in msg
    assert "missing batch_stats/hr_branch" in msg


def test_expected_shapes_are_the_variables_shapes(untrained):
    from modnet_jax.inference import checkpoint as ckpt_mod

    model, variables, _ = untrained
    want = {k: tuple(np.shape(v)) for k, v in
            traverse_util.flatten_dict(dict(variables), sep="/").items()}
    assert ckpt_mod.expected_shapes(model) == want


# ---------------------------------------------------------------- command lines

def run_cli(fn, argv, capsys):
    rc = fn(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def test_predict_cli_folder_with_bad_files(untrained, tmp_path, capsys):
    _, _, ckpt = untrained
    rng = np.random.default_rng(2)
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "good.jpg", portrait(rng, 64, 80)[0])
    (src / "broken.jpg").write_bytes(b"not a jpeg at all")
    (src / "garbage.mp4").write_bytes(b"garbage" * 100)
    write_video(src / "empty.avi", [])
    write_video(src / "clip.avi", [portrait(rng, 64, 80)[0] for _ in range(10)])
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    rc, _, err = run_cli(predict.cli, ["--checkpoint", ckpt, str(src), "--output", str(out),
                                       "--ref-size", str(REF), "--batch-size", "1", "--cutout",
                                       "--composite", "#00ff00", "--quiet"], capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    for bad in ("broken.jpg", "garbage.mp4", "empty.avi"):
        assert any(line.startswith("error: ") and bad in line for line in lines[:-1]), err
    assert lines[-1].startswith("error: skipped 3 of 5 inputs:")
    matte = cv2.imread(str(out / "good_matte.png"), cv2.IMREAD_UNCHANGED)
    assert matte.shape == (64, 80) and matte.dtype == np.uint8
    assert cv2.imread(str(out / "good_cutout.png"), cv2.IMREAD_UNCHANGED).shape == (64, 80, 4)
    assert cv2.imread(str(out / "good_composite.png")).shape == (64, 80, 3)
    assert count_frames(str(out / "clip_matte.mp4")) == 10
    assert count_frames(str(out / "clip_composite.mp4")) == 10
    assert not (out / "empty_matte.mp4").exists()


def test_cli_fatal_errors_are_one_line(untrained, tmp_path, capsys):
    model, variables, ckpt = untrained
    img = tmp_path / "x.png"
    write_rgb(img, np.zeros((64, 64, 3), np.uint8))
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    bad = jax.tree_util.tree_map(np.asarray, variables)
    bad["params"]["hr_branch"]["conv_hr2x_0"]["layers_0"]["kernel"] = np.zeros((3, 3, 64, 8))
    other = save_variables(str(tmp_path / "other_shape"), bad)
    cases = [
        (["--checkpoint", ckpt, str(img), "--output", str(not_a_dir)], str(not_a_dir)),
        (["--checkpoint", str(tmp_path / "nope"), str(img), "--output", str(tmp_path / "o")],
         str(tmp_path / "nope")),
        (["--checkpoint", other, str(img), "--output", str(tmp_path / "o")], other),
    ]
    for argv, name in cases:
        rc, _, err = run_cli(predict.cli, argv + ["--quiet"], capsys)
        assert rc == 2
        assert err.count("\n") == 1 and err.startswith("error: ") and name in err, err
    assert "conv_hr2x_0/layers_0/kernel" in err
    rc, _, err = run_cli(evaluate.cli, ["--checkpoint", ckpt, "--data", str(tmp_path / "nods")],
                         capsys)
    assert rc == 2 and err.startswith("error: ") and "nods" in err


# ---------------------------------------------------------------- a tiny trained checkpoint

def train_tiny(model, variables, steps=40, batch=4, seed=0):
    """A few dozen Adam steps of plain L1 on the matte, BatchNorm in training mode.

    The MobileNetV2 weights stay fixed (its running statistics still update): differentiating
    only the three heads halves the step's XLA compile time on CPU, and is plenty here.
    """
    rng = np.random.default_rng(seed)
    data = [portrait(rng) for _ in range(16)]
    images = np.stack([d[0] for d in data]).astype(np.float32) / 127.5 - 1.0
    alphas = np.stack([d[1] for d in data])[..., None].astype(np.float32)
    opt = optax.adam(2e-3)
    frozen = {"backbone": variables["params"]["backbone"]}
    heads = {k: v for k, v in variables["params"].items() if k != "backbone"}

    def loss_fn(heads, batch_stats, x, y):
        (_, _, pred), new = model.apply({"params": {**heads, **frozen},
                                         "batch_stats": batch_stats}, x,
                                        train=True, inference=True, mutable=["batch_stats"])
        return jnp.mean(jnp.abs(pred - y)), new["batch_stats"]

    @jax.jit
    def step(heads, batch_stats, opt_state, x, y):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            heads, batch_stats, x, y)
        updates, opt_state = opt.update(grads, opt_state, heads)
        return optax.apply_updates(heads, updates), batch_stats, opt_state, loss

    batch_stats = variables["batch_stats"]
    opt_state = opt.init(heads)
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(images), batch, replace=False)
        heads, batch_stats, opt_state, loss = step(heads, batch_stats, opt_state,
                                                   images[idx], alphas[idx])
        losses.append(float(loss))
    return {"params": {**heads, **frozen}, "batch_stats": batch_stats}, losses


def test_trained_tiny_checkpoint_beats_untrained(untrained, engine, tmp_path, capsys):
    model, variables, _ = untrained
    trained, losses = train_tiny(model, variables)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    ckpt_trained = save_variables(str(tmp_path / "trained"), trained)

    root = tmp_path / "ds"  # held-out portraits in the PPM-100 layout
    for sub in ("image", "matte"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(123)
    for i in range(3):
        rgb, alpha = portrait(rng)
        write_rgb(root / "image" / f"p{i}.jpg", rgb)
        cv2.imwrite(str(root / "matte" / f"p{i}.png"), np.rint(alpha * 255).astype(np.uint8))

    # Untrained: the Python API (the module's engine is already compiled for 4x64x64).
    rows, summary, failures = evaluate.evaluate_samples(
        engine, evaluate.find_samples(str(root), "ppm100"), regions=("image", "unknown"))
    assert failures == [] and len(rows) == 6 and summary["unknown"]["count"] == 3
    mad_untrained = summary["image"]["mad"]

    # Trained: the command line, from the saved checkpoint.
    out = tmp_path / "eval"
    rc, table, _ = run_cli(evaluate.cli, [
        "--checkpoint", ckpt_trained, "--data", str(root), "--layout", "ppm100",
        "--ref-size", str(REF), "--region", "both", "--output", str(out), "--quiet"], capsys)
    assert rc == 0 and "MAD" in table and "unknown" in table
    report = json.loads((out / "summary.json").read_text())
    assert report["images"] == 3 and report["skipped"] == []
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert rows[0] == "name,region,trimap,precision,mse,mad,sad,grad,conn" and len(rows) == 1 + 6
    assert report["precision"] == "8bit" and rows[1].split(",")[3] == "8bit"
    mad_trained = report["metrics"]["image"]["mad"]
    print(f"MAD untrained {mad_untrained:.4f} -> trained {mad_trained:.4f}")
    assert mad_trained < 0.5 * mad_untrained
    assert report["metrics"]["image"]["sad"] < summary["image"]["sad"]
