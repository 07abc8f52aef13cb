"""The device stage of the augmentation recipe (modnet_jax/device_augment.py) against the host
recipe (data/samples.py, OpenCV): the same draws give the same samples within the resize
filters' fixed-point rounding, the trimap band exactly, the composite exactly."""

import cv2
import jax
import numpy as np
import pytest

from modnet_jax import device_augment as dev
from modnet_jax.data import augment, recipe, sources
from modnet_jax.data.samples import SampleBuilder, SampleOptions, stack_batch
from modnet_jax.imaging.compositing import composite
from modnet_jax.imaging.trimap import make_trimap

SIZE = 48


def _blobs(rng, size, count=3):
    """A matte with solid blobs, soft edges and a few isolated speckles."""
    yy, xx = np.mgrid[:size, :size]
    alpha = np.zeros((size, size), np.float32)
    for _ in range(count):
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 10, size / 4)]
        alpha = np.maximum(alpha, np.clip((r - np.hypot(yy - cy, xx - cx)) / 3 + 0.5, 0, 1))
    alpha = (alpha * 255).astype(np.uint8)
    alpha[rng.integers(0, size, 5), rng.integers(0, size, 5)] = rng.integers(1, 256, 5)
    return alpha


def test_resize_weights_match_opencv_area_and_linear():
    rng = np.random.default_rng(0)
    canvas = 100
    resize = jax.jit(dev.resize_crop, static_argnums=2)
    for side in (80, 77, SIZE * 2, SIZE, 41, 30):  # area (incl. integer factor), copy, linear
        image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        image = cv2.GaussianBlur(image, (3, 3), 0)  # photo-like: not pure noise
        padded = np.zeros((canvas, canvas, 3), np.uint8)
        padded[:side, :side] = image
        expected = augment.crop_resize(image, augment.Window(0, 0, side), SIZE)
        got = np.asarray(resize(padded, np.float32(side), SIZE))
        assert np.abs(got - expected).max() <= 1, side
        assert np.mean(got == expected) > 0.99, side


