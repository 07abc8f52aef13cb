"""The shared imaging package: one layout registry, one extension list, one trimap rule for
uint8 and float mattes, float matte reading at the file's precision, float compositing."""

import cv2
import numpy as np
import pytest

from modnet_jax.data import resolve_config
from modnet_jax.imaging import compositing, decode, files, layouts, trimap


def test_p3m_is_an_alias_of_p3m10k_everywhere():
    assert layouts.canonical_layout("p3m") == "p3m10k"
    assert layouts.layout_spec("p3m") is layouts.LAYOUTS["p3m10k"]
    cfg = resolve_config({"layout": "p3m", "val_layout": "p3m"})
    assert (cfg.layout, cfg.val_layout) == ("p3m10k", "p3m10k")
    with pytest.raises(ValueError, match=r"unknown data layout 'p3m500'.*ppm100.*p3m=p3m10k"):
        layouts.canonical_layout("p3m500")
    assert set(layouts.IMAGE_MATTE_LAYOUTS) == {"image_matte", "ppm100", "p3m10k", "am2k"}


def test_one_extension_list(tmp_path):
    for ext in (".jpg", ".PNG", ".ppm", ".pgm", ".npy", ".tiff"):
        assert files.is_image_path(f"a{ext}"), ext
    for ext in (".mp4", ".wmv", ".MKV"):
        assert files.is_video_path(f"a{ext}") and not files.is_image_path(f"a{ext}"), ext
    assert not files.is_image_path("notes.txt")
    cv2.imwrite(str(tmp_path / "b.ppm"), np.zeros((2, 2, 3), np.uint8))
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "sub" / "a.pgm"), np.zeros((2, 2), np.uint8))
    (tmp_path / ".hidden.png").write_bytes(b"")
    assert list(files.list_files(str(tmp_path))) == ["b", "sub/a"]
    assert list(files.list_files(str(tmp_path), recursive=False)) == ["b"]


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_float_trimap_equals_the_uint8_trimap(radius):
    # Invariant: on 8-bit mattes the float path (used by evaluation) and the uint8 path (used
    # by training) give the same trimap, with the same 0.9 foreground threshold.
    rng = np.random.default_rng(radius)
    alpha = cv2.GaussianBlur(rng.integers(0, 2, (24, 31)).astype(np.uint8) * 255, (5, 5), 0)
    alpha[0, :4] = [229, 230, 254, 255]  # straddle ceil(0.9 * 255) = 230
    want = trimap.make_trimap(alpha, radius) / 255.0
    want[want == 128 / 255.0] = 0.5
    np.testing.assert_array_equal(trimap.trimap_from_float(alpha / 255.0, radius), want)
    assert trimap.FG_THRESHOLD == 0.9


def test_float_trimap_threshold_by_hand():
    a = np.array([[0.0, 0.05, 0.89, 0.9, 1.0]])
    np.testing.assert_array_equal(trimap.trimap_from_float(a, 0), [[0.0, 0.5, 0.5, 1.0, 1.0]])


def test_alpha_float_keeps_16_bit_precision(tmp_path):
    values = np.array([[0, 1, 257, 32768, 65535]], np.uint16)
    path = str(tmp_path / "a16.png")
    assert cv2.imwrite(path, values)
    got = decode.decode_alpha_native(path)
    np.testing.assert_array_equal(got, values / 65535.0)
    assert decode.decode_alpha_native(path, keep_uint8=True).dtype == np.float64  # 16-bit
    # The 8-bit reader rounds the same values to 0..255.
    np.testing.assert_array_equal(decode.decode_alpha(path), [[0, 0, 1, 128, 255]])


def test_alpha_float_uses_the_rgba_alpha_channel(tmp_path):
    bgra = np.zeros((1, 3, 4), np.uint8)
    bgra[..., 2] = 200  # red colour channel: not the matte
    bgra[..., 3] = [0, 51, 255]
    path = str(tmp_path / "cutout.png")
    assert cv2.imwrite(path, bgra)
    np.testing.assert_allclose(decode.decode_alpha_native(path), [[0.0, 0.2, 1.0]])
    native = decode.decode_alpha_native(path, keep_uint8=True)
    np.testing.assert_array_equal(native, [[0, 51, 255]])


def test_composite_over_by_hand():
    image = np.full((1, 2, 3), 200, np.uint8)
    matte = np.array([[0.25, 1.0]])
    out = compositing.composite_over(image, matte, (0, 100, 255))
    # 200 * 0.25 + c * 0.75 for c in (0, 100, 255): 50, 125, 241.25 -> 241; opaque: 200.
    np.testing.assert_array_equal(out, [[[50, 125, 241], [200, 200, 200]]])
    bg = np.zeros((4, 4, 3), np.uint8)  # an image background is resized to fit
    assert compositing.composite_over(image, matte, bg)[0, 0].tolist() == [50, 50, 50]


def test_inference_readers_use_the_shared_policy(tmp_path):
    from modnet_jax.inference.images import InputError, read_image, read_matte

    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0] = 255  # blue: the first channel in OpenCV's order, not the matte
    bgra[..., 3] = [[0, 255], [51, 255]]
    assert cv2.imwrite(str(tmp_path / "cut.png"), bgra)
    np.testing.assert_allclose(read_matte(str(tmp_path / "cut.png")), [[0, 1], [0.2, 1]])
    ok, data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "cut.jpg").write_bytes(data.tobytes()[:-40])
    with pytest.raises(InputError, match=r"cut\.jpg: truncated JPEG"):
        read_image(str(tmp_path / "cut.jpg"))
    with pytest.raises(InputError, match="no such file"):
        read_image(str(tmp_path / "missing.png"))


def test_exif_orientation_is_applied_by_every_reader(tmp_path):
    from PIL import Image

    from modnet_jax.inference.images import read_image

    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[0, 0] = 255  # a white corner marks the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = str(tmp_path / "phone.jpg")
    Image.fromarray(rgb).save(path, quality=100, exif=exif)
    for shown in (decode.decode_rgb(path), read_image(path)):  # training and inference alike
        assert shown.shape == (6, 4, 3)  # as a viewer shows it
        assert shown[0, -1].min() > 200  # the stored top-left is now the top-right


def test_evaluate_accepts_p3m_and_p3m10k(tmp_path):
    from modnet_jax.evaluate import LAYOUTS, find_samples

    for folder in ("original_image", "mask", "trimap"):
        (tmp_path / folder).mkdir()
        for stem in ("a", "b"):
            cv2.imwrite(str(tmp_path / folder / f"{stem}.png"), np.zeros((4, 4), np.uint8))
    assert "p3m" in LAYOUTS and "p3m10k" in LAYOUTS
    old, new = find_samples(str(tmp_path), "p3m"), find_samples(str(tmp_path), "p3m10k")
    assert old == new and [s.name for s in new] == ["a", "b"]
    assert new[0].matte.endswith("mask/a.png") and new[0].trimap.endswith("trimap/a.png")
