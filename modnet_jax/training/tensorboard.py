"""TensorBoard event files without TensorFlow: scalars and PNG images.

An event file is a TFRecord stream of ``Event`` protocol buffers. Both layers are tiny, so we
encode them by hand instead of depending on TensorFlow (or protobuf-generated classes):

* TFRecord: ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``
* Event {1: wall_time double, 2: step int64, 3: file_version string, 5: summary}
  Summary {1: repeated Value}; Value {1: tag string, 2: simple_value float, 4: image}
  Image {1: height, 2: width, 3: colorspace, 4: encoded PNG bytes}
"""

from __future__ import annotations

import os
import socket
import struct
import time

import cv2
import numpy as np


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 as two's complement, like protobuf
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _event(step: int, summary: bytes = b"", file_version: str = "") -> bytes:
    msg = _key(1, 1) + struct.pack("<d", time.time()) + _key(2, 0) + _varint(int(step))
    if file_version:
        msg += _bytes_field(3, file_version.encode())
    if summary:
        msg += _bytes_field(5, summary)
    return msg


def _scalar_value(tag: str, value: float) -> bytes:
    return _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(value))


def _image_value(tag: str, image: np.ndarray) -> bytes:
    """image: uint8 [H, W] or [H, W, 3] RGB."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[..., ::-1]  # OpenCV writes BGR
    ok, png = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ValueError(f"could not encode image {tag!r} of shape {image.shape}")
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    img = (_key(1, 0) + _varint(h) + _key(2, 0) + _varint(w) + _key(3, 0) + _varint(channels)
           + _bytes_field(4, png.tobytes()))
    return _bytes_field(1, tag.encode()) + _bytes_field(4, img)


class EventWriter:
    """Appends scalars and images to ``<logdir>/events.out.tfevents.<time>.<host>``."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "ab")
        self._write(_event(0, file_version="brain.Event:2"))

    def _write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + record
                         + struct.pack("<I", masked_crc32c(record)))

    def scalars(self, step: int, values: dict) -> None:
        summary = b"".join(_bytes_field(1, _scalar_value(k, v)) for k, v in values.items())
        self._write(_event(step, summary))

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        self._write(_event(step, _bytes_field(1, _image_value(tag, image))))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
