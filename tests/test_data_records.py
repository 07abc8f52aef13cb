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
    assert meta == {"kind": "fg_alpha", "count": 6, "max_short_side": 72}
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
    (broken / records.RECORDS).write_bytes((folders["arrayrecord"] / records.RECORDS).read_bytes())
    (broken / records.META).write_text(json.dumps({"kind": "fg_alpha", "count": 7}))
    with pytest.raises(DatasetError, match="6 records"):
        records.PreparedSource(str(broken))
    assert records.check(str(broken), 7, 72)  # the check reports the count mismatch
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        records.PreparedSource(str(tmp_path))
    with pytest.raises(UnusableFile, match="not a prepared sample record"):
        records.decode_record(records.encode(np.zeros((4, 4, 3), np.uint8))[:-1])


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
