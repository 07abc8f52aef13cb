"""Throughput paths give the samples of the plain paths: the decoded-sample cache and the
packed 4-channel crop (bit-exact), raw .npy prepared copies (bit-exact where nothing is
resized), and the trimap fast path (against the recipe written with numpy masks). The
compositing fast path is checked on all inputs in test_imaging_compositing.py."""

import pickle

import cv2
import numpy as np
import pytest

from modnet_jax.data import generate_background, generate_portrait, prepare, sources
from modnet_jax.data import make_eval_iterator, make_train_iterator
from modnet_jax.data.augment import Window, crop_resize, split_colour_alpha
from modnet_jax.data.cache import PACKED_KEY, DecodedCache, cached
from modnet_jax.data.config import resolve_config
from modnet_jax.data.report import UnusableFile
from modnet_jax.imaging import decode as images
from modnet_jax.imaging.trimap import make_trimap

SIZE = 64  # sources are 72 x 96: crops of side 48..72 are enlarged, kept or shrunk


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    for sub in ("fg", "alpha", "bg"):
        (root / sub).mkdir()
    for index in range(6):
        sample = generate_portrait(3, index, 72, 96)
        bg = generate_background(3, index, 80, 90)
        cv2.imwrite(str(root / "fg" / f"s{index}.jpg"), sample["fg"][:, :, ::-1])
        cv2.imwrite(str(root / "alpha" / f"s{index}.png"), sample["alpha"])
        cv2.imwrite(str(root / "bg" / f"b{index}.jpg"), bg[:, :, ::-1])
    return root


def _config(root, **extra):
    return dict(layout="fg_alpha", root=str(root), bg_root=str(root / "bg"), val_fraction=0.0,
                read_threads=1, prefetch_batches=1, scale_range=(0.75, 1.5), **extra)


def _batches(cfg, count, seed=2):
    iterator = make_train_iterator(cfg, batch_size=4, seed=seed, image_size=SIZE)
    return [next(iterator) for _ in range(count)]


