"""Video evaluation (``evaluate --layout video``): clip discovery, frame folders and videos,
ground-truth checks, reports; with a stand-in engine (no model compile)."""

import csv
import json

import cv2
import numpy as np
import pytest

from modnet_jax import evaluate, video_eval
from modnet_jax.inference.engine import Matted
from modnet_jax.inference.images import InputError
from modnet_jax.temporal import OneFrameDelay


class GrayEngine:
    """Duck-typed MattingEngine.video: the matte is the frame's grey level, OFD on the host."""
    batch_size = 3

    def matte_of(self, frame):
        return frame.astype(np.float32).mean(-1) / 255.0

    def video(self, frames, *, ofd=True, with_image=False):
        stream = OneFrameDelay(enabled=ofd)
        for frame in frames:
            for matte, image in stream.push(self.matte_of(frame), frame):
                yield Matted(matte=matte, image=image)
        for matte, image in stream.flush():
            yield Matted(matte=matte, image=image)


class SpikyEngine(GrayEngine):
    """Adds a one-frame spike to the third matte it makes: flicker the input does not have."""

    def __init__(self):
        self.seen = 0

    def matte_of(self, frame):
        out = super().matte_of(frame)
        if self.seen == 2:
            out[2:6, 56:60] = 1.0
        self.seen += 1
        return out


def blob(t, h=64, w=64):
    yy, xx = np.mgrid[:h, :w]
    return np.clip(1.5 - np.hypot((yy - 32) / 12, (xx - 20 - 3 * t) / 12), 0, 1)


def to_u8(a):
    return np.rint(a * 255).astype(np.uint8)


def write_frames(folder, mattes):
    folder.mkdir(parents=True)
    for i, m in enumerate(mattes):
        cv2.imwrite(str(folder / f"{i:04d}.png"), to_u8(m))


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "clips"
    truth = [blob(t) for t in range(6)]
    write_frames(root / "video" / "a", truth)            # frames = the truth: perfect model
    write_frames(root / "matte" / "a", truth)
    flicker = [m.copy() for m in truth]
    flicker[2][2:6, 56:60] = 1.0                          # a one-frame spike in the background
    write_frames(root / "video" / "b", flicker)
    write_frames(root / "matte" / "b", truth)
    write_frames(root / "video" / "c", truth)              # no ground truth: flicker only
    write_frames(root / "video" / "d", truth)
    write_frames(root / "matte" / "d", truth[:4])          # two frames short
    return root, truth


def test_find_clips_and_readers(dataset, tmp_path):
    root, truth = dataset
    clips = video_eval.find_clips(str(root))
    assert [c.name for c in clips] == ["a", "b", "c", "d"]
    assert clips[2].matte is None and clips[0].matte.endswith("matte/a")
    frames = list(video_eval.read_frames(clips[0].source))
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    gts = list(video_eval.read_mattes(clips[0].matte))
    assert gts[3].dtype == np.uint8 and np.abs(gts[3] / 255 - truth[3]).max() <= 0.5 / 255 + 1e-12
    single = video_eval.find_clips(str(root / "video" / "a"))  # one frame folder
    assert len(single) == 1 and single[0].matte is None
    with pytest.raises(InputError, match="no clips"):
        video_eval.find_clips(str(tmp_path))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not a video"):
        video_eval.find_clips(str(tmp_path / "x.txt"))


def test_clip_mattes_keep_order_and_count_with_ofd():
    frames = [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(7)]
    out = list(video_eval.clip_mattes(GrayEngine(), iter(frames), ofd=True))
    assert len(out) == 7
    assert all(rgb is f for (rgb, _), f in zip(out, frames))
    assert [round(float(m.mean()) * 255) for _, m in out] == [10 * i for i in range(7)]


def test_perfect_and_flickering_clips(dataset):
    root, _ = dataset
    clips = video_eval.find_clips(str(root))
    rows, frames, summary, failures = video_eval.evaluate_clips(GrayEngine(), clips, ofd=False)
    by = {r["name"]: r for r in rows}
    a, b, c = by["a"], by["b"], by["c"]
    assert a["mse"] == 0 and a["dtssd"] == 0 and a["messddt"] == 0 and a["frames"] == 6
    # b: 16 pixels wrong by (1 - 0) on frame 2 only: they flicker on, then off.
    assert b["mse"] == pytest.approx(16 / 4096 / 6)
    assert b["dtssd"] == pytest.approx(2 * 100 * np.sqrt(16 / 4096) / 5)
    # The input changes where b's matte does, and by <= 2 levels elsewhere: no flicker seen.
    assert a["flicker"] < 2 / 255 and b["flicker"] == pytest.approx(a["flicker"], rel=0.01)
    assert np.isnan(c["mse"]) and c["flicker"] == a["flicker"] and not c["ground_truth"]
    assert failures and failures[0][0].endswith("video/d") and "4 frames, fewer" in failures[0][1]
    assert summary["clips"] == 3 and summary["clips_with_ground_truth"] == 2
    assert summary["dtssd"] == pytest.approx((a["dtssd"] + b["dtssd"]) / 2)
    assert [r["frame"] for r in frames if r["name"] == "b"] == list(range(6))
    # One-Frame Delay removes the one-frame spike.
    rows_ofd, *_ = video_eval.evaluate_clips(GrayEngine(), clips[1:2], ofd=True)
    assert rows_ofd[0]["dtssd"] < 0.1 * b["dtssd"]


def test_flicker_score_sees_model_flicker_and_ofd_removes_it(dataset):
    root, _ = dataset
    clip = video_eval.find_clips(str(root))[2]  # c: no ground truth
    raw, *_ = video_eval.evaluate_clips(SpikyEngine(), [clip], ofd=False)
    ofd, *_ = video_eval.evaluate_clips(SpikyEngine(), [clip], ofd=True)
    clean, *_ = video_eval.evaluate_clips(GrayEngine(), [clip], ofd=False)
    # 16 pixels jump by 1 and back over ~5 x 4000 still pixels: ~0.002 on top of ~1e-4.
    assert raw[0]["flicker"] > clean[0]["flicker"] + 0.0015
    assert ofd[0]["flicker"] < clean[0]["flicker"] + 1e-4


def test_cli_video_layout_writes_reports(dataset, tmp_path, monkeypatch, capsys):
    root, _ = dataset
    engine = GrayEngine()
    engine.compile_summary = lambda: "none"
    monkeypatch.setattr(evaluate, "engine_from_args", lambda args: engine)
    out = tmp_path / "eval"
    rc = evaluate.cli(["--checkpoint", "unused", "--data", str(root), "--layout", "video",
                       "--no-ofd", "--output", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1  # clip d was skipped
    assert "DTSSD" in captured.out and "video/d" in captured.err
    report = json.loads((out / "summary.json").read_text())
    assert report["precision"] == "8bit" and report["ofd"] is False and report["clips"] == 4
    with open(out / "per_clip.csv") as f:
        clip_rows = list(csv.DictReader(f))
    assert [r["name"] for r in clip_rows] == ["a", "b", "c"]
    with open(out / "per_frame.csv") as f:
        frame_rows = list(csv.DictReader(f))
    assert len(frame_rows) == 12 and frame_rows[0]["dtssd"] == ""
    rc = evaluate.cli(["--checkpoint", "unused", "--data", str(tmp_path / "none"),
                       "--layout", "video", "--output", str(out), "--quiet"])
    assert rc == 2 and capsys.readouterr().err.startswith("error: ")
