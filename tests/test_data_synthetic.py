"""The procedural portrait dataset: determinism, plausibility at 64 and 512, speed, writer."""

import os
import time

import cv2
import numpy as np
import pytest

from modnet_jax.data import generate_background, generate_portrait, write_synthetic_folder


def test_same_seed_and_index_give_identical_samples_and_others_differ():
    a, b = generate_portrait(5, 17, 64), generate_portrait(5, 17, 64)
    np.testing.assert_array_equal(a["fg"], b["fg"])
    np.testing.assert_array_equal(a["alpha"], b["alpha"])
    np.testing.assert_array_equal(generate_background(5, 17, 64), generate_background(5, 17, 64))
    assert not np.array_equal(a["alpha"], generate_portrait(5, 18, 64)["alpha"])
    assert not np.array_equal(a["alpha"], generate_portrait(6, 17, 64)["alpha"])
    assert not np.array_equal(generate_background(5, 17, 64), generate_background(5, 18, 64))


@pytest.mark.parametrize("size", [64, 512])
def test_portraits_are_plausible(size):
    for index in range(4):
        sample = generate_portrait(0, index, size)
        fg, alpha = sample["fg"], sample["alpha"]
        assert fg.shape == (size, size, 3) and alpha.shape == (size, size)
        assert fg.dtype == alpha.dtype == np.uint8
        # Shoulders/torso run off the bottom edge; the top corners are background.
        assert alpha[-1, size // 2] == 255
        assert alpha[: size // 8, : size // 8].max() == 0 and alpha[: size // 8, -size // 8:].max() == 0
        # Head: an opaque region above the shoulders, narrower than the torso.
        rows = (alpha == 255).sum(axis=1)
        head_row, bottom_row = int(size * 0.4), size - 1
        assert 0 < rows[head_row] < rows[bottom_row]
        # A real band of fractional alpha (soft edges and strands), 1 to 15% of the image.
        fractional = ((alpha > 0) & (alpha < 255)).mean()
        assert 0.01 < fractional < 0.15
        # Thin strands: fractional pixels that are not next to the opaque silhouette.
        near_body = cv2.dilate((alpha == 255).astype(np.uint8), np.ones((5, 5), np.uint8))
        assert ((alpha > 0) & (alpha < 255) & (near_body == 0)).sum() > size // 16
        # A textured foreground inside the subject.
        assert fg[alpha == 255].std() > 10


def test_backgrounds_are_textured_and_differ_from_the_subject():
    for index in range(4):
        sample = generate_portrait(1, index, 128)
        bg = generate_background(1, index, 128, avoid=sample["clothes_colour"])
        assert bg.shape == (128, 128, 3) and bg.std() > 5
        inside = sample["fg"][sample["alpha"] == 255].mean(0)
        assert np.abs(bg.reshape(-1, 3).mean(0) - inside).sum() > 20


def test_non_square_generation():
    sample = generate_portrait(0, 0, 90, 160)
    assert sample["fg"].shape == (90, 160, 3) and sample["alpha"].shape == (90, 160)
    assert generate_background(0, 0, 90, 160).shape == (90, 160, 3)


def test_generation_is_fast_at_64():
    start = time.perf_counter()
    for index in range(100):
        generate_portrait(0, index, 64)
        generate_background(0, index, 64)
    # Measured ~500 pairs/s on an idle core; the bound leaves room for a loaded machine.
    assert time.perf_counter() - start < 2.0


def test_write_synthetic_folder_layouts(tmp_path):
    stems = write_synthetic_folder(str(tmp_path / "fa"), 2, height=48, width=40, seed=3)
    assert stems == ["synth_00000", "synth_00001"]
    for sub, ext in (("fg", ".png"), ("alpha", ".png"), ("bg", ".jpg")):
        assert sorted(os.listdir(tmp_path / "fa" / sub)) == [s + ext for s in stems]
    alpha = cv2.imread(str(tmp_path / "fa" / "alpha" / "synth_00001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(alpha, generate_portrait(3, 1, 48, 40)["alpha"])
    write_synthetic_folder(str(tmp_path / "im"), 1, height=32, layout="image_matte")
    assert os.listdir(tmp_path / "im" / "image") == ["synth_00000.jpg"]
    with pytest.raises(ValueError, match="fg_alpha or image_matte"):
        write_synthetic_folder(str(tmp_path / "x"), 1, layout="nope")