def _assert_same(batches_a, batches_b):
    for a, b in zip(batches_a, batches_b, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_cached_samples_equal_uncached_samples(files):
    # 5 batches of 4 from 6 samples: later epochs are served from the caches.
    plain = _batches(_config(files), 5)
    _assert_same(_batches(_config(files, sample_cache_mb=64, bg_cache_mb=64), 5), plain)
    # A budget that holds only part of the set: hits and misses mix, samples do not change.
    _assert_same(_batches(_config(files, sample_cache_mb=0.05, bg_cache_mb=0.02), 5), plain)
    def evaluate(**extra):
        cfg = _config(files, val_root=str(files), **extra)
        return list(make_eval_iterator(cfg, batch_size=3, image_size=SIZE))

    _assert_same(evaluate(sample_cache_mb=64, bg_cache_mb=64), evaluate())


def test_cached_samples_with_a_worker_process_and_resume(files):
    plain = _batches(_config(files), 5)
    cfg = _config(files, sample_cache_mb=64, bg_cache_mb=64, num_workers=1)
    iterator = make_train_iterator(cfg, batch_size=4, seed=2, image_size=SIZE)
    _assert_same([next(iterator) for _ in range(3)], plain[:3])
    resumed = make_train_iterator(cfg, batch_size=4, seed=2, image_size=SIZE)
    resumed.set_state(iterator.get_state())  # a fresh worker: empty cache, same samples
    _assert_same([next(resumed) for _ in range(2)], plain[3:])
    for it in (iterator, resumed):
        it.close()


def test_cache_budget_hits_pickling_and_read_only(files):
    with pytest.raises(ValueError, match="sample_cache_mb must be >= 0"):
        resolve_config(dict(sample_cache_mb=-1))
    pairs = sources.scan_pairs(str(files / "fg"), str(files / "alpha"), True).entries
    source = sources.ForegroundAlphaSource(pairs)
    one = 72 * 96 * 4  # one packed record
    store = DecodedCache(source, 2 * one + 10)
    for index in (0, 1, 2, 0, 1, 2):
        record = store[index]
        expected = source[index]
        np.testing.assert_array_equal(record["fg"], expected["fg"])
        np.testing.assert_array_equal(record["alpha"], expected["alpha"])
        np.testing.assert_array_equal(record[PACKED_KEY][:, :, 3], expected["alpha"])
        assert not record[PACKED_KEY].flags.writeable
    assert (store.used_bytes, store.hits, store.misses) == (2 * one, 2, 4)  # 2 stays a miss
    copy = pickle.loads(pickle.dumps(store))  # a worker starts empty
    assert copy.used_bytes == 0 and len(copy) == len(source) and copy.max_bytes == store.max_bytes
    assert cached(source, 0) is source
    backgrounds = cached(sources.BackgroundSource([str(files / "bg" / "b0.jpg")]), 1)
    np.testing.assert_array_equal(backgrounds[0], backgrounds[0])
    assert backgrounds.hits == 1


@pytest.mark.parametrize("side", [40, 64, 71])  # enlarge, copy, shrink
def test_packed_crop_equals_separate_crops(side):
    rng = np.random.default_rng(side)
    colour = rng.integers(0, 256, (72, 96, 3), np.uint8)
    alpha = rng.integers(0, 256, (72, 96), np.uint8)
    window = Window(1, 5, side)
    got_colour, got_alpha = split_colour_alpha(crop_resize(cv2.merge([colour, alpha]), window, SIZE))
    np.testing.assert_array_equal(got_colour, crop_resize(colour, window, SIZE))
    np.testing.assert_array_equal(got_alpha, crop_resize(alpha, window, SIZE))


def test_raw_copy_holds_the_decoded_pixels(files, tmp_path):
    # No resizing (short side <= 768): the raw copy is exactly what decoding gives, so the
    # samples are bit-identical; the copy is memory-mapped, not decoded.
    out = tmp_path / "raw"
    report, _ = prepare.prepare("fg_alpha", str(files), str(out), 768, jobs=1, fmt="raw")
    assert (report.copied, len(report.skipped)) == (6, 0)
    prepare.prepare("images", str(files / "bg"), str(out / "bg"), 768, jobs=1, fmt="raw")
    assert sorted(p.name for p in (out / "alpha").iterdir())[0] == "s0.npy"
    np.testing.assert_array_equal(images.decode_rgb(str(out / "fg" / "s0.npy")),
                                  images.decode_rgb(str(files / "fg" / "s0.jpg")))
    _assert_same(_batches(_config(out), 2), _batches(_config(files), 2))
    # Resized: the area-filtered decode, stored without loss.
    report, _ = prepare.prepare("images", str(files / "bg"), str(tmp_path / "bg40"), 40, jobs=1,
                                fmt="raw")
    assert report.resized == 6
    expected = cv2.resize(images.decode_rgb(str(files / "bg" / "b1.jpg")), (45, 40),
                          interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(images.decode_rgb(str(tmp_path / "bg40" / "b1.npy")), expected)


def test_raw_files_are_checked(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((5, 7, 3), np.uint8))
    head = images.probe_header(str(good))
    assert (head.width, head.height, head.channels) == (7, 5, 3)
    with pytest.raises(UnusableFile, match="expected a matte"):
        images.decode_alpha(str(good))
    for name, array in (("float.npy", np.zeros((5, 7), np.float32)),
                        ("rgba.npy", np.zeros((5, 7, 4), np.uint8))):
        np.save(tmp_path / name, array)
        with pytest.raises(UnusableFile, match="raw image must be uint8"):
            images.probe_header(str(tmp_path / name))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(UnusableFile, match="truncated"):
        images.decode_rgb(str(cut))
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(UnusableFile, match="not a .npy"):
        images.decode_rgb(str(tmp_path / "junk.npy"))


@pytest.mark.parametrize("thresholds", [(0.9, 0.0), (0.5, 0.2), (0.1, 0.6)])
def test_trimap_matches_the_mask_recipe(thresholds):
    fg_t, bg_t = thresholds
    alpha = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (48, 40), np.uint8),
                             (9, 9), 3)
    alpha[:10] = 255
    alpha[-6:] = 0
    for radius in (0, 3):
        fg = (alpha >= np.ceil(fg_t * 255 - 1e-6)).astype(np.uint8)
        not_bg = (alpha > np.floor(bg_t * 255 + 1e-6)).astype(np.uint8)
        if radius:
            kernel = np.ones((2 * radius + 1,) * 2, np.uint8)
            fg = cv2.erode(fg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
            not_bg = cv2.dilate(not_bg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        expected = np.full(alpha.shape, 128, np.uint8)
        expected[not_bg == 0] = 0
        expected[fg == 1] = 255
        np.testing.assert_array_equal(make_trimap(alpha, radius, fg_t, bg_t), expected)


def test_only_splits_read_repeatedly_are_cached(files):
    """Validation is one pass per evaluation through a freshly built pipeline, so a cache
    there would only hold memory next to the training workers' caches."""
    from modnet_jax.data.pipeline import _plan

    cfg = resolve_config(_config(files, val_root=str(files), sample_cache_mb=64,
                                 bg_cache_mb=64))
    train, val = _plan(cfg, "train", SIZE), _plan(cfg, "val", SIZE)
    assert isinstance(train.source, DecodedCache) and isinstance(train.backgrounds, DecodedCache)
    assert not isinstance(val.source, DecodedCache)
    assert not isinstance(val.backgrounds, DecodedCache)


def test_shadowed_files_are_reported(tmp_path, caplog):
    """A raw copy written next to an encoded one (a.npy beside a.jpg) or two encodings of one
    image: the first in sorted order is used, and the others are named."""
    for name in ("a.jpg", "a.npy", "b.png"):
        (tmp_path / name).write_bytes(b"")
    with caplog.at_level("WARNING", logger="modnet_jax.data"):
        found = sources.list_files(str(tmp_path), extensions=(".jpg", ".npy", ".png"))
    assert found == {"a": str(tmp_path / "a.jpg"), "b": str(tmp_path / "b.png")}
    (message,) = [r.getMessage() for r in caplog.records if "share a name" in r.getMessage()]
    assert "1 file(s)" in message and "a.npy is shadowed by" in message and "a.jpg" in message
