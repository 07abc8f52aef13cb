"""``predict --stream SOURCE``: options and the command around ``inference.stream``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional

from modnet_jax.inference.cli import UserError
from modnet_jax.inference.stream import (
    Capture,
    LatestFrame,
    MatteFn,
    PreviewSink,
    VideoFileSink,
    display_available,
    open_source,
    run_stream,
)
from modnet_jax.progress import Progress


def source_name(spec: str) -> str:
    if spec.isdigit():
        return f"camera{spec}"
    if "://" in spec:
        return "stream"
    return os.path.splitext(os.path.basename(spec))[0] or "stream"


def stream_main(args: argparse.Namespace, make_matte_fn: Callable[[], MatteFn], background,
                out_dir: Optional[str]) -> int:
    """Run ``args.stream`` to the end (or Ctrl-C); 0, or 1 when the source failed midway."""
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
        matte_fn = make_matte_fn()
        import cv2

        matte_fn([cv2.cvtColor(first, cv2.COLOR_BGR2RGB)])  # compile before the clock runs
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
            result = run_stream(slot, matte_fn, sinks, background=background,
                                ofd=not args.no_ofd, ofd_threshold=args.ofd_threshold,
                                progress=bar, max_frames=args.max_frames,
                                duration=args.duration)
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
