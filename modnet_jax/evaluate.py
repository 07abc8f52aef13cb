"""Evaluate a checkpoint on a matting dataset: MSE, MAD, SAD, Gradient and Connectivity errors.

    python -m modnet_jax.evaluate --checkpoint CKPT --data ROOT [--layout ppm100]
        [--region image|unknown|both] [--band-radius 10] [--output DIR] [--save-mattes]

Images and ground-truth mattes are matched by file stem (``ROOT/image/x.jpg`` with
``ROOT/matte/x.png`` or ``.jpg`` for PPM-100). Predictions use the release's pre-processing
and are compared at the ground truth's full resolution, alpha in [0, 1] (see
``modnet_jax.metrics`` for the definitions and units). ``--region unknown`` restricts the sums
and means to the trimap's unknown band: the dataset's own trimap when it has one
(``trimap/x.png``), otherwise one made from the ground truth (``--band-radius`` pixels).

Images are used upright: a JPEG's EXIF orientation is applied to it and to its matte and
trimap, which are taken to be in the image's stored pixel order (the training data's rule).
The model's architecture comes from the checkpoint. Scores use 8-bit mattes by default, as
the reference evaluation code does with PNG files (``--precision float`` scores the float
output). Images are decoded ahead and scored by a thread pool while the model runs.

Writes ``DIR/per_image.csv`` (one row per image and region), ``DIR/summary.json`` (means,
counts, precision, skipped files) and prints a table; DIR is created only then, so a failed
run leaves nothing. Exit status: 0, 1 when images were skipped, 2 when the run could not
start or its reports could not be written (the OS's reason and the file on one ``error:``
line; a report is written whole or not at all). Python API: ``find_samples`` + ``evaluate_samples``.

    python -m modnet_jax.evaluate --checkpoint CKPT --data ROOT --layout video [--no-ofd]

evaluates clips (``ROOT/video/x.mp4`` or ``ROOT/video/x/`` frames, ground truth
``ROOT/matte/x.mp4`` or ``ROOT/matte/x/``): per-frame MSE/MAD, dtSSD and MESSDdt, and the
flicker score (which needs no ground truth): ``per_clip.csv``, ``per_frame.csv``,
``summary.json``; see ``modnet_jax.video_eval``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from modnet_jax.cliutil import command_parser, dashed
from modnet_jax.imaging import layouts, output
from modnet_jax.inference.options import OFD_THRESHOLD, add_model_args

# The photo + matte layouts of the shared registry (imaging/layouts.py), plus their aliases
# (`p3m` = `p3m10k`, the name this tool used before training and evaluation shared one).
LAYOUTS = tuple(sorted(layouts.IMAGE_MATTE_LAYOUTS + tuple(layouts.ALIASES)))
PRECISIONS = ("float", "8bit")  # = modnet_jax.metrics.PRECISIONS (tests/test_newcomer.py)
HELP = """Matting errors of a checkpoint on a dataset.

  python -m modnet_jax.evaluate --checkpoint modnet_photographic_portrait_matting.onnx \\
      --data /data/PPM-100 --layout ppm100

