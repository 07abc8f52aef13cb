"""The prepared ArrayRecord dataset (`prepare --format arrayrecord`, `data.layout=prepared`):
written with a progress bar and checked; training reads the same samples from it as from the
`--format raw` copy of the same files (both hold the decoded, resized pixels)."""

import json
import os

import numpy as np
import pytest

from modnet_jax.data import DatasetError, UnusableFile, make_train_iterator, prepare, records
from modnet_jax.data import write_synthetic_folder

SIZE = 48


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    source = root / "source"
    write_synthetic_folder(str(source), 6, height=96, width=128, fg_ext=".jpg")
    out = {"source": source}
    for fmt in ("raw", "arrayrecord"):
        for layout, src, name in (("fg_alpha", source, fmt), ("images", source / "bg", f"{fmt}_bg")):
            code = prepare.main(["--layout", layout, "--root", str(src), "--output",
                                 str(root / name), "--max-short-side", "72", "--format", fmt,
                                 "--jobs", "1"])
            assert code == 0
            out[name] = root / name
    return out


def test_written_with_progress_and_checked(folders, capsys):
    meta = json.loads((folders["arrayrecord"] / records.META).read_text())
    assert meta == {"kind": "fg_alpha", "count": 6, "max_short_side": 72,
                    "format": records.FORMAT, "strip": records.STRIP}
    source = records.PreparedSource(str(folders["arrayrecord"]))
    first = source[0]
    assert first["fg"].shape == (72, 96, 3) and first["alpha"].shape == (72, 96)
    # the pixels are the raw copy's (decoded, upright, resized the same way)
    stems = sorted(os.listdir(folders["raw"] / "fg"))
    np.testing.assert_array_equal(first["fg"], np.load(folders["raw"] / "fg" / stems[0]))
    np.testing.assert_array_equal(first["alpha"], np.load(folders["raw"] / "alpha" / stems[0]))
    bgs = records.PreparedSource(str(folders["arrayrecord_bg"]), images=True)
    assert len(bgs) == 6 and bgs[0].shape == (72, 96, 3)


@pytest.mark.parametrize("device", [False, True])
def test_training_reads_the_same_samples_as_from_the_raw_copy(folders, device):
    def batches(root, bg_root, layout):
        cfg = dict(layout=layout, root=str(root), bg_root=str(bg_root), val_fraction=0.25,
                   augment_on_device=device, read_threads=1)
        it = make_train_iterator(cfg, batch_size=2, seed=3, image_size=SIZE)
        return [next(it) for _ in range(3)]

    ours = batches(folders["arrayrecord"], folders["arrayrecord_bg"], "prepared")
    raw = batches(folders["raw"], folders["raw_bg"], "fg_alpha")
    for a, b in zip(ours, raw):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_refuses_to_overwrite_and_rejects_a_broken_folder(folders, tmp_path, capsys):
    code = prepare.main(["--layout", "images", "--root", str(folders["source"] / "bg"),
                         "--output", str(folders["arrayrecord_bg"]), "--format", "arrayrecord",
                         "--jobs", "1"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error:")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (records.RECORDS, records.SHAPES):
        (broken / name).write_bytes((folders["arrayrecord"] / name).read_bytes())
    meta = json.loads((folders["arrayrecord"] / records.META).read_text())
    (broken / records.META).write_text(json.dumps(dict(meta, count=7)))
    with pytest.raises(DatasetError, match="6 samples"):
        records.PreparedSource(str(broken))
    assert records.check(str(broken), 7, 72)  # the check reports the count mismatch
    (broken / records.META).write_text(json.dumps({k: v for k, v in meta.items()
                                                   if k not in ("format", "strip")}))
    with pytest.raises(DatasetError, match="prepare it again"):  # a format-1 folder
        records.PreparedSource(str(broken))
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        records.PreparedSource(str(tmp_path))
    strip = records.encode(np.zeros((4, 4, 3), np.uint8))[0]
    with pytest.raises(UnusableFile, match="expected"):
        records.decode_strip(strip[:-1], (4, 4, 3))


def test_the_sample_cache_keeps_prepared_records_packed(folders):
    from modnet_jax.data import cache

    source = records.PreparedSource(str(folders["arrayrecord"]))
    cached = cache.DecodedCache(source, 2 ** 30)
    cached[1]
    again = cached[1]
    assert cached.hits == 1 and cached.used_bytes == source[1][cache.PACKED_KEY].nbytes
    for key in ("fg", "alpha", cache.PACKED_KEY):
        np.testing.assert_array_equal(again[key], source[1][key])
    assert np.shares_memory(again["fg"], again[cache.PACKED_KEY])


class _Records(list):
    """A list of strip records that counts reads (stands in for the ArrayRecord source)."""

    reads = 0

    def __getitem__(self, index):
        self.reads += 1
        return list.__getitem__(self, index)


@pytest.mark.parametrize("shape", [(40, 150, 4), (150, 40, 3), (33, 33, 4)])
def test_strip_arrays_slice_like_numpy_and_read_only_the_strips_needed(shape):
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    strip = 16
    data = _Records(records.encode(image, strip))
    assert len(data) == records.strip_count(shape[0], shape[1], strip)
    whole = records.StripArray(records._Strips(data, 0, shape, strip, "test"))
    assert whole.shape == shape and whole.nbytes == image.nbytes
    np.testing.assert_array_equal(np.asarray(whole), image)
    rng = np.random.default_rng(2)
    for _ in range(30):
        (r0, r1), (c0, c1) = (np.sort(rng.integers(0, n + 1, 2)) for n in shape[:2])
        step = int(rng.integers(1, 4))
        key = (slice(r0, r1 + 1, step), slice(c0, c1 + 1))
        fresh = _Records(data)
        strips = records._Strips(fresh, 0, shape, strip, "test")
        alpha = records.StripArray(strips, shape[2] - 1)
        np.testing.assert_array_equal(alpha[key], image[key + (shape[2] - 1,)])
        colour = records.StripArray(strips, slice(0, 3))
        np.testing.assert_array_equal(colour[key], image[key + (slice(0, 3),)])
        # only the strips across the long axis that the slice touches were read, each once
        long = 0 if shape[0] > shape[1] else 1
        span = key[long].indices(shape[long])
        touched = range(span[0] // strip, max(span[0], min(span[1], shape[long]) - 1) // strip + 1)
        expected = len(touched) if span[1] > span[0] else 0
        assert fresh.reads == expected


@pytest.mark.parametrize("shape", [(40, 150, 4), (150, 40, 3)])
def test_device_crops_of_strips_are_the_crops_of_the_array(shape):
    from modnet_jax.data import augment, recipe

    image = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    strips = records.StripArray(records._Strips(records.encode(image, 16), 0, shape, 16, "t"))
    rng = np.random.default_rng(4)
    windows = [augment.random_window(*shape[:2], rng, (1.0, 2.0)) for _ in range(12)]
    ours = [recipe.precrop(strips, w, 36, 30) for w in windows]
    theirs = [recipe.precrop(image, w, 36, 30) for w in windows]
    assert [side for _, side in ours] == [side for _, side in theirs]
    np.testing.assert_array_equal(recipe.canvases([c for c, _ in ours], 36),
                                  recipe.canvases([c for c, _ in theirs], 36))
