"""MattingEngine: device resizes equal the host's, OFD across batch seams equals the streaming
host OFD (video files and live frames), capped model inputs, per-file refusals, the persistent
compile cache, the reader/writer threads, and clean cut-outs.

Model shapes are kept few (64x64 model inputs at ``ref_size=64``, batch 4) since every new one is
a multi-second XLA compile on CPU.
"""

import threading
import time

import cv2
import jax
import numpy as np
import pytest

from modnet_jax import predict
from modnet_jax.inference import MattingEngine, model_input_size
from modnet_jax.inference import programs
from modnet_jax.inference.engine import Matted
from modnet_jax.inference.images import clean_outputs, composite
from modnet_jax.inference.programs import make_taps, resize_hw
from modnet_jax.inference.video import BackgroundWriter, prefetch
from modnet_jax.temporal import OneFrameDelay
from numpy_reference import area_resize, postprocess, preprocess

REF = 64


# ---------------------------------------------------------------- no model

@pytest.mark.parametrize("hw, out", [((70, 90), (64, 64)), ((300, 1), (288, 32)),
                                     ((45, 64), (64, 96))])
def test_device_area_resize_is_bit_equal_to_host(hw, out):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    rows, cols = make_taps(hw[0], out[0]), make_taps(hw[1], out[1])
    got = np.asarray(jax.jit(programs.prepare)(img[None], rows, cols))[0]
    want = area_resize(img, *out) / 127.5 - 1.0
    np.testing.assert_array_equal(got, want)
    # And back (float mattes, up or down), as postprocess: within float32 rounding.
    matte = rng.uniform(0, 1, out).astype(np.float32)
    back = jax.jit(programs.restore)(matte[None], make_taps(out[0], hw[0]),
                                     make_taps(out[1], hw[1]))
    np.testing.assert_allclose(np.asarray(back)[0], postprocess(matte, *hw), rtol=0, atol=1e-6)


