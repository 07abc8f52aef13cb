"""Clean cut-outs: estimate the true foreground colours in the matte's soft band (host, opt-in).

An image pixel in the soft band is alpha * F + (1 - alpha) * B: its colour still holds the old
background B, so a cut-out with the image's own colours carries a fringe of B onto any new
background (hair turns green on a green screen). ``imaging.compositing.estimate_foreground_ml``
solves for F with pymatting's multi-level foreground estimation (Germer et al. 2020), and
``clean_outputs`` re-makes a result's cut-out / composite from F instead of the image.

It runs on the host CPU (pymatting's numba kernels): about a second per megapixel, so it is
an opt-in (``predict --clean-colours``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from modnet_jax.imaging.compositing import Background, composite_over, estimate_foreground_ml
from modnet_jax.inference.images import matte_to_uint8


def first_use_note() -> Optional[str]:
    """A line to print before the first ``--clean-colours`` run on this machine: pymatting's
    numba kernels compile on first use (a minute of silence otherwise; numba caches them
    beside pymatting, so later runs skip it). None when that cache is already there."""
    import glob
    import importlib.util
    import os

    spec = importlib.util.find_spec("pymatting")
    if spec is not None and spec.submodule_search_locations:
        root = list(spec.submodule_search_locations)[0]
        if glob.glob(os.path.join(root, "foreground", "__pycache__", "*.nbi")):
            return None
    return ("--clean-colours: compiling pymatting's foreground kernels first (once per "
            "installation; this can take a minute)")


def clean_outputs(result, background: Optional[Background] = None, cutout: bool = False):
    """A copy of an engine result (with ``image``) whose cut-out / composite use ``F``.

    ``background`` (a colour or an RGB image) gives a composite, ``cutout`` an RGBA cut-out
    (``F`` as colour, the matte as alpha).
    """
    if result.image is None:
        raise ValueError("clean_outputs needs the frame: ask the engine for with_image=True")
    fg = estimate_foreground_ml(result.image, result.matte)
    changes = {}
    if cutout:
        rgb = np.clip(np.rint(fg), 0, 255).astype(np.uint8)
        changes["cutout"] = np.concatenate([rgb, matte_to_uint8(result.matte)[..., None]], -1)
    if background is not None:
        changes["composite"] = composite_over(fg, result.matte, background)
    return replace(result, **changes)
