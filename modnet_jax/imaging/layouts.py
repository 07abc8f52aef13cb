"""Dataset layouts: one name per way files sit under a dataset root, shared by training
(`data.layout`) and evaluation (`evaluate --layout`).

A labelled layout lists candidate (colour folder, matte folder) pairs, tried in order (the
first pair present is used), and the folder of the dataset's own trimaps if it ships them.

    synthetic      procedural portraits, no files
    fg_alpha       foregrounds + mattes: fg/ + alpha/ or fgr/ + pha/ (composited onto backgrounds)
    adobe, d646    fg_alpha with fg/ + alpha/ (Composition-1k / Distinctions-646 style)
    rvm            fg_alpha with fgr/ + pha/ (RVM human subsets)
    image_matte    photos + mattes: image/ + matte/, blurred_image/ + mask/, original/ + mask/
                   or original_image/ + mask/
    ppm100         image/ + matte/ (PPM-100)
    p3m10k         blurred_image/ + mask/ or original_image/ + mask/ (P3M-10k: root =
                   P3M-10k/train, or validation/P3M-500-P, or validation/P3M-500-NP)
    am2k           original/ + mask/ (AM-2k train or validation)
    unlabelled     any images and videos, any depth (SOC adaptation)
    prepared       a folder written by `python -m modnet_jax.data.prepare --format arrayrecord`
                   (decoded samples of any labelled layout in one ArrayRecord file)

Alias: `p3m` is accepted for `p3m10k` (evaluate used that name before the two were merged);
`canonical_layout` maps it, and everything downstream sees `p3m10k`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class LayoutSpec:
    kind: str                   # synthetic | fg_alpha | image_matte | unlabelled | prepared
    subdirs: tuple = ()         # candidate (colour, matte) subfolder pairs, in order
    trimaps: tuple = ()         # folders of the dataset's own trimaps, if it ships them


_IMAGE_MATTE = (("image", "matte"), ("blurred_image", "mask"), ("original", "mask"),
                ("original_image", "mask"))

LAYOUTS = {
    "synthetic": LayoutSpec("synthetic"),
    "fg_alpha": LayoutSpec("fg_alpha", (("fg", "alpha"), ("fgr", "pha"))),
    "adobe": LayoutSpec("fg_alpha", (("fg", "alpha"),)),
    "d646": LayoutSpec("fg_alpha", (("fg", "alpha"),)),
    "rvm": LayoutSpec("fg_alpha", (("fgr", "pha"),)),
    "image_matte": LayoutSpec("image_matte", _IMAGE_MATTE, ("trimap",)),
    "ppm100": LayoutSpec("image_matte", (("image", "matte"),), ("trimap",)),
    "p3m10k": LayoutSpec("image_matte", (("blurred_image", "mask"), ("original_image", "mask")),
                         ("trimap",)),
    "am2k": LayoutSpec("image_matte", (("original", "mask"),), ("trimap",)),
    "unlabelled": LayoutSpec("unlabelled"),
    "prepared": LayoutSpec("prepared"),
}
ALIASES = {"p3m": "p3m10k"}
# Layouts with photos and ground-truth mattes: what evaluation can score.
IMAGE_MATTE_LAYOUTS = tuple(n for n, spec in LAYOUTS.items() if spec.kind == "image_matte")


def canonical_layout(name: str) -> str:
    """The layout's one name (aliases resolved); ValueError listing the known names."""
    name = ALIASES.get(name, name)
    if name not in LAYOUTS:
        raise ValueError(f"unknown data layout {name!r}; known layouts: {', '.join(LAYOUTS)} "
                         f"(aliases: {', '.join(f'{a}={b}' for a, b in ALIASES.items())})")
    return name


def layout_spec(name: str) -> LayoutSpec:
    """The spec of a layout name or alias; ValueError listing the known names otherwise."""
    return LAYOUTS[canonical_layout(name)]


def first_present(root: str, candidates) -> tuple | None:
    """The first (colour, matte) candidate pair whose folders both exist under `root`."""
    for first, second in candidates:
        if os.path.isdir(os.path.join(root, first)) and os.path.isdir(os.path.join(root, second)):
            return os.path.join(root, first), os.path.join(root, second)
    return None
