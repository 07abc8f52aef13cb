"""Bad input: each defect gives its message once, by name, and the pipeline goes on if it can."""

import os

import cv2
import numpy as np
import pytest

from modnet_jax.data import (
    DatasetError,
    make_train_iterator,
    make_unlabelled_iterator,
    validate_dataset,
    write_synthetic_folder,
)
from modnet_jax.data.report import clear_reports, skipped_files

SIZE = 32


@pytest.fixture(autouse=True)
def _fresh_reports():
    clear_reports()
    yield
    clear_reports()


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "modnet_jax.data"]


def _dataset(tmp_path, count=8):
    root = tmp_path / "data"
    write_synthetic_folder(str(root), count, height=40, width=40, seed=4)
    return root


def test_defective_files_are_reported_once_and_skipped(tmp_path, caplog):
    root = _dataset(tmp_path)
    fg, alpha = root / "fg", root / "alpha"
    (fg / "synth_00000.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not a real PNG")  # corrupt
    cv2.imwrite(str(fg / "synth_00001.jpg"), np.zeros((40, 40, 3), np.uint8))  # truncated JPEG
    os.remove(fg / "synth_00001.png")
    data = (fg / "synth_00001.jpg").read_bytes()
    (fg / "synth_00001.jpg").write_bytes(data[: len(data) - 40])
    cv2.imwrite(str(alpha / "synth_00002.png"), np.zeros((30, 40), np.uint8))  # size mismatch
    os.remove(alpha / "synth_00003.png")  # missing partner
    cv2.imwrite(str(alpha / "orphan.png"), np.zeros((40, 40), np.uint8))  # missing partner
    a16 = cv2.imread(str(alpha / "synth_00004.png"), cv2.IMREAD_UNCHANGED).astype(np.uint16) * 257
    cv2.imwrite(str(alpha / "synth_00004.png"), a16)  # 16-bit: converted, kept
    a3 = cv2.imread(str(alpha / "synth_00005.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(alpha / "synth_00005.png"), cv2.merge([a3, a3, a3]))  # 3-channel grey: kept
    cfg = dict(layout="fg_alpha", root=str(root), bg_root=str(root / "bg"), val_fraction=0.0)

    with caplog.at_level("WARNING", logger="modnet_jax.data"):
        summary = validate_dataset(cfg, image_size=SIZE)
        validate_dataset(cfg, image_size=SIZE)  # a second scan does not report again
    messages = _messages(caplog)
    assert summary.num_samples == 4  # 00002 .. 00007 minus the mismatch and the missing partner
    expected = {
        "synth_00000.png": "not a PNG file",
        "synth_00001.jpg": "truncated JPEG",
        "alpha/synth_00002.png": "is 40x30 but its fg",
        "fg/synth_00003.png": "no alpha file with stem 'synth_00003'",
        "orphan.png": "no fg file with stem 'orphan'",
    }
    for name, reason in expected.items():
        hits = [m for m in messages if name in m and reason in m and m.startswith("skipping")]
        assert len(hits) == 1, (name, messages)
    assert any("(5 file(s) skipped so far)" in m for m in messages)
    assert len(skipped_files()) == 5
    assert any("are 16-bit" in note for note in summary.notes)

    # The usable samples still train, including the converted 16-bit and 3-channel mattes.
    batch = next(make_train_iterator(cfg, batch_size=4, seed=0, image_size=SIZE))
    assert batch["alpha"].shape == (4, SIZE, SIZE, 1)
    assert any("16-bit: scaled to 8-bit" in m for m in _messages(caplog))


def test_decode_time_failures_are_replaced_and_reported_once(tmp_path, caplog):
    root = _dataset(tmp_path, count=4)
    # Passes the header scan (3 channels, right size) but is a colour picture, not a matte.
    picture = np.zeros((40, 40, 3), np.uint8)
    picture[..., 2] = 255
    cv2.imwrite(str(root / "alpha" / "synth_00001.png"), picture)
    cfg = dict(layout="fg_alpha", root=str(root), val_fraction=0.0, augment=False)
    with caplog.at_level("WARNING", logger="modnet_jax.data"):
        iterator = make_train_iterator(cfg, batch_size=4, seed=0, image_size=SIZE)
        batches = [next(iterator) for _ in range(3)]  # three epochs: the bad file is hit 3 times
    hits = [m for m in _messages(caplog) if "synth_00001.png" in m]
    assert len(hits) == 1 and "colour channels differ" in hits[0] and "1 file(s) skipped" in hits[0]
    # Index 1 is replaced by index 2, so sample 2 appears twice in each full-epoch batch.
    for batch in batches:
        keys = [a.tobytes() for a in batch["alpha"]]
        assert len(set(keys)) == 3


def test_empty_or_unusable_datasets_stop_at_start_up(tmp_path):
    (tmp_path / "empty" / "fg").mkdir(parents=True)
    (tmp_path / "empty" / "alpha").mkdir()
    with pytest.raises(DatasetError, match=r"no image files in .*fg"):
        validate_dataset(dict(layout="fg_alpha", root=str(tmp_path / "empty")))
    with pytest.raises(DatasetError, match=r"needs subfolders fg/ \+ alpha/ or fgr/ \+ pha/; it has \['fg'\]"):
        os.rmdir(tmp_path / "empty" / "alpha")
        validate_dataset(dict(layout="fg_alpha", root=str(tmp_path / "empty")))
    with pytest.raises(DatasetError, match="does not exist"):
        validate_dataset(dict(layout="ppm100", root=str(tmp_path / "nowhere")))
    with pytest.raises(DatasetError, match="no folder configured"):
        validate_dataset(dict(layout="am2k"))

    # Every pair broken at the header scan: no usable samples.
    root = _dataset(tmp_path, count=2)
    for name in os.listdir(root / "alpha"):
        (root / "alpha" / name).write_bytes(b"broken")
    with pytest.raises(DatasetError, match=r"no usable samples \(2 file\(s\) were skipped"):
        validate_dataset(dict(layout="fg_alpha", root=str(root), val_fraction=0.0))

    # Every matte broken in a way only decoding finds: the start-up probe stops it.
    root = _dataset(tmp_path / "b", count=2)
    for name in os.listdir(root / "alpha"):
        cv2.imwrite(str(root / "alpha" / name), np.dstack([np.zeros((40, 40), np.uint8)] * 2
                                                          + [np.full((40, 40), 255, np.uint8)]))
    with pytest.raises(DatasetError, match="cannot be read .*looks unusable"):
        make_train_iterator(dict(layout="fg_alpha", root=str(root), val_fraction=0.0),
                            batch_size=1, seed=0, image_size=SIZE)


def test_bad_backgrounds_and_videos_are_skipped(tmp_path, caplog):
    root = _dataset(tmp_path, count=2)
    whole = (root / "bg" / "synth_00000.jpg").read_bytes()
    (root / "bg" / "broken.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "bg" / "clip.mp4").write_bytes(b"not a video")
    cfg = dict(layout="fg_alpha", root=str(root), bg_root=str(root / "bg"), val_fraction=0.0)
    with caplog.at_level("WARNING", logger="modnet_jax.data"):
        summary = validate_dataset(cfg, image_size=SIZE)
        unlabelled = validate_dataset(dict(layout="unlabelled", root=str(root / "bg")), split="unlabelled")
    assert summary.backgrounds.startswith("2 from")
    assert unlabelled.num_samples == 2
    messages = _messages(caplog)
    assert sum("broken.jpg" in m and "truncated JPEG" in m for m in messages) == 1
    assert sum("clip.mp4" in m and "video cannot be opened" in m for m in messages) == 1
    next(make_unlabelled_iterator(dict(layout="unlabelled", root=str(root / "bg")), batch_size=2, seed=0,
                                  image_size=SIZE))
    (root / "empty_bg").mkdir()
    with pytest.raises(DatasetError, match="no usable background images"):
        validate_dataset(dict(cfg, bg_root=str(root / "empty_bg")))
