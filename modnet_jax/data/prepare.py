"""Write a resized copy of a dataset, in the same layout, for faster training input.

    python -m modnet_jax.data.prepare --layout adobe --root /data/adobe/train \\
        --output /data/adobe_768/train
    python -m modnet_jax.data.prepare --layout images --root /data/bg20k/train \\
        --output /data/bg20k_768/train          # backgrounds (any image folder)

Decoding a 1080p photo and its matte costs several times more CPU than everything else that
goes into a 512x512 sample, and training crops (side = short side / s, s in scale_range)
are resized to image_size anyway. A copy whose short side is image_size * max(scale_range)
(the default, 1.5 x 512 = 768) keeps every pixel the largest zoom needs and, from 1080p
originals, decodes about three times as fast (benchmarks/RESULTS.md); samples drawn from it
differ from the original's by resampling noise only (the crop logic works in relative
coordinates, tests/test_data_prepare.py).

What is written, under --output, mirroring the names under --root:

* labelled layouts (adobe, d646, rvm, fg_alpha, ppm100, p3m10k, am2k, image_matte): the
  layout's two subfolders (e.g. fg/ + alpha/), each pair found as the pipeline finds it
  (by stem, corrupt or unpaired files skipped and reported);
* --layout images: every image file under --root, at any depth (backgrounds, SOC photos).

Colour images whose short side exceeds --max-short-side are resized (area filter, aspect
kept) and written as JPEG (quality 95) with the same stem; smaller ones are copied byte for
byte, except JPEGs with an EXIF orientation tag, which (like every resized image) are
written upright, with the matte turned the same way (the pipeline's EXIF rule). Mattes are
always written as 8-bit grey PNG, converted exactly as the pipeline reads them (16-bit,
RGBA, ...), with fast settings (zlib level 1, no row filter: several times faster to decode
than a default PNG), resized to their image's new size. Files already
present in --output are kept (so an interrupted run resumes) unless --overwrite is given;
each file is written to a temporary name and renamed, so a killed run leaves no half file.

`--format raw` writes every image and matte (resized or not) as an uncompressed uint8 .npy
array instead (RGB [H, W, 3], matte [H, W]; same stems). The pipeline memory-maps those
rather than decoding them, so reading one costs only the page copies of the rows a crop
touches: decode-free input, for ~10x the disk space of the JPEGs (768 x 1365: 3.1 MiB an
image, 1 MiB a matte; BG-20k at short side 768 is ~60 GiB). Worth it for backgrounds (many,
each used once an epoch); for a foreground set that fits in memory, `data.sample_cache_mb`
removes decoding without the disk space.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from modnet_jax.cliutil import EXIT_SKIPPED, EXIT_USAGE, command_parser, dashed
from modnet_jax.imaging.layouts import LAYOUTS

FORMATS = ("encoded", "raw", "arrayrecord")
DEFAULT_MAX_SHORT_SIDE = 768  # 1.5 x 512: image_size 512 at the default scale_range (1, 1.5)
LABELLED = tuple(name for name, spec in LAYOUTS.items() if spec.kind in ("fg_alpha", "image_matte"))

HELP = """A resized copy of a dataset for faster training input: the same layout (JPEG + PNG, or
.npy arrays with --format raw), or one ArrayRecord file (--format arrayrecord, read with
--config.data.layout=prepared).

  python -m modnet_jax.data.prepare --format arrayrecord --layout adobe \\
      --root /data/adobe/train --output /data/adobe_prepared
  python -m modnet_jax.data.prepare --layout images --root /data/bg20k/train \\
      --output /data/bg20k_768/train          # backgrounds (any image folder)

