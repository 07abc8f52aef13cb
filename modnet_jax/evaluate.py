"""Evaluate a checkpoint on a matting dataset: MSE, MAD, SAD, Gradient and Connectivity errors.

    python -m modnet_jax.evaluate --checkpoint CKPT --data ROOT [--layout ppm100]
        [--region image|unknown|both] [--band-radius 10] [--output DIR] [--save-mattes]

Images and ground-truth mattes are matched by file stem (``ROOT/image/x.jpg`` with
``ROOT/matte/x.png`` or ``.jpg`` for PPM-100). Predictions use the release's pre-processing
and are compared at the ground truth's full resolution, alpha in [0, 1] (see
``modnet_jax.metrics`` for the definitions and units). ``--region unknown`` restricts the sums
and means to the trimap's unknown band: the dataset's own trimap when it has one
(``trimap/x.png``), otherwise one made from the ground truth (``--band-radius`` pixels).

Writes ``DIR/per_image.csv`` (one row per image and region), ``DIR/summary.json`` (means,
counts, skipped files) and prints a table. Python API: ``find_samples`` + ``evaluate_samples``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from modnet_jax import metrics
from modnet_jax.inference.cli import UserError, add_model_args, ensure_output_dir, finish
from modnet_jax.inference.cli import engine_from_args, read_checked, run_main
from modnet_jax.imaging import layouts
from modnet_jax.imaging.files import list_files
from modnet_jax.inference.images import InputError, matte_to_uint8
from modnet_jax.inference.images import read_matte, write_image
from modnet_jax.inference.pipeline import prefetch
from modnet_jax.progress import Progress

# The photo + matte layouts of the shared registry (imaging/layouts.py), plus their aliases
# (`p3m` = `p3m10k`, the name this tool used before training and evaluation shared one).
LAYOUTS = tuple(sorted(layouts.IMAGE_MATTE_LAYOUTS + tuple(layouts.ALIASES)))
REGIONS = ("image", "unknown")


@dataclass
class Sample:
    name: str
    image: str
    matte: Optional[str]
    trimap: Optional[str] = None


def _by_stem(folder: Optional[str]) -> Dict[str, str]:
    return list_files(folder) if folder and os.path.isdir(folder) else {}


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


def region_mask(region: str, gt, trimap_path: Optional[str], band_radius: int):
    """(mask or None, source) for ``region``: the whole image, or the trimap's unknown band."""
    if region == "image":
        return None, "-"
    if trimap_path:
        trimap = read_matte(trimap_path)
        if trimap.shape != gt.shape:
            raise InputError(f"{trimap_path}: trimap size {trimap.shape} differs from the "
                             f"matte's {gt.shape}")
        return metrics.unknown_mask(trimap), "file"
    return metrics.unknown_mask(metrics.trimap_from_alpha(gt, band_radius)), "generated"


def evaluate_samples(engine, samples: Sequence[Sample], regions: Sequence[str] = ("image",),
                     band_radius: int = 10, save_dir: Optional[str] = None,
                     progress: bool = False) -> Tuple[List[dict], Dict, List[Tuple[str, str]]]:
    """(rows, summary, failures). Rows: {name, region, trimap, mse, mad, sad, grad, conn}.

    ``summary[region]`` holds the metric means and ``count``; failures are (file, message).
    Mattes come from ``engine`` (a ``MattingEngine``) while a reader thread decodes ahead.
    """
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
    with prefetch(readable(), depth=2 * engine.batch_size) as reader:
        for name, pred in _mattes(engine, reader, failures, bar):
            s = by_name[name]
            try:
                gt = read_matte(s.matte)
                if gt.shape != pred.shape:
                    raise InputError(f"{s.matte}: matte size {gt.shape} differs from the image's "
                                     f"{pred.shape}")
                if save_dir:
                    write_image(os.path.join(save_dir, f"{name}.png"), matte_to_uint8(pred))
                mine = []
                for region in regions:
                    mask, source = region_mask(region, gt, s.trimap, band_radius)
                    mine.append({"name": name, "region": region, "trimap": source,
                                 **metrics.compute_metrics(pred, gt, mask)})
                rows.extend(mine)
            except InputError as exc:
                failures.append((s.matte, str(exc)))
                bar.note(f"error: {exc}")
            bar.update()
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
    lines.append("MSE, MAD: means over pixels (alpha in [0,1]); SAD, Grad, Conn: sums / 1000.")
    return "\n".join(lines)


