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
    got = decode.decode_alpha_float(path)
    np.testing.assert_array_equal(got, values / 65535.0)
    # The 8-bit reader rounds the same values to 0..255.
    np.testing.assert_array_equal(decode.decode_alpha(path), [[0, 0, 1, 128, 255]])


def test_alpha_float_uses_the_rgba_alpha_channel(tmp_path):
    bgra = np.zeros((1, 3, 4), np.uint8)
    bgra[..., 2] = 200  # red colour channel: not the matte
    bgra[..., 3] = [0, 51, 255]
    path = str(tmp_path / "cutout.png")
    assert cv2.imwrite(path, bgra)
    np.testing.assert_allclose(decode.decode_alpha_float(path), [[0.0, 0.2, 1.0]])


def test_composite_over_by_hand():
    image = np.full((1, 2, 3), 200, np.uint8)
    matte = np.array([[0.25, 1.0]])
    out = compositing.composite_over(image, matte, (0, 100, 255))
    # 200 * 0.25 + c * 0.75 for c in (0, 100, 255): 50, 125, 241.25 -> 241; opaque: 200.
    np.testing.assert_array_equal(out, [[[50, 125, 241], [200, 200, 200]]])
    bg = np.zeros((4, 4, 3), np.uint8)  # an image background is resized to fit
    assert compositing.composite_over(image, matte, bg)[0, 0].tolist() == [50, 50, 50]
