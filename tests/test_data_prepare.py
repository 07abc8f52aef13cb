"""Reduced-size decoding and the prepared (resized) dataset copy give the samples that full
decoding of the original files gives, to within resampling noise."""

import os
import shutil

import cv2
import numpy as np
import pytest

from modnet_jax.data import generate_background, generate_portrait, make_train_iterator
from modnet_jax.data import prepare, sources, validate_dataset
from modnet_jax.imaging import decode as images
from modnet_jax.data.report import clear_reports

SIZE = 512  # image_size; with scale_range (1, 1.5) a source needs a short side of 768
TOLERANCE = 2.0  # mean |difference| per sample, in 8-bit levels


def _write_large(root, count=3, height=1536, width=2304, seed=5):
    """fg JPEG + alpha PNG + bg JPEG, large enough for 1/2-size decoding at SIZE."""
    rng = np.random.default_rng(0)
    for sub in ("fg", "alpha", "bg"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        sample = generate_portrait(seed, index, height, width)
        bg = generate_background(seed, index, height, width, avoid=sample["clothes_colour"])
        for sub, image in (("fg", sample["fg"]), ("bg", bg)):
            noisy = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / sub / f"s{index}.jpg"), noisy[:, :, ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
        cv2.imwrite(str(root / "alpha" / f"s{index}.png"), sample["alpha"])
    return root


def _batch(root, count, **extra):
    cfg = dict(layout="adobe", root=str(root), bg_root=str(root / "bg"), val_fraction=0.0,
               read_threads=1, prefetch_batches=1, **extra)
    return next(make_train_iterator(cfg, batch_size=count, seed=4, image_size=SIZE))


def _mean_diffs(a, b):
    return {key: np.abs(a[key].astype(np.int16) - b[key]).mean(axis=(1, 2, 3)) for key in a}


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    return _write_large(tmp_path_factory.mktemp("large"))


def test_reduction_factor_and_shape():
    assert images.reduction_for(800, 1200, 192) == 4
    assert images.reduction_for(1080, 1920, 768) == 1  # 1080p at 512 x 1.5: full size needed
    assert images.reduction_for(2160, 3840, 768) == 2
    assert images.reduction_for(5000, 5000, 100) == 8  # capped
    assert images.reduction_for(5000, 5000, 0) == 1  # off
    assert images.reduced_shape(301, 457, 2) == (151, 229)  # libjpeg rounds up


@pytest.mark.parametrize("matte_ext", [".png", ".jpg"])
def test_pair_decodes_at_reduced_size_with_matching_matte(tmp_path, matte_ext):
    sample = generate_portrait(1, 0, 401, 603)  # odd sizes: ceil rounding on both files
    cv2.imwrite(str(tmp_path / "fg.jpg"), sample["fg"][:, :, ::-1])
    cv2.imwrite(str(tmp_path / f"alpha{matte_ext}"), sample["alpha"])
    pair = [("s", str(tmp_path / "fg.jpg"), str(tmp_path / f"alpha{matte_ext}"))]
    record = sources.ForegroundAlphaSource(pair, min_side=100)[0]
    assert record["fg"].shape == (101, 151, 3) and record["alpha"].shape == (101, 151)
    full = sources.ForegroundAlphaSource(pair)[0]
    shrunk = cv2.resize(full["alpha"], (151, 101), interpolation=cv2.INTER_AREA)
    assert np.abs(record["alpha"].astype(int) - shrunk).mean() < TOLERANCE
    background = sources.BackgroundSource([str(tmp_path / "fg.jpg")], min_side=100)[0]
    assert background.shape == (101, 151, 3)


def test_reduced_colour_jpeg_matte_keeps_the_channel_check(tmp_path):
    colour = np.zeros((400, 400, 3), np.uint8)
    colour[:, :, 2] = 200  # a coloured picture, not a matte
    cv2.imwrite(str(tmp_path / "fg.jpg"), colour)
    cv2.imwrite(str(tmp_path / "alpha.jpg"), colour)
    pair = [("s", str(tmp_path / "fg.jpg"), str(tmp_path / "alpha.jpg"))]
    with pytest.raises(images.UnusableFile, match="colour channels differ"):
        sources.ForegroundAlphaSource(pair, min_side=100)[0]


def test_reduced_decoding_gives_the_same_samples(large):
    full = _batch(large, 3, reduced_decoding=False)
    reduced = _batch(large, 3)  # fg, matte and bg all decoded at 1/2 size
    for key, diffs in _mean_diffs(full, reduced).items():
        assert np.all(diffs < TOLERANCE), (key, diffs)


def test_prepare_keeps_names_layout_pairing_and_shrinks(large, tmp_path, capsys):
    root = tmp_path / "in"
    for sub in ("fg", "alpha"):
        (root / sub / "nested").mkdir(parents=True)
    for name in os.listdir(large / "fg"):  # nested stems, to check the mirrored paths
        shutil.copyfile(large / "fg" / name, root / "fg" / "nested" / name)
        shutil.copyfile(large / "alpha" / name.replace(".jpg", ".png"),
                root / "alpha" / "nested" / name.replace(".jpg", ".png"))
    small = generate_portrait(2, 0, 90, 120)  # already small: copied unchanged
    cv2.imwrite(str(root / "fg" / "small.png"), small["fg"][:, :, ::-1])
    cv2.imwrite(str(root / "alpha" / "small.png"), small["alpha"])
    cv2.imwrite(str(root / "fg" / "lonely.jpg"), small["fg"])  # no matte: skipped
    data = (root / "fg" / "nested" / "s2.jpg").read_bytes()
    (root / "fg" / "nested" / "s2.jpg").write_bytes(data[:len(data) // 2])  # truncated
    clear_reports()

    out = tmp_path / "out"
    argv = ["--layout", "adobe", "--root", str(root), "--output", str(out),
            "--max-short-side", "192", "--jobs", "1"]
    assert prepare.main(argv) == 1  # written, but 2 inputs skipped: exit status 1
    captured = capsys.readouterr()
    text = captured.out
    assert "3/3 inputs" in captured.err  # the progress bar (stderr), then the error line
    assert captured.err.strip().splitlines()[-1].startswith("error: skipped 2 input file(s): ")
    assert "3 pair(s) in the copy: 2 resized, 1 copied unchanged" in text
    assert "2 input file(s) skipped" in text
    assert sorted(sources.list_files(str(out / "fg"))) == ["nested/s0", "nested/s1", "small"]
    assert sorted(sources.list_files(str(out / "alpha"))) == ["nested/s0", "nested/s1", "small"]
    assert (out / "fg" / "small.png").read_bytes() == (root / "fg" / "small.png").read_bytes()
    for stem in ("s0", "s1"):
        fg = cv2.imread(str(out / "fg" / "nested" / f"{stem}.jpg"))
        alpha = cv2.imread(str(out / "alpha" / "nested" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert fg.shape == (192, 288, 3) and alpha.shape == (192, 288)  # from 1536x2304
        original = cv2.imread(str(root / "alpha" / "nested" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        expected = cv2.resize(original, (288, 192), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(alpha, expected)  # the matte is this pair's, lossless PNG
    assert validate_dataset(dict(layout="adobe", root=str(out), val_fraction=0.0),
                            image_size=SIZE).num_samples == 3

    assert prepare.main(argv) == 1  # a second run keeps what is there
    assert "0 resized, 0 copied unchanged (already small enough), 3 already present" in \
        capsys.readouterr().out


def test_prepared_copy_gives_the_same_samples(large, tmp_path):
    out = tmp_path / "prepared"
    report, _ = prepare.prepare("adobe", str(large), str(out), 768, jobs=1)
    assert (report.resized, len(report.skipped)) == (3, 0)
    report, _ = prepare.prepare("images", str(large / "bg"), str(out / "bg"), 768, jobs=1)
    assert report.resized == 3
    original = _batch(large, 3, reduced_decoding=False)
    copy = _batch(out, 3)
    for key, diffs in _mean_diffs(original, copy).items():
        assert np.all(diffs < TOLERANCE), (key, diffs)


def test_prepare_refuses_an_output_inside_the_input(large):
    with pytest.raises(ValueError, match="inside"):
        prepare.prepare("adobe", str(large), str(large / "copy"), 192)
