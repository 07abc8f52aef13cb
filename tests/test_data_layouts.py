"""Every layout loads from a tiny folder written by the test."""

import os
import shutil

import cv2
import numpy as np
import pytest

from modnet_jax.data import (
    DatasetError,
    make_eval_iterator,
    make_train_iterator,
    make_unlabelled_iterator,
    validate_dataset,
    write_synthetic_folder,
)

SIZE = 32
COMPOSITED = {"image", "alpha", "trimap", "fg", "bg"}
AS_IS = {"image", "alpha", "trimap"}


def _fg_alpha(root, first="fg", second="alpha", nested=False, count=4):
    write_synthetic_folder(str(root), count, height=48, width=40, seed=2)
    for old, new in (("fg", first), ("alpha", second)):
        os.rename(root / old, root / f"{new}_tmp")
        target = root / new / "clip0" if nested else root / new
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / f"{new}_tmp", target)
    return root


def _image_matte(root, first, second, matte_ext=".png", count=4):
    write_synthetic_folder(str(root), count, height=48, width=40, seed=2, layout="image_matte")
    os.rename(root / "image", root / first)
    os.rename(root / "matte", root / second)
    if matte_ext != ".png":
        for name in os.listdir(root / second):
            path = root / second / name
            cv2.imwrite(str(path.with_suffix(matte_ext)), cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
            path.unlink()
    return root


def _check(batch, keys, count=2):
    assert set(batch) == keys
    for key, value in batch.items():
        assert value.dtype == np.uint8 and value.shape[:3] == (count, SIZE, SIZE)
    if "trimap" in batch:
        assert set(np.unique(batch["trimap"])) <= {0, 128, 255}


@pytest.mark.parametrize("layout,first,second,nested", [
    ("fg_alpha", "fg", "alpha", False),
    ("fg_alpha", "fgr", "pha", False),
    ("adobe", "fg", "alpha", False),
    ("d646", "fg", "alpha", False),
    ("rvm", "fgr", "pha", True),  # RVM keeps frames in per-clip subfolders
])
def test_fg_alpha_layouts(tmp_path, layout, first, second, nested):
    root = _fg_alpha(tmp_path / "data", first, second, nested)
    cfg = dict(layout=layout, root=str(root), bg_root=str(root / "bg"), val_fraction=0.5)
    summary = validate_dataset(cfg, image_size=SIZE)
    assert summary.num_samples == 2 and summary.backgrounds.startswith("4 from")
    _check(next(make_train_iterator(cfg, batch_size=2, seed=0, image_size=SIZE)), COMPOSITED)
    _check(next(make_eval_iterator(cfg, batch_size=2, image_size=SIZE)), COMPOSITED)


def test_fg_alpha_without_bg_root_uses_procedural_backgrounds(tmp_path):
    root = _fg_alpha(tmp_path / "data")
    cfg = dict(layout="fg_alpha", root=str(root), val_fraction=0.0)
    assert validate_dataset(cfg, image_size=SIZE).backgrounds == "procedural"
    _check(next(make_train_iterator(cfg, batch_size=2, seed=0, image_size=SIZE)), COMPOSITED)


@pytest.mark.parametrize("layout,first,second,matte_ext", [
    ("image_matte", "image", "matte", ".png"),
    ("ppm100", "image", "matte", ".jpg"),
    ("p3m10k", "blurred_image", "mask", ".png"),
    ("p3m10k", "original_image", "mask", ".png"),
    ("am2k", "original", "mask", ".png"),
])
def test_image_matte_layouts_as_is(tmp_path, layout, first, second, matte_ext):
    root = _image_matte(tmp_path / "data", first, second, matte_ext)
    cfg = dict(layout=layout, root=str(root), val_fraction=0.5)
    _check(next(make_train_iterator(cfg, batch_size=2, seed=0, image_size=SIZE)), AS_IS)
    batch = next(make_eval_iterator(cfg, batch_size=2, image_size=SIZE))
    _check(batch, AS_IS)
    # Evaluation shows the photo as it is: centre 40x40 square of the 40x48 file, area-resized.
    def centre(path, flags):
        image = cv2.imread(str(path), flags)[4:44]
        image = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)

    stems = [os.path.splitext(name)[0] for name in sorted(os.listdir(root / first))]
    matches = [s for s in stems
               if np.array_equal(centre(root / first / f"{s}.jpg", cv2.IMREAD_COLOR), batch["image"][0])]
    assert len(matches) == 1
    matte = centre(root / second / f"{matches[0]}{matte_ext}", cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(batch["alpha"][0, :, :, 0], matte)


def test_image_matte_recomposited(tmp_path):
    root = _image_matte(tmp_path / "data", "image", "matte")
    bg_root = tmp_path / "backgrounds" / "train"
    bg_root.mkdir(parents=True)
    cv2.imwrite(str(bg_root / "b.jpg"), np.full((60, 80, 3), (10, 200, 30), np.uint8))
    cfg = dict(layout="image_matte", root=str(root), recomposite=True, bg_root=str(tmp_path / "backgrounds"),
               val_fraction=0.0, augment=False)
    batch = next(make_train_iterator(cfg, batch_size=2, seed=0, image_size=SIZE))
    _check(batch, COMPOSITED)
    # The new background is the (only) green background image.
    assert np.all(np.abs(batch["bg"].astype(int) - [30, 200, 10]) <= 3)
    transparent = batch["alpha"][..., 0] == 0
    np.testing.assert_array_equal(batch["image"][transparent], batch["bg"][transparent])


def test_unlabelled_images_and_video_frames(tmp_path):
    root = tmp_path / "soc"
    (root / "photos").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(root / "photos" / f"p{i}.jpg"), np.full((40, 50, 3), 60 * i, np.uint8))
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    for level in range(10):
        writer.write(np.full((40, 48, 3), 20 * level, np.uint8))
    writer.release()
    cfg = dict(layout="unlabelled", root=str(root), video_frame_stride=5)
    summary = validate_dataset(cfg, image_size=SIZE, split="unlabelled")
    assert summary.num_samples == 3 + 2 and summary.keys == ("image",)  # frames 0 and 5
    batch = next(make_unlabelled_iterator(cfg, batch_size=5, seed=0, image_size=SIZE))
    _check(batch, {"image"}, count=5)
    levels = sorted(int(round(img.mean())) for img in batch["image"])
    assert levels == pytest.approx([0, 0, 60, 100, 120], abs=3)  # 3 photos + frames 0 and 5
    with pytest.raises(DatasetError, match="no mattes"):
        make_train_iterator(cfg, batch_size=2, seed=0, image_size=SIZE)


def test_unlabelled_root_beside_a_labelled_layout(tmp_path):
    root = _fg_alpha(tmp_path / "data")
    shutil.copytree(root / "bg", tmp_path / "frames")
    cfg = dict(layout="fg_alpha", root=str(root), unlabelled_root=str(tmp_path / "frames"))
    batch = next(make_unlabelled_iterator(cfg, batch_size=2, seed=0, image_size=SIZE))
    _check(batch, {"image"})