def test_hsv_round_trip_and_jitter_match_opencv():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    h, s, v = dev.rgb_to_hsv8(rgb.astype(np.int32))
    np.testing.assert_array_equal(np.stack([h, s, v], -1), cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
    hsv = rgb.copy()
    hsv[..., 0] %= 180
    back = dev.hsv8_to_rgb(*(hsv[..., k].astype(np.int32) for k in range(3)))
    diff = np.abs(np.asarray(back) - cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
    assert diff.max() <= 1 and diff.mean() < 1e-3  # float32 products truncated: fma or not
    for _ in range(4):
        jitter = augment.draw_jitter(rng, augment.JitterRanges())
        got = dev.colour_jitter(rgb.astype(np.float32), np.float32(jitter.hue_steps),
                                np.float32(jitter.saturation), np.float32(jitter.value))
        diff = np.abs(np.asarray(got) - augment.apply_jitter(rgb, jitter))
        assert diff.max() <= 1 and diff.mean() < 1e-3  # float32 vs float64 table rounding


def test_composite_is_exact():
    rng = np.random.default_rng(2)
    fg, bg = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    alpha = rng.integers(0, 256, (64, 64, 1), dtype=np.uint8)
    np.testing.assert_array_equal(dev.composite(fg, bg, alpha), composite(fg, bg, alpha))


@pytest.mark.parametrize("max_radius", [5, 12])
def test_trimap_equals_opencv_for_every_radius(max_radius):
    rng = np.random.default_rng(3)
    recipe_ = dev.DeviceRecipe(SIZE, max_radius)
    trimap = jax.jit(lambda a, r: dev.trimap(a, r, recipe_))
    for radius in range(max_radius + 1):
        alpha = _blobs(rng, SIZE)
        expected = make_trimap(alpha, radius)
        got = np.asarray(trimap(alpha, np.int32(radius)))
        np.testing.assert_array_equal(got, expected, err_msg=f"radius {radius}")


def _builders(**extra):
    source = sources.SyntheticSource(6, 0, 96)
    backgrounds = sources.ProceduralBackgrounds(8, 0, 80)
    opts = SampleOptions(image_size=SIZE, trimap_kernel_range=(20.0, 40.0), **extra)
    device_opts = SampleOptions(image_size=SIZE, trimap_kernel_range=(20.0, 40.0), device=True,
                                precrop_size=recipe.precrop_size(SIZE, opts.scale_range), **extra)
    return SampleBuilder(source, backgrounds, opts), SampleBuilder(source, backgrounds, device_opts)


@pytest.mark.parametrize("scale_range", [(1.0, 1.5), (2.5, 3.0)])  # shrinking, enlarging crops
def test_device_samples_equal_host_samples_for_the_same_draws(scale_range):
    host, device = _builders(scale_range=scale_range)
    samples, device_samples = [], []
    for index in range(6):
        rng_host, rng_device = np.random.default_rng(index), np.random.default_rng(index)
        samples.append(host(index, rng_host))
        device_samples.append(device(index, rng_device))
        # one recipe: both paths took the same numbers from the stream
        assert rng_host.random() == rng_device.random()
    batch = stack_batch(device_samples, canvas=device.options.precrop_size)
    assert set(batch) == {"crop", "bg_crop", "draws"}
    assert all(batch[k].dtype == np.uint8 for k in ("crop", "bg_crop"))
    recipe_ = dev.DeviceRecipe.from_options(device.options)
    out = jax.jit(lambda b: dev.augment_batch(b, recipe_))(batch)
    expected = stack_batch(samples)
    assert set(out) == set(expected)
    for key in ("image", "fg", "bg", "alpha"):
        diff = np.abs(np.asarray(out[key]) - expected[key])
        assert diff.max() <= 2, key
        assert diff.mean() < 0.2, key  # one-level rounding differences, rare
    # the trimap is the host recipe's trimap of the device's alpha, exactly
    radii = batch["draws"][:, recipe.PARAMS.index("radius")].astype(int)
    for i, radius in enumerate(radii):
        alpha = np.asarray(out["alpha"][i, :, :, 0]).astype(np.uint8)
        np.testing.assert_array_equal(out["trimap"][i, :, :, 0], make_trimap(alpha, radius))
    assert np.mean(np.asarray(out["trimap"]) == expected["trimap"]) > 0.995


def test_unlabelled_device_samples_are_crops_and_flips():
    images = [np.random.default_rng(i).integers(0, 256, (70, 90, 3), dtype=np.uint8)
              for i in range(4)]
    builder_opts = dict(image_size=SIZE, scale_range=(1.0, 1.4))

    class Images:
        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            return {"image": images[index]}

    host = SampleBuilder(Images(), None, SampleOptions(**builder_opts))
    device = SampleBuilder(Images(), None, SampleOptions(
        **builder_opts, device=True, precrop_size=recipe.precrop_size(SIZE, (1.0, 1.4))))
    expected = stack_batch([host(i, np.random.default_rng(i)) for i in range(4)])
    batch = stack_batch([device(i, np.random.default_rng(i)) for i in range(4)], canvas=68)
    assert batch["crop"].shape == (4, 68, 68, 3)
    out = dev.augment_batch(batch, dev.DeviceRecipe(SIZE, 1))
    assert set(out) == {"image"}
    assert np.abs(np.asarray(out["image"]) - expected["image"]).max() <= 1


def test_precrop_resizes_crops_larger_than_the_canvas_as_the_host_does():
    image = np.random.default_rng(5).integers(0, 256, (100, 120, 4), dtype=np.uint8)
    window = augment.Window(10, 20, 90)
    large, side = recipe.precrop(image, window, 60, 50)
    assert side == 50 and large.shape == (50, 50, 4)
    np.testing.assert_array_equal(large, augment.crop_resize(image, window, 50))
    small, side = recipe.precrop(image, augment.Window(10, 20, 40), 60, 50)
    assert side == 40 and small.shape == (40, 40, 4)
    np.testing.assert_array_equal(small, image[10:50, 20:60])
    batch = recipe.canvases([large, small], 60)
    assert batch.shape == (2, 60, 60, 4)
    np.testing.assert_array_equal(batch[0, :50, :50], large)
    np.testing.assert_array_equal(batch[1, :40, :40], small)
    assert not batch[0, 50:].any() and not batch[0, :, 50:].any()
    assert not batch[1, 40:].any() and not batch[1, :, 40:].any()


def test_config_refuses_recomposite_on_the_device_path():
    from modnet_jax.data import resolve_config

    with pytest.raises(ValueError, match="recomposite"):
        resolve_config(dict(augment_on_device=True, recomposite=True))
    with pytest.raises(ValueError, match="precrop_size"):
        resolve_config(dict(precrop_size=-1))