def write_reports(out_dir: str, rows: List[dict], summary: Dict,
                  failures: List[Tuple[str, str]], info: Dict) -> Tuple[str, str]:
    csv_path = os.path.join(out_dir, "per_image.csv")
    json_path = os.path.join(out_dir, "summary.json")
    fields = ["name", "region", "trimap", *metrics.METRIC_NAMES]
    try:
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        with open(json_path, "w") as f:
            json.dump({**info, "metrics": summary,
                       "skipped": [{"file": p, "error": m} for p, m in failures]}, f, indent=2)
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot write ({exc.strerror})") from None
    return csv_path, json_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modnet_jax.evaluate",
        description="Matting errors (MSE, MAD, SAD, Grad, Conn) of a checkpoint on a dataset.")
    add_model_args(p)
    d = p.add_argument_group("dataset")
    d.add_argument("--data", required=True, metavar="ROOT", help="dataset folder")
    d.add_argument("--layout", choices=LAYOUTS, default="ppm100",
                   help="folder names, as training's data.layout: ppm100 = image/ + matte/ "
                        "(+ trimap/); p3m10k (alias p3m) = blurred_image|original_image/ + "
                        "mask/ + trimap/; am2k = original/ + mask/ + trimap/; image_matte = "
                        "any of those pairs (default: %(default)s)")
    d.add_argument("--image-dir", help="image folder under ROOT (overrides the layout)")
    d.add_argument("--matte-dir", help="ground-truth matte folder under ROOT")
    d.add_argument("--trimap-dir", help="trimap folder under ROOT (for --region unknown)")
    d.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    e = p.add_argument_group("evaluation")
    e.add_argument("--region", choices=("image", "unknown", "both"), default="image",
                   help="whole image, the trimap's unknown band, or both (default: %(default)s)")
    e.add_argument("--band-radius", type=int, default=10,
                   help="unknown-band half width in pixels when a trimap is made from the "
                        "ground truth (default: %(default)s)")
    e.add_argument("--output", metavar="DIR", default=None,
                   help="folder for per_image.csv and summary.json (default: "
                        "./eval_<name of ROOT>)")
    e.add_argument("--save-mattes", action="store_true",
                   help="also write the predicted mattes to DIR/mattes/")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.data))
    samples = find_samples(root, args.layout, args.image_dir, args.matte_dir, args.trimap_dir)
    if args.limit is not None:
        samples = samples[:max(0, args.limit)]
    out_dir = ensure_output_dir(args.output or f"eval_{os.path.basename(root.rstrip(os.sep))}")
    save_dir = ensure_output_dir(os.path.join(out_dir, "mattes")) if args.save_mattes else None
    regions = REGIONS if args.region == "both" else (args.region,)
    engine = engine_from_args(args)
    rows, summary, failures = evaluate_samples(engine, samples, regions, args.band_radius,
                                               save_dir, progress=not args.quiet)
    info = {"checkpoint": os.path.abspath(args.checkpoint), "data": root,
            "layout": layouts.canonical_layout(args.layout), "ref_size": args.ref_size,
            "images": len(samples)}
    csv_path, json_path = write_reports(out_dir, rows, summary, failures, info)
    print(format_table(summary))
    print(f"wrote {csv_path} and {json_path}", file=sys.stderr)
    print(f"compile: {engine.compile_summary()}", file=sys.stderr)
    return finish(failures, len(samples), "images")


def cli(argv: Optional[List[str]] = None) -> int:
    return run_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
