"""File reading: header probes, truncation checks, and the matte conversion policy."""

import cv2
import numpy as np
import pytest

from modnet_jax.data import UnusableFile
from modnet_jax.imaging import decode as images
from modnet_jax.imaging import video
from modnet_jax.data.report import clear_reports


@pytest.fixture(autouse=True)
def _fresh_reports():
    clear_reports()
    yield
    clear_reports()


def _write(path, array, params=()):
    assert cv2.imwrite(str(path), array, list(params))
    return str(path)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_probe_header_matches_decoded_size(tmp_path, ext):
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = _write(tmp_path / f"a{ext}", rgb)
    head = images.probe_header(path)
    assert (head.width, head.height, head.channels, head.bit_depth) == (53, 37, 3, 8)
    assert images.decode_rgb(path).shape == (37, 53, 3)
    grey = _write(tmp_path / f"g{ext}", rgb[:, :, 0])
    assert images.probe_header(grey).channels == 1


def test_probe_header_finds_jpeg_frame_after_a_large_metadata_segment(tmp_path):
    ok, data = cv2.imencode(".jpg", np.zeros((20, 30, 3), np.uint8))
    data = data.tobytes()
    app15 = b"\xff\xef" + (60002).to_bytes(2, "big") + b"\x00" * 60000  # 60 kB comment-like segment
    path = tmp_path / "meta.jpg"
    path.write_bytes(data[:2] + app15 + data[2:])
    assert (images.probe_header(str(path)).width, images.probe_header(str(path)).height) == (30, 20)


def test_decode_rgb_returns_rgb_order(tmp_path):
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    rgb = images.decode_rgb(_write(tmp_path / "red.png", bgr))
    assert rgb[0, 0].tolist() == [200, 0, 0]


def test_truncated_jpeg_and_png_are_detected(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for ext in (".jpg", ".png"):
        full = _write(tmp_path / f"full{ext}", rgb)
        data = open(full, "rb").read()
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(UnusableFile, match="truncated"):
            images.probe_header(str(cut))
        with pytest.raises(UnusableFile, match="truncated"):
            images.decode_rgb(str(cut))
    # Zero padding after the end marker is tolerated.
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(open(tmp_path / "full.jpg", "rb").read() + b"\x00" * 10)
    assert images.decode_rgb(str(padded)).shape == (64, 64, 3)


def test_garbage_and_empty_files_are_unusable(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(UnusableFile, match="truncated PNG|not a PNG"):
        images.probe_header(str(garbage))
    bmp = tmp_path / "garbage.bmp"  # no header probe for BMP: found at decode time
    bmp.write_bytes(b"BM" + b"\x01" * 100)
    assert images.probe_header(str(bmp)) is None
    with pytest.raises(UnusableFile, match="cannot decode|header claims"):
        images.decode_rgb(str(bmp))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(UnusableFile, match="empty file"):
        images.decode_alpha(str(empty))


def test_alpha_16bit_is_scaled(tmp_path, caplog):
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    path = _write(tmp_path / "a16.png", values)
    assert images.probe_header(path).bit_depth == 16
    with caplog.at_level("WARNING", logger="modnet_jax.data"):
        alpha = images.decode_alpha(path)
        images.decode_alpha(path)
    # round(v * 255 / 65535): 257 -> 1, 32768 -> 127.5 rounds up to 128
    np.testing.assert_array_equal(alpha, [[0, 1, 128, 255]])
    assert alpha.dtype == np.uint8
    assert sum("16-bit" in r.getMessage() for r in caplog.records) == 1  # reported once


def test_alpha_rgba_uses_its_alpha_channel(tmp_path):
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., :3] = 255
    bgra[..., 3] = [[0, 100, 255], [255, 7, 0]]
    alpha = images.decode_alpha(_write(tmp_path / "rgba.png", bgra))
    np.testing.assert_array_equal(alpha, bgra[..., 3])


def test_alpha_opaque_rgba_grey_is_read_as_grey(tmp_path):
    bgra = np.full((2, 2, 4), 255, np.uint8)
    bgra[..., :3] = np.array([[10, 20], [30, 40]], np.uint8)[..., None]
    np.testing.assert_array_equal(images.decode_alpha(_write(tmp_path / "g.png", bgra)),
                                  [[10, 20], [30, 40]])
    bgra[0, 0, :3] = [0, 0, 255]  # a red pixel: this is a picture, not a matte
    with pytest.raises(UnusableFile, match="colour channels differ"):
        images.decode_alpha(_write(tmp_path / "pic.png", bgra))


def test_alpha_three_channel_equal_is_converted_and_coloured_is_rejected(tmp_path):
    grey = np.array([[0, 90], [200, 255]], np.uint8)
    alpha = images.decode_alpha(_write(tmp_path / "rgb.png", np.repeat(grey[..., None], 3, 2)))
    np.testing.assert_array_equal(alpha, grey)
    coloured = np.zeros((2, 2, 3), np.uint8)
    coloured[..., 1] = 200
    with pytest.raises(UnusableFile, match="differ .by up to 200 levels"):
        images.decode_alpha(_write(tmp_path / "green.png", coloured))


def test_video_frames_are_read_by_index(tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for level in (0, 100, 200):
        writer.write(np.full((24, 32, 3), level, np.uint8))
    writer.release()
    assert video.count_video_frames(path) == 3
    reader = video.VideoFrameReader()
    means = [reader.read(path, i).mean() for i in (2, 0, 1)]
    assert means == pytest.approx([200, 0, 100], abs=3)
    with pytest.raises(UnusableFile, match="frame cannot be read"):
        reader.read(path, 10)