def test_device_bilinear_matches_opencv():
    rng = np.random.default_rng(1)
    matte = rng.uniform(0, 1, (1, 32, 48)).astype(np.float32)
    for h, w in ((75, 50), (20, 100)):
        rows, cols = make_taps(32, h, "bilinear"), make_taps(48, w, "bilinear")
        got = np.asarray(jax.jit(resize_hw)(matte, rows, cols))[0]
        want = cv2.resize(matte[0], (w, h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(got, want, rtol=0, atol=3e-6)  # OpenCV's float rounding


def test_model_input_caps():
    caps = dict(ref_size=512, max_long_side=2048, max_pixels=2048 * 1024)
    assert model_input_size(300, 1, ref_size=512) == (153600, 512)  # the release's rule
    assert model_input_size(300, 1, **caps) == (2048, 32)
    assert model_input_size(1, 300, **caps) == (32, 2048)
    assert model_input_size(500, 20000, **caps) == (32, 2048)  # straddles 512: kept, then capped
    # 8660 x 5773 (50 MP): short side to 512 -> 768 x 512, under the caps, untouched.
    assert model_input_size(8660, 5773, **caps) == model_input_size(8660, 5773) == (768, 512)
    # max_pixels: 1000 x 4000 straddles ref 2048 -> kept -> scaled by sqrt(2^21 / 4e6).
    h, w = model_input_size(1000, 4000, ref_size=2048, max_long_side=10**6, max_pixels=2 ** 21)
    assert (h, w) == (704, 2880) and h * w <= 2 ** 21 and h % 32 == w % 32 == 0
    for hw in ((300, 1), (1, 300), (7, 99999), (99999, 99999)):
        rh, rw = model_input_size(*hw, **caps)
        assert 32 <= min(rh, rw) and max(rh, rw) <= 2048 and rh * rw <= 2048 * 1024


def test_prefetch_is_bounded_and_raises_in_the_consumer():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i
        raise ValueError("bad input")

    with prefetch(source(), depth=3) as items:
        it = iter(items)
        assert next(it) == 0
        time.sleep(0.3)
        assert len(produced) <= 1 + 3 + 1  # taken + read ahead (+ one being read)
        with pytest.raises(ValueError, match="bad input"):
            list(it)

    with prefetch(iter(range(10**6)), depth=2):
        pass  # closing early stops the reader instead of leaving it blocked
    assert not any(t.name.startswith("modnet-reader") and t.is_alive()
               for t in threading.enumerate())


def test_background_writer_keeps_order_and_reports_errors():
    seen = []
    with BackgroundWriter(seen.append, depth=2) as w:
        for i in range(20):
            w.put(i)
    assert seen == list(range(20))

    def fail(item):
        raise OSError(f"disk full at {item}")

    w = BackgroundWriter(fail, depth=2)
    w.put(0)
    with pytest.raises(OSError, match="disk full at 0"):
        time.sleep(0.1)
        w.put(1)
        w.close()


def test_clean_colours_recomposite_beats_raw_colours():
    """A known foreground on green, matte known: re-composited onto blue with the estimated
    foreground colours, the error in the soft band is far below that of the image's colours."""
    h, w = 64, 96
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fg = np.stack([128 + 100 * np.sin(xx / 7), 128 + 90 * np.cos(yy / 9),
                   np.full_like(xx, 200)], -1)
    alpha = np.clip((xx - 30) / 36, 0, 1)  # a 36-pixel soft band
    old_bg, new_bg = np.array([0, 255, 0], np.float32), (0, 0, 255)
    image = np.rint(fg * alpha[..., None] + old_bg * (1 - alpha[..., None])).astype(np.uint8)
    want = fg * alpha[..., None] + np.float32(new_bg) * (1 - alpha[..., None])
    raw = composite(image, alpha, new_bg).astype(np.float32)
    clean = clean_outputs(Matted(matte=alpha.astype(np.float32), image=image), new_bg,
                          cutout=True)
    band = (alpha > 0.05) & (alpha < 0.95)
    err_raw = np.abs(raw - want)[band].mean()
    err_clean = np.abs(clean.composite.astype(np.float32) - want)[band].mean()
    print(f"soft-band mean abs error on the new background: raw colours {err_raw:.2f}, "
          f"estimated foreground {err_clean:.2f} (0..255)")
    assert err_clean < 0.25 * err_raw
    assert clean.cutout.shape == (h, w, 4)
    np.testing.assert_array_equal(clean.cutout[..., 3], np.rint(alpha * 255).astype(np.uint8))


# ---------------------------------------------------------------- with the model
# (``untrained`` and ``engine``: tests/conftest.py)

def _host_video(model, variables, frames, batch, ofd):
    """Today's host path: numpy pre-processing, the model on batches of ``batch`` frames (the
    last padded with copies of its last frame, as the engine runs it), numpy resize back,
    streaming ``OneFrameDelay``."""
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False, inference=True)[2][..., 0])
    raw = []
    for s in range(0, len(frames), batch):
        chunk = frames[s:s + batch]
        chunk = chunk + [chunk[-1]] * (batch - len(chunk))
        rh, rw = model_input_size(*frames[0].shape[:2], REF)
        out = np.asarray(apply(variables, np.stack([preprocess(f, rh, rw) for f in chunk])))
        raw += [postprocess(m, *frames[0].shape[:2]) for m in out][:len(frames) - s]
    stream = OneFrameDelay(enabled=ofd)
    pairs = [p for m, f in zip(raw, frames) for p in stream.push(m, f)] + stream.flush()
    return raw, pairs


@pytest.mark.parametrize("ofd", [True, False])
def test_video_equals_host_path_across_batch_seams(untrained, engine, ofd):
    model, variables, _ = untrained
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 256, (2, 64, 80, 3), dtype=np.uint8)
    frames = [a if t % 3 else b for t in range(9)]  # b at 0, 3, 6: flicker at the seams 3|4
    raw, pairs = _host_video(model, variables, frames, 4, ofd)
    for n in ((1, 4, 5, 9) if ofd else (5, 9)):  # one batch, full, full + 1, a padded tail
        out = list(engine.video(frames[:n], ofd=ofd, background=(255, 255, 255)))
        want = _host_video(model, variables, frames[:n], 4, ofd)[1] if n < 9 else pairs
        assert len(out) == n
        for t, (res, (m, f)) in enumerate(zip(out, want)):
            np.testing.assert_allclose(res.matte, m, rtol=0, atol=1e-6, err_msg=f"n={n} t={t}")
            diff = np.abs(res.composite.astype(int) - composite(f, m, (255, 255, 255)))
            assert diff.max() <= 1
    if ofd:  # OFD did act, across the seam between batches 0 and 1 too
        assert np.abs(pairs[3][0] - raw[3]).max() > 0.1
        assert np.abs(out[3].matte - raw[3]).max() > 0.1