Images are written upright, short side at most --max-short-side; files already in --output are
kept (an interrupted run resumes). Exit status: 0 all written, 1 some inputs skipped (each
named), 2 could not start. More: docs/data.md."""


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("modnet_jax.data.prepare", HELP,
                            usage="--layout LAYOUT --root DIR --output DIR [options]")
    g = parser.add_argument_group("dataset")
    g.add_argument("--layout", required=True, choices=LABELLED + ("images",), metavar="LAYOUT",
                   help="layout of --root (as data.layout: " + ", ".join(LABELLED) +
                        "), or 'images' for a plain folder of images (backgrounds)")
    g.add_argument("--root", required=True, metavar="DIR", help="the dataset folder to read")
    g.add_argument("--subdirs", nargs=2, metavar=("FIRST", "SECOND"),
                   help="subfolder pair, overriding the layout's (as data.subdirs)")
    o = parser.add_argument_group("output")
    o.add_argument("--output", required=True, metavar="DIR",
                   help="folder to write the copy to (created; not inside --root)")
    o.add_argument("--format", choices=FORMATS, default="encoded",
                   help="encoded: JPEG + PNG; raw: .npy arrays, memory-mapped (~10x the disk); "
                        "arrayrecord: one file, checked after writing")
    o.add_argument("--max-short-side", type=int, default=DEFAULT_MAX_SHORT_SIDE, metavar="PX",
                   help="resize larger images to this short side (use image_size x "
                        "max(scale_range): 1.5 x 512)")
    o.add_argument("--overwrite", action="store_true",
                   help="rewrite files already in --output (default: keep them)")
    r = parser.add_argument_group("run")
    r.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="worker processes (default: one per CPU core)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


if __name__ == "__main__":  # --help, --version, usage mistakes: answered before heavy imports
    build_parser().parse_args(dashed(sys.argv[1:]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from modnet_jax.data import sources  # noqa: E402
from modnet_jax.data.config import layout_spec  # noqa: E402
from modnet_jax.data.report import DatasetError, UnusableFile  # noqa: E402
from modnet_jax.imaging import decode, output  # noqa: E402
from modnet_jax.imaging.files import RAW_EXTENSION, extension  # noqa: E402
from modnet_jax.progress import Progress  # noqa: E402

JPEG_QUALITY = 95
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11: skip the row filters
    PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


@dataclass
class Report:
    """What a run did; `skipped` holds (path, reason) for every input not written."""

    resized: int = 0
    copied: int = 0
    present: int = 0
    skipped: list = field(default_factory=list)
    scan_skipped: int = 0  # the first entries of `skipped`, already logged by the folder scan
    bytes_in: int = 0
    bytes_out: int = 0

    def add(self, outcome: tuple) -> None:
        kind, value = outcome
        if kind == "skipped":
            self.skipped.append(value)
        else:
            setattr(self, kind, getattr(self, kind) + 1)
            self.bytes_in += value[0]
            self.bytes_out += value[1]

    @property
    def written(self) -> int:
        return self.resized + self.copied

    def summary(self, unit: str) -> str:
        text = (f"{self.written + self.present} {unit}(s) in the copy: {self.resized} resized, "
                f"{self.copied} copied unchanged (already small enough), {self.present} already "
                f"present; {len(self.skipped)} input file(s) skipped")
        if self.bytes_in:
            text += (f"; this run read {self.bytes_in / 2**20:.1f} MiB and wrote "
                     f"{self.bytes_out / 2**20:.1f} MiB")
        return text


def target_size(height: int, width: int, max_short_side: int) -> tuple[int, int] | None:
    """(rows, columns) with the short side = max_short_side, aspect kept; None if already
    no larger."""
    short = min(height, width)
    if short <= max_short_side:
        return None
    scale = max_short_side / short
    rows = max_short_side if height == short else max(1, int(round(height * scale)))
    cols = max_short_side if width == short else max(1, int(round(width * scale)))
    return rows, cols


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _write_atomic(path: str, payload: bytes) -> int:
    output.make_folders(os.path.dirname(path))
    output.atomic_write(path, payload)  # an OSError (WriteError) naming path; no temp left
    return len(payload)


def _copy_atomic(source: str, path: str) -> int:
    output.make_folders(os.path.dirname(path))
    output.atomic_copy(source, path)
    return os.path.getsize(path)


def _encode(path: str, image: np.ndarray, ext: str, params: list) -> bytes:
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise UnusableFile(path, f"OpenCV cannot encode it as {ext}")
    return encoded.tobytes()


def _raw_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(image), allow_pickle=False)
    return buffer.getvalue()


def _colour_output(src: str, out_stem: str, size, fmt: str = "encoded") -> str:
    if fmt == "raw":
        return out_stem + RAW_EXTENSION
    return out_stem + (".jpg" if size is not None else extension(src))


def _write_colour(src: str, dst: str, size, fmt: str = "encoded") -> int:
    """Writes the colour image `src` to `dst`: upright (EXIF orientation applied), resized to
    `size` (when not None) as JPEG or raw RGB array; an encoded file that needs no resizing
    or turning is copied."""
    if size is None and fmt != "raw" and decode.file_orientation(src) == 1:
        return _copy_atomic(src, dst)
    rgb = decode.decode_rgb(src)
    if size is not None:
        rgb = _resize(rgb, size)
    if fmt == "raw":
        return _write_atomic(dst, _raw_bytes(rgb))
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return _write_atomic(dst, _encode(src, bgr, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]))


def _write_matte(src: str, dst: str, size, expected: tuple[int, int] | None,
                 fmt: str = "encoded", orientation: int = 1) -> int:
    """Writes the matte `src`, turned like its photo (`orientation`), as 8-bit PNG or raw."""
    alpha = decode.decode_alpha(src, orientation=orientation)
    if expected is not None and alpha.shape != expected:
        raise UnusableFile(src, f"matte is {alpha.shape[1]}x{alpha.shape[0]} but its image is "
                           f"{expected[1]}x{expected[0]}")
    if size is not None:
        alpha = _resize(alpha, size)
    if fmt == "raw":
        return _write_atomic(dst, _raw_bytes(alpha))
    return _write_atomic(dst, _encode(src, alpha, ".png", PNG_PARAMS))


def _colour_size(path: str) -> tuple[int, int]:
    """(rows, cols) of a colour image, upright, from its header (decoding only formats
    without one)."""
    head = decode.probe_header(path)
    if head is not None:
        return decode.upright_hw(head.height, head.width, decode.file_orientation(path))
    return decode.decode_rgb(path).shape[:2]


def prepare_pair(task: tuple) -> tuple:
    """One (colour, matte) pair -> ("resized" | "copied" | "present", (in, out bytes)) or
    ("skipped", (path, reason))."""
    colour, matte, colour_stem, matte_stem, max_side, overwrite, fmt = task
    try:
        rows, cols = _colour_size(colour)
        size = target_size(rows, cols, max_side)
        colour_dst = _colour_output(colour, colour_stem, size, fmt)
        matte_dst = matte_stem + (RAW_EXTENSION if fmt == "raw" else ".png")
        if not overwrite and os.path.exists(colour_dst) and os.path.exists(matte_dst):
            return "present", (0, 0)
        written = _write_matte(matte, matte_dst, size, (rows, cols), fmt,
                               decode.file_orientation(colour))
        written += _write_colour(colour, colour_dst, size, fmt)
        read = os.path.getsize(colour) + os.path.getsize(matte)
        return ("resized" if size is not None else "copied"), (read, written)
    except UnusableFile as err:
        return "skipped", (err.path, err.reason)
    except (OSError, cv2.error) as err:
        return "skipped", (colour, f"{type(err).__name__}: {err}")


def prepare_image(task: tuple) -> tuple:
    """One colour image (background, photo): as prepare_pair."""
    colour, colour_stem, max_side, overwrite, fmt = task
    try:
        rows, cols = _colour_size(colour)
        size = target_size(rows, cols, max_side)
        colour_dst = _colour_output(colour, colour_stem, size, fmt)
        if not overwrite and os.path.exists(colour_dst):
            return "present", (0, 0)
        written = _write_colour(colour, colour_dst, size, fmt)
        return ("resized" if size is not None else "copied"), (os.path.getsize(colour), written)
    except UnusableFile as err:
        return "skipped", (err.path, err.reason)
    except (OSError, cv2.error) as err:
        return "skipped", (colour, f"{type(err).__name__}: {err}")


def _stem_path(root: str, folder: str, path: str) -> str:
    """`path` (under `folder`) re-rooted under `root`, without its extension."""
    return os.path.join(root, os.path.splitext(os.path.relpath(path, folder))[0])


def _tasks(layout: str, root: str, output: str, max_side: int, overwrite: bool, subdirs,
           fmt: str = "encoded"):
    """(worker function, tasks, unit, files skipped by the scan) for one layout."""
    if layout == "images":
        folder = sources.require_folder(root, "--root")
        scan = sources.scan_images(folder, True)
        tasks = [(p, _stem_path(output, folder, p), max_side, overwrite, fmt)
                 for p in scan.entries]
        return prepare_image, tasks, "image", scan.skipped
    spec = layout_spec(layout)
    first, second = sources.resolve_subdirs(root, (tuple(subdirs),) if subdirs else spec.subdirs,
                                            layout)
    names = ("fg", "alpha") if spec.kind == "fg_alpha" else ("image", "matte")
    scan = sources.scan_pairs(first, second, True, names)
    out_first = os.path.join(output, os.path.basename(first))
    out_second = os.path.join(output, os.path.basename(second))
    tasks = [(a, b, _stem_path(out_first, first, a), _stem_path(out_second, second, b),
              max_side, overwrite, fmt) for _, a, b in scan.entries]
    return prepare_pair, tasks, "pair", scan.skipped


def prepare(layout: str, root: str, output: str, max_short_side: int = DEFAULT_MAX_SHORT_SIDE,
            jobs: int = 0, overwrite: bool = False, subdirs=None, progress=None,
            fmt: str = "encoded") -> tuple:
    """Writes the resized copy; returns (Report, unit). `jobs` <= 0: one per CPU core;
    `progress(done, total)` is called after each input; `fmt`: "encoded" (JPEG + PNG), "raw"
    (.npy arrays) or "arrayrecord" (one ArrayRecord file: data/records.py)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    if max_short_side < 1:
        raise ValueError(f"--max-short-side must be >= 1, got {max_short_side}")
    if os.path.realpath(output) == os.path.realpath(root) or \
            os.path.realpath(output).startswith(os.path.realpath(root) + os.sep):
        raise ValueError(f"--output {output} must not be --root or inside it")
    kind = None
    if fmt == "arrayrecord":
        from modnet_jax.data import prepare_records

        worker, tasks, unit, kind, skipped = prepare_records.tasks(layout, root,
                                                                    int(max_short_side), subdirs)
    else:
        worker, tasks, unit, skipped = _tasks(layout, root, output, int(max_short_side),
                                              overwrite, subdirs, fmt)
    report = Report(skipped=list(skipped), scan_skipped=len(skipped))
    if not tasks:
        raise DatasetError(f"{root}: nothing usable to prepare for layout {layout!r} "
                           f"({len(skipped)} file(s) skipped)")
    jobs = jobs if jobs > 0 else (os.cpu_count() or 1)
    if jobs == 1:
        outcomes = map(worker, tasks)
    else:
        # Spawned, not forked: a fork of a process whose OpenCV thread pool has run can hang.
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=cv2.setNumThreads, initargs=(1,))
        outcomes = pool.map(worker, tasks, chunksize=max(1, min(16, len(tasks) // (4 * jobs))))
    try:
        if kind is not None:
            prepare_records.write(outcomes, report, output, kind, int(max_short_side), overwrite,
                                  progress, len(tasks))
        else:
            for done, outcome in enumerate(outcomes, 1):
                report.add(outcome)
                if progress is not None:
                    progress(done, len(tasks))
    finally:
        if jobs != 1:
            pool.shutdown(cancel_futures=True)
    return report, unit


def main(argv=None) -> int:
    """Exit status (``modnet_jax.cliutil``): 0 every input written or present, 1 some skipped,
    2 nothing could be done (bad options, missing or unusable dataset)."""
    args = build_parser().parse_args(dashed(argv))
    start = time.perf_counter()
    bar = []

    def progress(done, total):
        if not bar:
            bar.append(Progress(total, desc=os.path.basename(os.path.normpath(args.output)),
                                unit="inputs", enabled=not args.quiet))
        bar[0].update(done - bar[0].count)

    try:
        report, unit = prepare(args.layout, args.root, args.output, args.max_short_side,
                               args.jobs, args.overwrite, args.subdirs, progress, args.format)
    except (DatasetError, ValueError, OSError) as err:  # OSError: WriteError, with its path
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if bar:
            bar[0].close()
    for path, reason in report.skipped[report.scan_skipped:]:
        print(f"skipped {path}: {reason}")
    if report.scan_skipped:
        print(f"({report.scan_skipped} file(s) skipped by the folder scan: see the warnings above)")
    print(f"{args.output}: {report.summary(unit)} "
          f"(max short side {args.max_short_side}, {time.perf_counter() - start:.1f}s)")
    if report.skipped:
        paths = [path for path, _ in report.skipped]
        print(f"error: skipped {len(paths)} input file(s): " + ", ".join(paths[:10])
              + (f", ... {len(paths) - 10} more" if len(paths) > 10 else ""), file=sys.stderr)
        return EXIT_SKIPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