photos: MSE, MAD, SAD, Grad, Conn per image (DIR/per_image.csv), their means (summary.json)
videos (--layout video): MSE, MAD, dtSSD, MESSDdt per frame and clip, flicker score
Exit status: 0 all scored, 1 some skipped (each named), 2 could not start or write its reports.
Conventions and how they compare with published tables: docs/metrics.md."""


def build_parser():
    p = command_parser("modnet_jax.evaluate", HELP,
                       usage="--checkpoint CKPT --data ROOT [--layout LAYOUT] [options]")
    add_model_args(p)
    d = p.add_argument_group("dataset (layouts: docs/data.md)")
    d.add_argument("--data", required=True, metavar="ROOT",
                   help="dataset folder (--layout video: also one video or frame folder)")
    d.add_argument("--layout", choices=LAYOUTS + ("video",), default="ppm100", metavar="LAYOUT",
                   help=f"{', '.join(LAYOUTS + ('video',))}")
    d.add_argument("--image-dir", metavar="DIR", help="image (or video) folder under ROOT")
    d.add_argument("--matte-dir", metavar="DIR", help="ground-truth matte folder under ROOT")
    d.add_argument("--trimap-dir", metavar="DIR", help="trimap folder under ROOT")
    d.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N images (clips)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--region", choices=("image", "unknown", "both"), default="image",
                   help="whole image, the trimap's unknown band, or both")
    e.add_argument("--band-radius", type=int, default=10, metavar="PX",
                   help="unknown band's half width for a trimap made from the ground truth")
    e.add_argument("--output", metavar="DIR", default=None,
                   help="folder for the reports (default: ./eval_<name of ROOT>)")
    e.add_argument("--save-mattes", action="store_true", help="also write the predicted mattes")
    e.add_argument("--precision", choices=PRECISIONS, default="8bit",
                   help="8bit: round both mattes first, as published tables do")
    e.add_argument("--workers", type=int, default=None, metavar="N",
                   help="scoring threads (default: the CPU count, at least 2)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    v = p.add_argument_group("video (--layout video)")
    v.add_argument("--no-ofd", action="store_true", help="score the raw mattes, without OFD")
    v.add_argument("--ofd-threshold", type=float, default=OFD_THRESHOLD, metavar="T",
                   help="One-Frame Delay's flicker threshold")
    v.add_argument("--no-messddt", action="store_true", help="skip MESSDdt (slow optical flow)")
    return p


if __name__ == "__main__":  # --help, --version, usage mistakes: answered before heavy imports
    build_parser().parse_args(dashed(sys.argv[1:]))

from modnet_jax import metrics, video_eval  # noqa: E402
from modnet_jax.imaging.files import list_files  # noqa: E402
from modnet_jax.inference.cli import UserError, check_output_dir, finish  # noqa: E402
from modnet_jax.inference.cli import (  # noqa: E402
    engine_from_args, inference_devices, make_parent, read_checked, run_main, split_host_cpu)
from modnet_jax.inference.images import InputError, matte_to_uint8, orientation_of  # noqa: E402
from modnet_jax.inference.images import read_matte, write_image  # noqa: E402
from modnet_jax.inference.video import prefetch  # noqa: E402
from modnet_jax.progress import Progress  # noqa: E402

REGIONS = ("image", "unknown")


@dataclass
class Sample:
    name: str
    image: str
    matte: Optional[str]
    trimap: Optional[str] = None


def _by_stem(folder: Optional[str]) -> Dict[str, str]:
    return list_files(folder, recursive=False) if folder and os.path.isdir(folder) else {}


def _first_dir(root: str, names: Sequence[str]) -> Optional[str]:
    for name in names:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return None


def find_samples(root: str, layout: str = "ppm100", image_dir: Optional[str] = None,
                 matte_dir: Optional[str] = None, trimap_dir: Optional[str] = None
                 ) -> List[Sample]:
    """Samples of a dataset folder; ``*_dir`` (relative to ``root``) override the layout's.

    Raises ``UserError`` when the root or its image folder is missing. A sample without a
    matte keeps ``matte=None`` (reported as skipped by ``evaluate_samples``).
    """
    if not os.path.isdir(root):
        raise UserError(f"{root}: dataset folder does not exist")
    spec = layouts.layout_spec(layout)
    images_try = (image_dir,) if image_dir else tuple(dict.fromkeys(a for a, _ in spec.subdirs))
    images = _first_dir(root, images_try)
    if images is None:
        raise UserError(f"{root}: no image folder (looked for {'/, '.join(images_try)}/; "
                        f"is --layout {layout} right?)")
    # The matte folder paired with the image folder found, then the layout's others.
    partner = [m for a, m in spec.subdirs if os.path.join(root, a) == images]
    mattes_try = (matte_dir,) if matte_dir else tuple(dict.fromkeys(
        partner + [m for _, m in spec.subdirs]))
    mattes = _by_stem(_first_dir(root, mattes_try))
    trimaps = _by_stem(_first_dir(root, (trimap_dir,) if trimap_dir else spec.trimaps))
    samples = [Sample(stem, path, mattes.get(stem), trimaps.get(stem))
               for stem, path in _by_stem(images).items()]
    if not samples:
        raise UserError(f"{images}: no image files")
    return samples


def region_mask(region: str, gt, trimap_path: Optional[str], band_radius: int,
                orientation: int = 1):
    """(mask or None, source) for ``region``: the whole image, or the trimap's unknown band
    (a trimap file is turned by its image's EXIF ``orientation``, like the matte)."""
    if region == "image":
        return None, "-"
    if trimap_path:
        trimap = read_matte(trimap_path, orientation, keep_uint8=True)
        if trimap.shape != gt.shape:
            raise InputError(f"{trimap_path}: trimap size {trimap.shape} differs from the "
                             f"matte's {gt.shape}")
        return metrics.unknown_mask(trimap), "file"
    return metrics.unknown_band(gt, band_radius), "generated"


def score_sample(s: Sample, pred, regions: Sequence[str], band_radius: int, precision: str,
                 save_dir: Optional[str]) -> List[dict]:
    """Rows of one predicted matte against its ground truth (one per region). InputError on a
    bad ground-truth or trimap file."""
    turn = orientation_of(s.image)  # the matte is in its image's stored pixel order
    gt = read_matte(s.matte, turn, keep_uint8=True)  # 8-bit files stay uint8 (exact, 8x smaller)
    if gt.shape != pred.shape:
        raise InputError(f"{s.matte}: matte size {gt.shape} differs from the image's "
                         f"{pred.shape}")
    if save_dir:
        write_image(make_parent(os.path.join(save_dir, f"{s.name}.png")), matte_to_uint8(pred))
    masks = [region_mask(region, gt, s.trimap, band_radius, turn) for region in regions]
    scores = metrics.compute_metrics_masks(pred, gt, [m for m, _ in masks], precision)
    return [{"name": s.name, "region": region, "trimap": source, "precision": precision,
             **score} for region, (_, source), score in zip(regions, masks, scores)]


def default_workers() -> int:
    """Scoring threads: the CPU count (OpenCV and numpy release the GIL), at least 2."""
    return max(2, os.cpu_count() or 1)


def evaluate_samples(engine, samples: Sequence[Sample], regions: Sequence[str] = ("image",),
                     band_radius: int = 10, save_dir: Optional[str] = None,
                     progress: bool = False, precision: str = "8bit",
                     workers: Optional[int] = None
                     ) -> Tuple[List[dict], Dict, List[Tuple[str, str]]]:
    """(rows, summary, failures). Rows: {name, region, trimap, precision, mse, ..., conn}.

    Mattes come from ``engine`` (a ``MattingEngine``) while a reader thread decodes ahead and a
    pool of ``workers`` threads scores finished mattes; at most 2 x ``engine.batch_size``
    decoded images and ``workers`` + 1 unscored mattes are held at once.
    ``summary[region]`` holds the metric means and ``count``; failures are (file, message).
    """
    if precision not in metrics.PRECISIONS:
        raise ValueError(f"precision must be one of {metrics.PRECISIONS}, got {precision!r}")
    workers = workers or default_workers()
    failures: List[Tuple[str, str]] = []
    by_name = {s.name: s for s in samples}
    bar = Progress(len(samples), desc="evaluate", unit="images", enabled=progress)

    def readable():
        for s in samples:
            if s.matte is None:
                failures.append((s.image, f"{s.image}: no ground-truth matte with this name"))
                bar.note(f"error: {failures[-1][1]}")
                bar.update()
                continue
            try:
                yield s.name, read_checked(engine, s.image)
            except InputError as exc:
                failures.append((s.image, str(exc)))
                bar.note(f"error: {exc}")
                bar.update()

    rows: List[dict] = []
    scoring: "deque" = deque()

    def collect(block: bool) -> None:
        while scoring and (block or scoring[0][1].done()):
            s, future = scoring.popleft()
            try:
                rows.extend(future.result())
            except InputError as exc:
                failures.append((s.matte, str(exc)))
                bar.note(f"error: {exc}")
            bar.update()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score") as pool, \
            prefetch(readable(), depth=2 * engine.batch_size) as reader:
        for name, pred in _mattes(engine, reader, failures, bar):
            s = by_name[name]
            scoring.append((s, pool.submit(score_sample, s, pred, regions, band_radius,
                                           precision, save_dir)))
            collect(block=False)
            while len(scoring) > workers:  # bound the mattes waiting for a scorer
                wait([scoring[0][1]])
                collect(block=False)
        collect(block=True)
    bar.close()
    rows.sort(key=lambda r: (r["name"], REGIONS.index(r["region"])))
    summary = {}
    for region in regions:
        mine = [r for r in rows if r["region"] == region]
        summary[region] = {**metrics.average_metrics(mine), "count": len(mine)}
    return rows, summary, failures


def _mattes(engine, reader, failures, bar):
    """(name, float matte) pairs from the engine; its per-image refusals become failures."""
    for name, result in engine.images(reader):
        if isinstance(result, Exception):
            failures.append((name, str(result)))
            bar.note(f"error: {result}")
            bar.update()
            continue
        yield name, result.matte


def format_table(summary: Dict) -> str:
    """A fixed-width table: one line per region, one column per metric."""
    head = f"{'region':<9}{'n':>6}" + "".join(f"{m.upper():>12}" for m in metrics.METRIC_NAMES)
    lines = [head, "-" * len(head)]
    for region, values in summary.items():
        cells = "".join(f"{values[m]:>12.6g}" for m in metrics.METRIC_NAMES)
        lines.append(f"{region:<9}{values['count']:>6}{cells}")
    lines.append("MSE, MAD: means over pixels (alpha in [0,1]); SAD, Grad, Conn: sums / 1000 "
                 "(Grad and Conn on the DIM evaluation's scale).")
    return "\n".join(lines)


IMAGE_FIELDS = ("name", "region", "trimap", "precision", *metrics.METRIC_NAMES)


def write_reports(out_dir: str, tables: Dict[str, Tuple[Sequence[str], List[dict]]],
                  summary: Dict, failures: List[Tuple[str, str]], info: Dict) -> List[str]:
    """Write each ``tables[file name] = (columns, rows)`` as CSV and ``summary.json``, each
    whole or not at all (``imaging.output``); a failure is a WriteError naming the file and
    the OS's reason."""
    paths = []
    output.make_folders(out_dir)
    for file_name, (fields, rows) in tables.items():
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        paths.append(os.path.join(out_dir, file_name))
        output.write_text(paths[-1], text.getvalue())
    paths.append(os.path.join(out_dir, "summary.json"))
    output.write_text(paths[-1], json.dumps(
        {**info, "metrics": summary,
         "skipped": [{"file": p, "error": m} for p, m in failures]}, indent=2))
    return paths


def main_video(args, root: str, out_dir: str) -> int:
    try:
        clips = video_eval.find_clips(root, args.image_dir or "video", args.matte_dir or "matte")
    except InputError as exc:
        raise UserError(str(exc)) from None
    if args.limit is not None:
        clips = clips[:max(0, args.limit)]
    if not 0.0 <= args.ofd_threshold <= 1.0:
        raise UserError(f"--ofd-threshold must be in [0, 1], got {args.ofd_threshold}")
    engine = engine_from_args(args)  # its OFD threshold: --ofd-threshold
    clip_rows, frame_rows, summary, failures = video_eval.evaluate_clips(
        engine, clips, ofd=not args.no_ofd, precision=args.precision,
        messddt=not args.no_messddt, progress=not args.quiet)
    info = {"checkpoint": os.path.abspath(args.checkpoint), "data": root, "layout": "video",
            "ref_size": args.ref_size, "clips": len(clips), "precision": args.precision,
            "ofd": not args.no_ofd, "ofd_threshold": args.ofd_threshold}
    clip_fields = ("name", "frames", "ground_truth", "precision", "ofd", *video_eval.CLIP_FIELDS)
    paths = write_reports(out_dir, {
        "per_clip.csv": (clip_fields, clip_rows),
        "per_frame.csv": (("name", "frame", *video_eval.FRAME_FIELDS), frame_rows)},
        summary, failures, info)
    print(video_eval.format_table(clip_rows, summary))
    print(f"wrote {', '.join(paths)}", file=sys.stderr)
    print(f"compile: {engine.compile_summary()}", file=sys.stderr)
    return finish(failures, len(clips), "clips")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(dashed(argv))
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    root = os.path.abspath(os.path.expanduser(args.data))
    if args.layout == "video":
        out_dir = check_output_dir(
            args.output or f"eval_{os.path.splitext(os.path.basename(root.rstrip(os.sep)))[0]}")
        return main_video(args, root, out_dir)
    samples = find_samples(root, args.layout, args.image_dir, args.matte_dir, args.trimap_dir)
    if args.limit is not None:
        samples = samples[:max(0, args.limit)]
    # Checked now, created when the results are written: a failed run leaves no folder.
    out_dir = check_output_dir(args.output or f"eval_{os.path.basename(root.rstrip(os.sep))}")
    save_dir = os.path.join(out_dir, "mattes") if args.save_mattes else None
    regions = REGIONS if args.region == "both" else (args.region,)
    split_host_cpu()  # before JAX starts: one photo per CPU device at a time
    engine = engine_from_args(args, devices=inference_devices())
    rows, summary, failures = evaluate_samples(engine, samples, regions, args.band_radius,
                                               save_dir, progress=not args.quiet,
                                               precision=args.precision, workers=args.workers)
    info = {"checkpoint": os.path.abspath(args.checkpoint), "data": root,
            "layout": layouts.canonical_layout(args.layout), "ref_size": args.ref_size,
            "images": len(samples), "precision": args.precision}
    paths = write_reports(out_dir, {"per_image.csv": (IMAGE_FIELDS, rows)}, summary, failures,
                          info)
    print(format_table(summary))
    print(f"wrote {' and '.join(paths)}", file=sys.stderr)
    print(f"compile: {engine.compile_summary()}", file=sys.stderr)
    return finish(failures, len(samples), "images")


def cli(argv: Optional[List[str]] = None) -> int:
    return run_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
