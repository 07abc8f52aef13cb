"""The inference defaults and the command-line options ``predict`` and ``evaluate`` share.

Standard library only (no numpy, OpenCV or JAX), so a command builds its parser, answers
``--help``/``--version`` and refuses a usage mistake before any heavy import; the modules that
use these values (``preprocess``, ``ofd``, ``engine``, ``compile_cache``) import them from here.
Long explanations live in docs/predict.md, not in the help texts.
"""

from __future__ import annotations

import argparse
import os

REF_SIZE = 512             # the release's resize rule: short side to this, sides floored to 32
MULTIPLE = 32
MAX_LONG_SIDE = 2048       # caps on the model input (extreme aspect ratios shrink both sides)
MAX_PIXELS = 2048 * 1024
MAX_IMAGE_PIXELS = 120_000_000  # larger images are refused from their header, per file
OFD_THRESHOLD = 0.1        # One-Frame Delay's flicker threshold on alpha in [0, 1]
COMPILE_CACHE_ENV = "MODNET_JAX_COMPILE_CACHE"


def default_cache_dir() -> str:
    """The persistent compile cache's default folder ($XDG_CACHE_HOME or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "modnet_jax", "jax")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="a training workdir or checkpoint, or released .onnx/.pth weights")
    g.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    g.add_argument("--lr-branch", choices=("se", "easpp"), default=None,
                   help="only for files that do not record their model")
    g.add_argument("--hr-channels", type=int, default=None, metavar="N", help="likewise")
    g.add_argument("--ref-size", type=int, default=REF_SIZE, metavar="PX",
                   help="short side of the model input (the release's resize rule)")
    g.add_argument("--batch-size", type=int, default=4, metavar="N",
                   help="photos of one size matted together")
    g.add_argument("--resize-back", choices=("area", "bilinear"), default="area", metavar="HOW",
                   help="area or bilinear: how the matte returns to the image size")
    m = parser.add_argument_group("memory and compilation (docs/predict.md)")
    m.add_argument("--max-long-side", type=int, default=MAX_LONG_SIDE, metavar="PX",
                   help="cap on the model input's long side")
    m.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                   help="cap on the model input's pixels")
    m.add_argument("--max-image-pixels", type=int, default=MAX_IMAGE_PIXELS, metavar="N",
                   help="larger images are refused")
    m.add_argument("--exact-shapes", action="store_true",
                   help="compile per photo size instead of sharing canvases")
    m.add_argument("--compile-cache", metavar="DIR", default=None,
                   help=f"compiled programs' folder, or 'none' (default: ${COMPILE_CACHE_ENV} "
                        f"or ~/.cache/modnet_jax/jax)")


def add_stream_args(parser: argparse.ArgumentParser) -> None:
    s = parser.add_argument_group("live source (docs/predict.md)")
    s.add_argument("--stream", metavar="SOURCE", default=None,
                   help="camera index (0), stream URL or a video file played as if live")
    s.add_argument("--preview", choices=("auto", "on", "off"), default="auto",
                   help="preview window (auto: when a display exists)")
    s.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after this many seconds")
    s.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="stop after N output frames")
