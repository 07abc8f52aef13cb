"""The SOC report: its numbers equal the metrics computed independently on the same mattes."""

import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
from modnet_jax.temporal import flicker_score
from modnet_jax.training import soc_report


def test_per_image_soc_loss_is_each_image_alone():
    rng = np.random.default_rng(0)
    b, h, w = 3, 32, 32
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 100).astype(np.float32)[None, ..., None]
    pm = np.clip(disc * rng.uniform(0.6, 1, (b, h, w, 1)) + rng.uniform(0, .1, (b, h, w, 1)),
                 0, 1).astype(np.float32)
    ps = rng.uniform(size=(b, 2, 2, 1)).astype(np.float32)
    pd, fd, fm = (rng.uniform(size=pm.shape).astype(np.float32) for _ in range(3))
    got = soc_report.soc_loss_per_image(ps, pd, pm, fd, fm)
    for i in range(b):  # the numpy transcription of the release's SOC loss, one image
        s, d = ref.soc(ps[i:i + 1], pd[i:i + 1], pm[i:i + 1], fd[i:i + 1], fm[i:i + 1])
        assert got[i] == pytest.approx(s + d, rel=1e-4)


def _clip():
    frames = np.zeros((4, 1, 3, 3), np.uint8)
    frames[:, 0, 2] = np.array([0, 40, 80, 120])[:, None]  # pixel 2 moves; 0 and 1 still
    mattes = np.array([[0.0, 0.5, 0.1], [0.3, 0.5, 0.9], [0.0, 0.5, 0.2], [0.0, 0.6, 0.4]],
                      np.float32)[:, None]      # pixel 0 flickers at frame 1
    return frames, mattes


def test_flicker_pair_hand_value():
    frames, mattes = _clip()
    raw, ofd = soc_report.flicker_pair(frames, mattes)
    # still pixels 0 and 1 over 3 pairs: |.3|+|.3|+0 and 0+0+.1 -> 0.7 / 6
    assert raw == pytest.approx(0.7 / 6, abs=1e-6)
    # OFD: frame 1 px0 (0.3 between 0 and 0) -> 0; nothing else qualifies -> 0.1 / 6
    assert ofd == pytest.approx(0.1 / 6, abs=1e-6)


class _StubModel:
    """apply(v, x, train=False) -> (semantic, detail, matte) from the input's first channel."""

    def apply(self, v, x, train):
        assert not train
        m = jnp.clip((x[..., :1] + 1) / 2 * v["gain"], 0, 1)
        return m[:, ::16, ::16], jnp.clip(m * 0.9, 0, 1), m


def test_report_numbers_and_verdict():
    rng = np.random.default_rng(1)
    frames = np.repeat(rng.integers(0, 255, (1, 32, 32, 3), np.uint8), 5, 0)
    frames[::2, :8] = rng.integers(0, 255, (3, 8, 32, 3), np.uint8)  # top rows change
    report = soc_report.SocReport(_StubModel(), frames, is_video=True, chunk=2)
    before, after = {"gain": np.float32(1.0)}, {"gain": np.float32(1.3)}
    got = report.measure(after, before)
    # independently: the stub's outputs, SOC loss per frame (numpy reference), flicker
    x = frames.astype(np.float32) / 255.0
    m, fm = np.clip(x[..., :1] * 1.3, 0, 1), x[..., :1]
    want = np.mean([sum(ref.soc(m[i:i + 1, ::16, ::16], np.clip(m[i:i + 1] * .9, 0, 1),
                                m[i:i + 1], fm[i:i + 1] * .9, fm[i:i + 1])) for i in range(5)])
    assert got["soc_loss"] == pytest.approx(want, rel=1e-4)
    assert got["flicker"] == pytest.approx(flicker_score(frames, m[..., 0]), rel=1e-5)
    ofd = soc_report.flicker_pair(frames, m[..., 0])[1]
    assert got["flicker_ofd"] == pytest.approx(ofd, rel=1e-5)

    assert soc_report.verdict({"soc_loss": 2.0, "flicker": 1.0, "flicker_ofd": 1.0},
                              {"soc_loss": 1.0, "flicker": 1.0, "flicker_ofd": 0.9}
                              ).startswith("better")
    worse = soc_report.verdict({"soc_loss": 2.0, "flicker": 1.0, "flicker_ofd": 1.0},
                               {"soc_loss": 1.0, "flicker": 1.2, "flicker_ofd": 0.9})
    assert worse.startswith("NOT better") and "flicker rose" in worse
    lines = soc_report.report_lines({"soc_loss": 2.0}, {"soc_loss": 1.0}, 5, False, True)
    assert "x0.500" in lines[1] and lines[-1].endswith(soc_report.verdict(
        {"soc_loss": 2.0}, {"soc_loss": 1.0}))


def test_start_and_finish_on_a_held_out_video(tmp_path, caplog):
    import logging

    import ml_collections

    from modnet_jax.data.synthetic_video import write_clip

    clip = np.full((5, 40, 48, 3), 90, np.uint8)
    clip[:, 10:30, 20:30] = np.arange(5, dtype=np.uint8)[:, None, None, None] * 40
    path = str(tmp_path / "held.avi")
    write_clip(path, clip)
    frames, is_video = soc_report.load_report_frames(path, 32, 4)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8 and is_video

    c = ml_collections.ConfigDict({"image_size": 32, "seed": 0, "soc": {
        "report_from": path, "report_frames": 4}})
    frozen, adapted = {"gain": np.float32(1.0)}, {"gain": np.float32(0.8)}
    report = soc_report.start(c, _StubModel(), frozen)
    assert report.before["soc_loss"] == pytest.approx(report.measure(frozen, frozen)["soc_loss"])
    with caplog.at_level(logging.INFO, logger=soc_report.__name__):
        out = soc_report.finish(report, adapted)
    assert out["after"] == report.measure(adapted, frozen)
    assert set(out["after"]) == {"soc_loss", "flicker", "flicker_ofd"}
    assert out["verdict"] == soc_report.verdict(out["before"], out["after"])
    assert "verdict: " + out["verdict"] in caplog.text

    c.soc.report_frames = 0
    assert soc_report.start(c, _StubModel(), frozen) is None