def test_canvas_policy_shares_canvases_by_orientation_and_refits_a_wasteful_size():
    eng = MattingEngine(None, {"params": {}}, ref_size=512, canvas_refit=1.0)
    # A 4:3 photo makes a landscape canvas covering up to 7:4 (896 = 512 * 1.75).
    assert eng.canvas_for(512, 672) == (512, 896)
    assert eng.canvas_for(672, 512) == (896, 512)  # portrait: its own canvas
    assert eng.canvas_for(512, 896) == (512, 896)  # 16:9 fits exactly: no waste counted
    assert eng.canvas_for(512, 768) == (512, 896)
    # 1:1 uses the landscape canvas (1.75x its area, within 2x) ...
    assert eng.canvas_for(512, 512) == (512, 896)
    # ... until its waste reaches canvas_refit photos (3/7 + 3/7 + 3/7 >= 1): its own canvas.
    assert eng.canvas_for(512, 512) == (512, 896)
    assert eng.canvas_for(512, 512) == (512, 512)
    assert eng.canvas_for(512, 512) == (512, 512)
    # 672 made the canvas (no waste counted then); it wastes 1 - 672/896 = 0.25 per photo: 2
    # photos make 0.5, and a batch of 4 counts four photos (1.5 >= 1): its own canvas.
    assert eng.canvas_for(512, 672, count=2) == (512, 896)
    assert eng.canvas_for(512, 672, count=4) == (512, 672)
    # More than twice the area: a canvas of its own, whose long side stays within the caps.
    assert eng.canvas_for(256, 384) == (256, 448)
    assert eng.canvas_for(512, 1920) == (512, 1920)
    assert eng.canvas_policy.canvases == [(512, 896), (896, 512), (512, 512), (512, 672),
                                          (256, 448), (512, 1920)]
    exact = MattingEngine(None, {"params": {}}, ref_size=512, canvases=False)
    assert exact.canvas_for(512, 672) == (512, 672) and exact.canvas_policy.canvases == []


@pytest.fixture
def persistent_cache_on():
    """JAX's persistent cache on for one test (an earlier test in this process may have run a
    command with --compile-cache none), then as it was."""
    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", True)
    yield
    jax.config.update("jax_enable_compilation_cache", before)


def test_a_fresh_engine_compiles_nothing_the_persistent_cache_holds(untrained, engine,
                                                                    persistent_cache_on):
    """A second run (here: in-memory caches dropped, as in a new process) finds every program
    in JAX's persistent compilation cache and gives the same mattes."""
    model, variables, _ = untrained
    rng = np.random.default_rng(4)
    items = [(i, rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)) for i in range(3)]
    first = {k: r.matte for k, r in engine.images(items)}
    jax.clear_caches()
    fresh = MattingEngine(model, variables, ref_size=REF, batch_size=4)
    second = {k: r.matte for k, r in fresh.images(items)}
    assert fresh.compile_summary().startswith("0 programs compiled")
    for k in first:
        np.testing.assert_array_equal(second[k], first[k])


