"""Grain random-access data sources (`__len__` + `__getitem__`) and the folder scans behind them.

The scan happens once, at start-up, in the main process: it lists files, pairs them by stem,
and (with `verify_files`) reads each PNG/JPEG header and tail to drop truncated or corrupt
files and fg/alpha size mismatches before training starts. Every dropped file is reported
by name with its reason (report.py). Sources only hold lists of path strings, so they pickle
cheaply into Grain worker processes; decoding happens in `__getitem__`, which raises
`UnusableFile` for a file that turns out bad so the sample builder can substitute another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from modnet_jax.data import synthetic
from modnet_jax.imaging import decode
from modnet_jax.imaging import video
from modnet_jax.imaging.files import IMAGE_EXTENSIONS, JPEG_EXTENSIONS, VIDEO_EXTENSIONS
from modnet_jax.imaging.files import extension, list_files
from modnet_jax.imaging.layouts import first_present
from modnet_jax.data.report import DatasetError, UnusableFile, report_skip


@dataclass
class ScanResult:
    """What a folder scan found: usable entries, and (path, reason) for the rest."""

    entries: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append((str(path), reason))
        report_skip(path, reason)


def require_folder(path: str | None, what: str) -> str:
    if not path:
        raise DatasetError(f"{what}: no folder configured")
    if not os.path.isdir(path):
        raise DatasetError(f"{what}: folder {path} does not exist")
    return str(path)


def resolve_subdirs(root: str, candidates, layout: str) -> tuple[str, str]:
    """The first candidate (first, second) subfolder pair present under `root`."""
    root = require_folder(root, f"layout {layout!r}: data root")
    found = first_present(root, candidates)
    if found is not None:
        return found
    present = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    wanted = " or ".join(f"{a}/ + {b}/" for a, b in candidates)
    raise DatasetError(f"layout {layout!r}: {root} needs subfolders {wanted}; it has {present}")


def _probe(path: str, result: ScanResult):
    try:
        return True, decode.probe_header(path)
    except UnusableFile as err:
        result.skip(err.path, err.reason)
        return False, None


def scan_pairs(first_dir: str, second_dir: str, verify: bool, names=("image", "alpha")) -> ScanResult:
    """Pairs files of two folders by stem; reports missing partners and bad files."""
    firsts, seconds = list_files(first_dir), list_files(second_dir)
    result = ScanResult()
    for folder, files in ((first_dir, firsts), (second_dir, seconds)):
        if not files:
            raise DatasetError(f"no image files in {folder} (extensions {IMAGE_EXTENSIONS})")
    for stem, path in firsts.items():
        if stem not in seconds:
            result.skip(path, f"no {names[1]} file with stem {stem!r} in {second_dir}")
    for stem, path in seconds.items():
        if stem not in firsts:
            result.skip(path, f"no {names[0]} file with stem {stem!r} in {first_dir}")
    depth16 = 0
    for stem in (s for s in firsts if s in seconds):
        a_path, b_path = firsts[stem], seconds[stem]
        if verify:
            ok_a, head_a = _probe(a_path, result)
            ok_b, head_b = _probe(b_path, result)
            if not (ok_a and ok_b):
                continue
            if head_a and head_b and (head_a.width, head_a.height) != (head_b.width, head_b.height):
                result.skip(b_path, f"{names[1]} is {head_b.width}x{head_b.height} but its "
                            f"{names[0]} {a_path} is {head_a.width}x{head_a.height}")
                continue
            depth16 += bool(head_b and head_b.bit_depth == 16)
        result.entries.append((stem, a_path, b_path))
    if depth16:
        result.notes.append(f"{depth16} {names[1]} file(s) are 16-bit: scaled to 8-bit")
    return result


def scan_images(folder: str, verify: bool) -> ScanResult:
    """Image files of a flat or nested folder (backgrounds, unlabelled photos)."""
    result = ScanResult()
    for path in list_files(folder).values():
        if not verify or _probe(path, result)[0]:
            result.entries.append(path)
    return result


def scan_unlabelled(folder: str, verify: bool, frame_stride: int) -> ScanResult:
    """(path, frame) entries: frame -1 for still images, sampled frames for videos."""
    result = ScanResult()
    result.entries = [(path, -1) for path in scan_images(folder, verify).entries]
    stride = max(1, int(frame_stride))
    for path in list_files(folder, VIDEO_EXTENSIONS).values():
        frames = video.count_video_frames(path)
        if frames <= 0:
            result.skip(path, "video cannot be opened or reports no frames")
            continue
        result.entries.extend((path, frame) for frame in range(0, frames, stride))
    return result


class ForegroundAlphaSource:
    """fg + alpha pairs -> {"fg": uint8 [H, W, 3], "alpha": uint8 [H, W]}.

    `min_side` > 0: a JPEG colour file whose short side is at least twice (four, eight
    times) `min_side` is decoded at 1/2 (1/4, 1/8) size, and its matte is brought to the
    same size (reduced JPEG decoding, or a full decode and an area shrink for PNG). The
    sample logic only ever needs a crop of side short_side / max_zoom resized to the
    training size, so `min_side` = image_size * max_zoom loses nothing it would use.
    """

    keys = ("fg", "alpha")

    def __init__(self, pairs, min_side: int = 0):
        self.pairs = [(str(a), str(b)) for _, a, b in pairs]
        self.min_side = int(min_side)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        colour_path, alpha_path = self.pairs[index]
        reduce, colour_data, alpha_data = 1, None, None
        if self.min_side > 0 and extension(colour_path) in JPEG_EXTENSIONS:
            colour_data = decode.read_file(colour_path)
            head = decode.header_from_bytes(colour_path, colour_data)
            full_size = (head.height, head.width)
            reduce = decode.reduction_for(*full_size, self.min_side)
            if reduce > 1:
                alpha_data = decode.read_file(alpha_path)
                alpha_head = decode.header_from_bytes(alpha_path, alpha_data)
                if alpha_head is None or (alpha_head.height, alpha_head.width) != full_size:
                    reduce = 1  # matte size unknown before decoding, or a mismatch (raised below)
        if colour_data is None and extension(colour_path) in JPEG_EXTENSIONS:
            colour_data = decode.read_file(colour_path)
        colour = decode.decode_rgb(colour_path, reduce, colour_data)  # upright (EXIF)
        alpha = decode.decode_alpha(alpha_path, reduce, alpha_data,
                                    decode.file_orientation(colour_path, colour_data))
        if colour.shape[:2] != alpha.shape:
            # Formats without a probed header only show a size mismatch here.
            raise UnusableFile(alpha_path, f"matte is {alpha.shape[1]}x{alpha.shape[0]} but "
                               f"{colour_path} is {colour.shape[1]}x{colour.shape[0]}")
        return {self.keys[0]: colour, "alpha": alpha}


class ImageMatteSource(ForegroundAlphaSource):
    """image + matte pairs -> {"image": uint8 [H, W, 3], "alpha": uint8 [H, W]}."""

    keys = ("image", "alpha")


class SyntheticSource:
    """Procedural portraits with indices offset..offset+length-1 of the synthetic stream."""

    keys = ("fg", "alpha")

    def __init__(self, length: int, seed: int, resolution: int, offset: int = 0):
        self.length, self.seed, self.resolution, self.offset = length, seed, resolution, offset

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        sample = synthetic.generate_portrait(self.seed, self.offset + int(index), self.resolution)
        return {"fg": sample["fg"], "alpha": sample["alpha"]}


class BackgroundSource:
    """Background images -> uint8 [H, W, 3], decoded at reduced size when large enough.

    A background is cropped like a foreground (side short_side / zoom, resized to the
    training size), so a JPEG whose short side is still at least `min_side`
    (= image_size * max_zoom) when halved (or quartered, ...) is decoded at that reduced
    size, which saves work and loses nothing the crop would use.
    """

    def __init__(self, paths, min_side: int = 0):
        self.paths, self.min_side = [str(p) for p in paths], int(min_side)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return _decode_at_least(self.paths[index], self.min_side)


def _decode_at_least(path: str, min_side: int) -> np.ndarray:
    """RGB image, JPEGs decoded at the smallest 1/2^k size with short side >= min_side."""
    if min_side <= 0 or extension(path) not in JPEG_EXTENSIONS:
        return decode.decode_rgb(path)
    data = decode.read_file(path)
    head = decode.header_from_bytes(path, data)
    return decode.decode_rgb(path, decode.reduction_for(head.height, head.width, min_side), data)


class ProceduralBackgrounds:
    """Synthetic backgrounds (used when no bg_root is configured)."""

    def __init__(self, length: int, seed: int, resolution: int):
        self.length, self.seed, self.resolution = length, seed, resolution

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        return synthetic.generate_background(self.seed, int(index), self.resolution)


class UnlabelledSource:
    """Still images and video frames -> {"image": uint8 [H, W, 3]}."""

    keys = ("image",)

    def __init__(self, entries, min_side: int = 0):
        self.entries = [(str(p), int(f)) for p, f in entries]
        self.min_side = int(min_side)  # reduced JPEG decoding, as for BackgroundSource
        self._frames = video.VideoFrameReader()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        path, frame = self.entries[index]
        if frame < 0:
            return {"image": _decode_at_least(path, self.min_side)}
        return {"image": self._frames.read(path, frame)}
