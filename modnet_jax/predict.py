"""Predict alpha mattes for images, folders and videos with a modnet_jax checkpoint.

    python -m modnet_jax.predict --checkpoint CKPT INPUT [INPUT ...] --output DIR
        [--cutout] [--composite green|#rrggbb|r,g,b|BACKGROUND.jpg] [--no-matte]
        [--clean-colours] [--no-ofd] [--ofd-threshold 0.1] [--video-format mp4|avi]
        [--recursive] [--ref-size 512] [--batch-size 4] [--video-batch-size N] [--cpu-devices 2]
        [--max-long-side 2048] [--max-pixels 2097152] [--max-image-pixels 120000000]
        [--compile-cache DIR|none] [--quiet] [--version]

For an image ``x.jpg`` it writes ``DIR/x_matte.png`` (8-bit alpha), with ``--cutout``
``DIR/x_cutout.png`` (RGBA) and with ``--composite`` ``DIR/x_composite.png``. For a video
``v.mp4``: ``DIR/v_matte.mp4`` and, with ``--composite``, ``DIR/v_composite.mp4`` (same frame
count and frame rate; One-Frame Delay on unless ``--no-ofd``). A folder is read for image and
video files; its sub-folders only with ``--recursive``, the results then mirroring the folder
structure (``photos/2024/a.jpg`` -> ``DIR/2024/a_matte.png``); without it they are listed as
not read. Quoted patterns (``'photos/*.jpg'``) are expanded. Photos are used upright (EXIF
orientation applied). A bad file is reported on one line and skipped; the run then ends with
a list of skipped files and exit status 1. Fatal problems (checkpoint, output folder, options)
end it at once with exit status 2, before anything is written (DIR is created only when there
is something to write). The model's architecture comes from the checkpoint.

All files go through one ``MattingEngine`` (``modnet_jax.inference.engine``): a reader thread
decodes ahead, the device resizes, runs the model, resizes back, applies One-Frame Delay and
composites, and a writer thread encodes; the queues between them are bounded. The end-of-run
line says how many programs were compiled (and how long that took) or loaded from the
persistent compile cache.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, List, Optional, Tuple

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # keep ffmpeg's own noise off stderr

from modnet_jax.cliutil import command_parser, dashed  # noqa: E402
from modnet_jax.inference.options import (  # noqa: E402
    OFD_THRESHOLD,
    add_model_args,
    add_stream_args,
)

HELP = """Alpha mattes (and cut-outs, composites) for photos, folders, videos and live sources.

  python -m modnet_jax.predict --checkpoint modnet_photographic_portrait_matting.onnx \\
      photo.jpg clips/ --output out/ --cutout --composite white

