"""`prepare --format arrayrecord`: writes a prepared dataset (data/records.py) and checks it.

Worker processes decode and resize (upright, short side <= --max-short-side, area filter, as
the other formats) and hand back each sample's strip records (records.encode); this process
writes them in the order of the folder scan to a temporary hidden name
(``imaging.output.atomic_path``; removed when the run fails), renames it when complete,
writes `shapes.npy` and `prepared.json`, then reads every record back (counts, strip sizes,
channels, short side) and removes `prepared.json` again if anything is wrong: training
accepts only a folder with all three files, so a killed or failed run leaves none it would
read.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from modnet_jax.data import records, sources
from modnet_jax.data.config import layout_spec
from modnet_jax.data.report import DatasetError, UnusableFile
from modnet_jax.imaging import decode
from modnet_jax.imaging import output as imaging_output


def _record(array) -> tuple:
    """("resized", (shape, strip records)) of a decoded, resized sample."""
    shape = array.shape[:2] + ((array.shape[2] if array.ndim == 3 else 1),)
    return "resized", (shape, records.encode(array))


def _resized(image, max_side: int):
    from modnet_jax.data.prepare import target_size

    size = target_size(image.shape[0], image.shape[1], max_side)
    if size is None:
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def pair_record(task: tuple) -> tuple:
    """(colour, matte, max side) -> ("resized", (shape, strip records)) or ("skipped",
    (path, reason))."""
    colour_path, matte_path, max_side = task
    try:
        colour = decode.decode_rgb(colour_path)  # upright (EXIF)
        alpha = decode.decode_alpha(matte_path, orientation=decode.file_orientation(colour_path))
        if alpha.shape != colour.shape[:2]:
            raise UnusableFile(matte_path, f"matte is {alpha.shape[1]}x{alpha.shape[0]} but its "
                               f"image is {colour.shape[1]}x{colour.shape[0]}")
        packed = cv2.merge([colour, alpha])
        return _record(_resized(packed, max_side))
    except UnusableFile as err:
        return "skipped", (err.path, err.reason)
    except (OSError, cv2.error) as err:
        return "skipped", (colour_path, f"{type(err).__name__}: {err}")


def image_record(task: tuple) -> tuple:
    """(image, max side) -> as pair_record."""
    path, max_side = task
    try:
        return _record(_resized(decode.decode_rgb(path), max_side))
    except UnusableFile as err:
        return "skipped", (err.path, err.reason)
    except (OSError, cv2.error) as err:
        return "skipped", (path, f"{type(err).__name__}: {err}")


def tasks(layout: str, root: str, max_side: int, subdirs=None):
    """(worker, tasks, unit, kind, files skipped by the scan)."""
    if layout == "images":
        scan = sources.scan_images(sources.require_folder(root, "--root"), True)
        return image_record, [(p, max_side) for p in scan.entries], "image", "images", scan.skipped
    spec = layout_spec(layout)
    first, second = sources.resolve_subdirs(root, (tuple(subdirs),) if subdirs else spec.subdirs,
                                            layout)
    names = ("fg", "alpha") if spec.kind == "fg_alpha" else ("image", "matte")
    scan = sources.scan_pairs(first, second, True, names)
    work = [(a, b, max_side) for _, a, b in scan.entries]
    return pair_record, work, "pair", spec.kind, scan.skipped


def write(outcomes, report, output: str, kind: str, max_side: int, overwrite: bool,
          progress=None, total: int = 0) -> None:
    """Writes the records of `outcomes` (in order) to `output`, adds them to `report`,
    checks the file, then publishes it (rename + prepared.json). DatasetError if the check
    fails or the folder already holds a prepared dataset (without `overwrite`)."""
    from array_record.python.array_record_module import ArrayRecordWriter

    final = os.path.join(output, records.RECORDS)
    if os.path.exists(final) and not overwrite:
        raise DatasetError(f"{final} exists; pass --overwrite to replace it")
    imaging_output.make_folders(output)
    shapes = []
    with imaging_output.atomic_path(final) as partial:  # renamed once complete, else removed
        writer = ArrayRecordWriter(partial, records.WRITER_OPTIONS)
        try:
            for done, (status, value) in enumerate(outcomes, 1):
                if status == "skipped":
                    report.add((status, value))
                else:
                    shape, strips = value
                    for strip in strips:
                        writer.write(strip)
                    shapes.append(shape)
                    report.add((status, (0, sum(len(strip) for strip in strips))))
                if progress is not None:
                    progress(done, total)
        finally:
            writer.close()
        meta_path = os.path.join(output, records.META)
        if os.path.exists(meta_path):
            os.remove(meta_path)
    written = len(shapes)
    with imaging_output.atomic_path(os.path.join(output, records.SHAPES)) as partial:
        with open(partial, "wb") as handle:
            np.save(handle, np.asarray(shapes, np.int32).reshape(-1, 3))
    meta = {"kind": kind, "count": written, "max_short_side": int(max_side),
            "format": records.FORMAT, "strip": records.STRIP}
    imaging_output.write_text(meta_path, json.dumps(meta, indent=1))
    problems = records.check(output, written, max_side)
    if problems:
        os.remove(meta_path)  # not a usable prepared dataset
        raise DatasetError(f"{final}: check failed: " + "; ".join(problems[:5]))
