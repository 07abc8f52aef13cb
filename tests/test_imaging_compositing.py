"""The compositing law (pixel-exact) and the trimap recipe (values and band placement)."""

import numpy as np
import pytest

from modnet_jax.data import composite, estimate_foreground, generate_background, generate_portrait
from modnet_jax.imaging.trimap import band_radius, make_trimap, random_band_radius


def test_composite_alpha_one_gives_fg_and_zero_gives_bg_exactly():
    rng = np.random.default_rng(0)
    fg = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(composite(fg, bg, np.full((16, 16), 255, np.uint8)), fg)
    np.testing.assert_array_equal(composite(fg, bg, np.zeros((16, 16, 1), np.uint8)), bg)


def test_composite_hand_computed_values():
    fg = np.array([[[200, 100, 0]]], np.uint8)
    bg = np.array([[[0, 100, 255]]], np.uint8)
    # a = 51/255 = 0.2: 200*0.2 = 40; 100; 255*0.8 = 204
    np.testing.assert_array_equal(composite(fg, bg, np.array([[51]], np.uint8)), [[[40, 100, 204]]])
    # a = 128/255: 200*128/255 = 100.39 -> 100; 255*127/255 = 127
    np.testing.assert_array_equal(composite(fg, bg, np.array([[128]], np.uint8)), [[[100, 100, 127]]])


def test_composite_is_correctly_rounded_for_every_value_pair():
    # Every (fg, alpha) pair against bg = 0 and bg = 255, vs a float64 reference.
    values = np.arange(256, dtype=np.uint8)
    fg_grid, a_grid = np.meshgrid(values, values, indexing="ij")
    fg = np.repeat(fg_grid[:, :, None], 3, axis=2)
    for bg_value in (0, 77, 255):
        bg = np.full_like(fg, bg_value)
        a = a_grid.astype(np.float64) / 255
        expected = np.rint(fg_grid * a + bg_value * (1 - a)).astype(np.uint8)
        out = composite(fg, bg, a_grid.astype(np.uint8))
        np.testing.assert_array_equal(out[:, :, 0], expected)


def test_composite_equals_the_integer_formula_for_all_triples():
    # All 2^24 (fg, bg, alpha) triples (three per pixel, one per channel ordering) against
    # round((fg * a + bg * (255 - a)) / 255) in exact integer arithmetic: the OpenCV
    # float32 fast path must agree everywhere, not just within a tolerance.
    n = np.arange(2 ** 24, dtype=np.uint32)
    f, b, a = (n >> 16).astype(np.uint8), ((n >> 8) & 255).astype(np.uint8), (n & 255).astype(np.uint8)
    fg = np.stack([f, b, a], axis=-1).reshape(4096, 4096, 3)
    bg = np.stack([b, a, f], axis=-1).reshape(4096, 4096, 3)
    alpha = a.reshape(4096, 4096)
    weight = alpha.astype(np.uint32)[:, :, None]
    total = fg * weight + bg * (255 - weight)
    expected = (total // 255 + (total % 255 > 127)).astype(np.uint8)  # exact rounding
    np.testing.assert_array_equal(composite(fg, bg, alpha), expected)


def test_composite_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="uint8 of one shape"):
        composite(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8), np.zeros((4, 4), np.uint8))


def test_estimate_foreground_beats_using_the_photo_in_the_soft_band():
    ratios = []
    for seed in range(3):
        sample = generate_portrait(seed, 1, 128)
        fg, alpha = sample["fg"], sample["alpha"]
        image = composite(fg, generate_background(seed, 1, 128), alpha)
        band = (alpha > 25) & (alpha < 230)
        assert band.sum() > 50
        estimate = estimate_foreground(image, alpha)
        ratios.append(np.abs(estimate.astype(int) - fg)[band].mean()
                      / np.abs(image.astype(int) - fg)[band].mean())
        # Fully opaque pixels are the photo itself.
        np.testing.assert_array_equal(estimate[alpha == 255], image[alpha == 255])
    # Measured about 0.35 to 0.45 on these samples: the estimate removes most of the
    # old-background colour that the photo carries in its semi-transparent band.
    assert max(ratios) < 0.6


def test_trimap_step_edge_band_placement():
    # Columns 0..31 alpha 255, 32..63 alpha 0. With r = 3: erode(fg) keeps 0..28,
    # dilate(not_bg) reaches 0..34, so unknown = 29..34 and bg = 35..63.
    alpha = np.zeros((10, 64), np.uint8)
    alpha[:, :32] = 255
    tri = make_trimap(alpha, radius=3)
    expected_row = np.array([255] * 29 + [128] * 6 + [0] * 29, np.uint8)
    np.testing.assert_array_equal(tri, np.tile(expected_row, (10, 1)))


def test_trimap_thresholds_and_values():
    # A ramp: fg where alpha >= 0.9 (230), not_bg where alpha > 0; radius 0 = no band growth.
    alpha = np.array([[0, 1, 128, 229, 230, 255]], np.uint8)
    np.testing.assert_array_equal(make_trimap(alpha, 0), [[0, 128, 128, 128, 255, 255]])
    np.testing.assert_array_equal(make_trimap(alpha, 0, fg_threshold=1.0, bg_threshold=0.5),
                                  [[0, 0, 128, 128, 128, 255]])
    sample = generate_portrait(0, 2, 64)["alpha"]
    tri = make_trimap(sample, 2)
    assert set(np.unique(tri)) == {0, 128, 255}
    # Every fractional alpha pixel is in the unknown band; definite regions agree with alpha.
    assert np.all(tri[(sample > 0) & (sample < 230)] == 128)
    assert np.all(sample[tri == 0] == 0) and np.all(sample[tri == 255] >= 230)


def test_trimap_shape_follows_alpha_and_rejects_float():
    alpha = np.zeros((8, 8, 1), np.uint8)
    assert make_trimap(alpha, 1).shape == (8, 8, 1)
    with pytest.raises(ValueError, match="uint8"):
        make_trimap(alpha.astype(np.float32), 1)


def test_band_radius_scales_with_image_size():
    # k = (size / 256) * scale pixels; radius = k / 2.
    assert band_radius(512, 10) == 10 and band_radius(512, 20) == 20
    assert band_radius(64, 10) == 1 and band_radius(64, 20) == 2
    rng = np.random.default_rng(0)
    radii = {random_band_radius(rng, 512, (10.0, 20.0)) for _ in range(200)}
    assert min(radii) >= 10 and max(radii) <= 20 and len(radii) > 5