def test_folder_with_extreme_and_oversized_images_writes_every_good_file(untrained, tmp_path,
                                                                        capsys):
    _, _, ckpt = untrained
    rng = np.random.default_rng(5)
    src = tmp_path / "in"
    src.mkdir()
    for name, shape in (("good", (64, 80)), ("tall", (300, 1)), ("wide", (1, 300)),
                        ("huge", (400, 500))):
        assert cv2.imwrite(str(src / f"{name}.png"), rng.integers(0, 256, (*shape, 3),
                                                                  dtype=np.uint8))
    out = tmp_path / "out"
    rc = predict.cli(["--checkpoint", ckpt, str(src), "--output", str(out), "--ref-size",
                      str(REF), "--batch-size", "1", "--max-long-side", "96",
                      "--max-image-pixels", "100000", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if "huge" in line][0].startswith(
        f"error: {src / 'huge.png'}: 500x400 image (0 MP) is above the limit of 0.1 MP")
    for name, shape in (("good", (64, 80)), ("tall", (300, 1)), ("wide", (1, 300))):
        assert cv2.imread(str(out / f"{name}_matte.png"), cv2.IMREAD_UNCHANGED).shape == shape
    assert not (out / "huge_matte.png").exists()
    assert "error: skipped 1 of 4 inputs" in err and "compile: " in err


def test_video_split_over_two_devices_equals_host_path_and_reloads(untrained):
    """A video batch shared by 2 devices (2 frames each) equals the host path run on batches
    of 2, OFD seams included, and runs without implicit transfers; ``matte=False`` leaves only
    the float mattes out."""
    model, variables, _ = untrained
    devices = jax.devices()[:2]
    eng = MattingEngine(model, variables, ref_size=REF, video_batch_size=3, devices=devices)
    assert eng.video_batch_size == 4  # rounded up to a multiple of the device count
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 256, (2, 64, 80, 3), dtype=np.uint8)
    frames = [a if t % 3 else b for t in range(9)]
    for n in (1, 4, 9):
        out = list(eng.video(frames[:n], ofd=True, background=(255, 255, 255)))
        want = _host_video(model, variables, frames[:n], 2, True)[1]
        assert len(out) == n
        for t, (res, (m, f)) in enumerate(zip(out, want)):
            np.testing.assert_allclose(res.matte, m, rtol=0, atol=1e-6, err_msg=f"n={n} t={t}")
            assert np.abs(res.composite.astype(int) - composite(f, m, (255, 255, 255))).max() <= 1
    fresh = MattingEngine(model, variables, ref_size=REF, video_batch_size=4, devices=devices)
    with jax.transfer_guard("disallow"):  # every copy between the devices is explicit
        again = list(fresh.video(frames, ofd=True, background=(255, 255, 255)))
    np.testing.assert_array_equal(np.stack([r.composite for r in again]),
                                  np.stack([r.composite for r in out]))
    bare = list(fresh.video(frames, ofd=True, background=(255, 255, 255), matte=False))
    assert all(r.matte is None for r in bare)
    np.testing.assert_array_equal(np.stack([r.composite for r in bare]),
                                  np.stack([r.composite for r in out]))


def test_photos_split_over_two_devices_equal_one_device(untrained, engine):
    """Canvas photos one per device (a landscape and a portrait canvas, an odd count so the
    last batch of each is filled with a copy) equal the one-device canvas path."""
    model, variables, _ = untrained
    rng = np.random.default_rng(7)
    sizes = [(70, 90), (64, 100), (96, 64), (64, 80), (100, 64)]
    items = [(i, rng.integers(0, 256, s + (3,), dtype=np.uint8)) for i, s in enumerate(sizes)]
    two = MattingEngine(model, variables, ref_size=REF, devices=jax.devices()[:2])
    want = dict(engine.images(items, background=(0, 255, 0)))
    with jax.transfer_guard("disallow"):
        got = dict(two.images(items, background=(0, 255, 0)))
    assert sorted(got) == list(range(len(sizes)))
    for i, (h, w) in enumerate(sizes):
        assert got[i].matte.shape == (h, w)
        # The same canvas program per device, but another batch: summation order may differ.
        np.testing.assert_allclose(got[i].matte, want[i].matte, rtol=0, atol=1e-5)
        assert np.abs(got[i].composite.astype(int) - want[i].composite).max() <= 1


@pytest.mark.parametrize("ofd", [True, False])
def test_live_frames_equal_the_host_path(untrained, engine, ofd):
    """``live()``: frames pushed one at a time give the host path's mattes and composites
    (OFD one frame late: nothing for the first push, the held frame at ``finish``)."""
    model, variables, _ = untrained
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 256, (2, 64, 80, 3), dtype=np.uint8)
    frames = [a if t % 3 else b for t in range(5)]
    _, want = _host_video(model, variables, frames, 1, ofd)
    live = engine.live(ofd=ofd, background=(0, 0, 255))
    counts, out = [], []
    for f in frames:
        got = live.push(f)
        counts.append(len(got))
        out += got
    out += live.finish()
    assert counts == ([0, 1, 1, 1, 1] if ofd else [1] * 5) and len(out) == 5
    for t, (res, (m, f)) in enumerate(zip(out, want)):
        np.testing.assert_allclose(res.matte, m, rtol=0, atol=1e-6, err_msg=f"t={t}")
        assert np.abs(res.composite.astype(int) - composite(f, m, (0, 0, 255))).max() <= 1