photo x.jpg -> out/x_matte.png, x_cutout.png (RGBA), x_composite.png
video v.mp4 -> out/v_matte.mp4, v_composite.mp4 (One-Frame Delay unless --no-ofd)
Exit status: 0 all written, 1 some inputs skipped (each named), 2 could not start.
More: docs/predict.md."""


def build_parser():
    p = command_parser("modnet_jax.predict", HELP,
                       usage="--checkpoint CKPT INPUT... --output DIR [options]")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="photos, videos, folders of them, or quoted patterns ('shots/*.jpg')")
    p.add_argument("--output", metavar="DIR",
                   help="folder for the results (required unless --stream with a preview)")
    p.add_argument("--recursive", "-r", action="store_true",
                   help="read sub-folders too; the outputs mirror them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_args(p)
    o = p.add_argument_group("outputs")
    o.add_argument("--no-matte", action="store_true", help="do not write the matte")
    o.add_argument("--cutout", action="store_true", help="also write an RGBA cut-out per photo")
    o.add_argument("--composite", metavar="BG",
                   help="also composite onto BG: a colour (green, #00ff00, 0,255,0) or an image")
    o.add_argument("--clean-colours", action="store_true",
                   help="re-estimate foreground colours in the soft band (slow: pymatting)")
    v = p.add_argument_group("video")
    v.add_argument("--no-ofd", action="store_true", help="turn One-Frame Delay off")
    v.add_argument("--ofd-threshold", type=float, default=OFD_THRESHOLD, metavar="T",
                   help="One-Frame Delay's flicker threshold on alpha")
    v.add_argument("--video-batch-size", type=int, default=None, metavar="N",
                   help="frames per model call (default: one per device on a CPU, 8 on GPU)")
    v.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="split the CPU into N devices (default: 2 with 2 or more cores)")
    v.add_argument("--video-format", choices=("mp4", "avi"), default="mp4",
                   help="container of output videos")
    v.add_argument("--flicker", action="store_true", help="also print each video's flicker score")
    add_stream_args(p)
    return p


if __name__ == "__main__":  # --help, --version, usage mistakes: answered before heavy imports
    build_parser().parse_args(dashed(sys.argv[1:]))

from modnet_jax.inference.cli import (  # noqa: E402
    UserError,
    check_output_dir,
    default_video_batch,
    engine_from_args,
    finish,
    inference_devices,
    make_parent,
    read_checked,
    run_main,
    split_host_cpu,
)
from modnet_jax.inference.images import (  # noqa: E402
    InputError,
    clean_outputs,
    collect_inputs,
    first_use_note,
    output_path,
    parse_colour,
    read_image,
    write_image,
)
from modnet_jax.inference.stream import (  # noqa: E402
    Capture,
    LatestFrame,
    PreviewSink,
    VideoFileSink,
    display_available,
    open_source,
    run_stream,
)
from modnet_jax.inference.video import BackgroundWriter, prefetch, process_video  # noqa: E402
from modnet_jax.progress import Progress  # noqa: E402


def source_name(spec: str) -> str:
    if spec.isdigit():
        return f"camera{spec}"
    if "://" in spec:
        return "stream"
    return os.path.splitext(os.path.basename(spec))[0] or "stream"


def stream_main(args: argparse.Namespace, make_engine: Callable[[], Any], background,
                out_dir: Optional[str]) -> int:
    """``predict --stream``: run ``args.stream`` to the end (or Ctrl-C); 0, or 1 when the
    source failed midway."""
    if args.duration is not None and args.duration <= 0:
        raise UserError(f"--duration must be > 0, got {args.duration}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {args.max_frames}")
    preview = args.preview == "on" or (args.preview == "auto" and display_available())
    if args.preview == "on" and not display_available():
        raise UserError("--preview on: no display (or OpenCV was built without a GUI, as "
                        "opencv-python-headless is); write a file with --output instead")
    if not preview and out_dir is None:
        raise UserError("nothing to show or write: give --output DIR (the preview window "
                        "is off, or there is no display)")
    cap, fps, pace = open_source(args.stream)
    try:
        ok, first = cap.read()
        if not ok or first is None:
            raise UserError(f"{args.stream}: the source gave no frame")
        engine = make_engine()
        options = dict(ofd=not args.no_ofd, background=background, matte=background is None)
        warm = engine.live(**options)  # compile before the clock runs
        warm.push(first[:, :, ::-1])  # BGR -> RGB
        warm.finish()
        sinks = []
        if out_dir is not None:
            kind = "composite" if background is not None else "matte"
            path = os.path.join(out_dir, f"{source_name(args.stream)}_{kind}.{args.video_format}")
            sinks.append(VideoFileSink(path, fps))
        if preview:
            sinks.append(PreviewSink(f"modnet_jax: {args.stream}"))
        slot = LatestFrame(1)
        capture = Capture(cap, slot, pace_fps=fps if pace else None, first=first)
        bar = Progress(None, desc=source_name(args.stream), unit="frames",
                       enabled=not args.quiet)
        capture.start()
        try:
            result = run_stream(slot, engine.live(**options), sinks, progress=bar,
                                max_frames=args.max_frames, duration=args.duration)
        finally:
            capture.stop()
            capture.join(timeout=2.0)
    finally:
        cap.release()
    print(result.summary(not args.no_ofd), file=sys.stderr)
    for sink in sinks:
        if isinstance(sink, VideoFileSink) and sink.written:
            print(f"wrote {sink.path} ({sink.written} frames at {fps:g} fps)", file=sys.stderr)
    if capture.error is not None:
        print(f"error: {args.stream}: the source failed: {capture.error}", file=sys.stderr)
        return 1
    return 0


def parse_background(text: Optional[str]):
    if text is None:
        return None
    if os.path.isfile(text):
        return read_image(text)
    try:
        return parse_colour(text)
    except ValueError as exc:
        raise UserError(f"--composite: {exc}, and no image file of that name") from None


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(dashed(argv))
    background = parse_background(args.composite)
    if args.stream is not None:
        if args.inputs:
            raise UserError("--stream takes its source instead of INPUT files; give one or "
                            "the other")
        if args.clean_colours or args.cutout:
            raise UserError("--clean-colours and --cutout are for files, not --stream")
        out = check_output_dir(args.output) if args.output else None
        return stream_main(args, lambda: engine_from_args(args), background, out)
    if not args.inputs:
        raise UserError("no INPUT given (image/video files or folders, or --stream SOURCE)")
    if not args.output:
        raise UserError("--output DIR is required")
    if args.no_matte and not args.cutout and background is None:
        raise UserError("nothing to write: --no-matte without --cutout or --composite")
    out_dir = check_output_dir(args.output)  # created when the first file is written
    found = collect_inputs(args.inputs, args.recursive)
    if found.skipped_dirs:
        shown = ", ".join(found.skipped_dirs[:5])
        more = f", ... {len(found.skipped_dirs) - 5} more" if len(found.skipped_dirs) > 5 else ""
        print(f"warning: {len(found.skipped_dirs)} sub-folder(s) not read: {shown}{more} "
              f"(--recursive reads them)", file=sys.stderr)
    if not found.images and not found.videos:
        detail = "; ".join(message for _, message in found.errors[:3])
        raise UserError("no image or video files among the inputs" +
                        (f" ({detail})" if detail else ""))
    failures: List[Tuple[str, str]] = []
    for path, message in found.errors:
        print(f"error: {message}", file=sys.stderr)
        failures.append((path, message))
    images = [path for path, _ in found.images]
    videos = [path for path, _ in found.videos]
    stems = dict(found.images + found.videos)
    if args.cpu_devices is not None and args.cpu_devices < 1:
        raise UserError(f"--cpu-devices must be >= 1, got {args.cpu_devices}")
    split_host_cpu(args.cpu_devices)  # before JAX starts
    devices = inference_devices()
    if args.video_batch_size is None:
        args.video_batch_size = default_video_batch(devices)
    engine = engine_from_args(args, devices=devices)

    def out(path: str, kind: str, ext: str) -> str:
        return make_parent(output_path(out_dir, stems[path], kind, ext))

    bar = Progress(len(images), desc="images", unit="images",
                   enabled=not args.quiet and bool(images))
    written = 0
    clean = args.clean_colours and (args.cutout or background is not None)
    note = first_use_note() if (clean or (args.clean_colours and videos)) else None
    if note:
        print(note, file=sys.stderr)

    def decoded():
        for path in images:
            try:
                yield path, read_checked(engine, path)
            except InputError as exc:
                yield path, exc

    def write(item) -> None:
        nonlocal written
        path, result = item
        try:
            if isinstance(result, Exception):
                raise result
            if clean:
                result = clean_outputs(result, background, cutout=args.cutout)
            if not args.no_matte:
                write_image(out(path, "matte", ".png"), result.matte_uint8)
            if args.cutout:
                write_image(out(path, "cutout", ".png"), result.cutout)
            if background is not None:
                write_image(out(path, "composite", ".png"), result.composite)
            written += 1
        except InputError as exc:
            bar.note(f"error: {exc}")
            failures.append((path, str(exc)))
        bar.update()

    depth = 2 * args.batch_size
    options = dict(cutout=args.cutout and not clean, background=None if clean else background,
                   with_image=clean)
    with prefetch(decoded(), depth) as source, BackgroundWriter(write, depth) as writer:
        for item in engine.images(source, **options):
            writer.put(item)
    if images:
        bar.close()

    ext = "." + args.video_format
    for path in videos:
        try:
            result = process_video(
                engine, path,
                matte_path=None if args.no_matte else out(path, "matte", ext),
                composite_path=(None if background is None
                                else out(path, "composite", ext)),
                background=(0, 255, 0) if background is None else background,
                ofd=not args.no_ofd, clean=args.clean_colours, progress=not args.quiet,
                flicker=args.flicker)
            written += 1
            flicker = "" if result.flicker is None else f", flicker {result.flicker:.3e}"
            print(f"{path}: {result.frames} frames at {result.fps:g} fps, "
                  f"{result.rate:.1f} frames/s{flicker}", file=sys.stderr)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures.append((path, str(exc)))

    total = found.total
    print(f"done: {written} of {total} inputs written to {out_dir}", file=sys.stderr)
    print(f"compile: {engine.compile_summary()}", file=sys.stderr)
    return finish(failures, total, "inputs")


def cli(argv: Optional[List[str]] = None) -> int:
    return run_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
