"""The data of benchmarks/soc_domain.py: labelled photos split three ways, seen through
simulated cameras, and a generated clip.

* ``load_photos(folder, size)``: every ``image/<name>.*`` with its ``matte/<name>.png`` (the
  PPM-100 layout), the shorter side resized to ``size`` and centre-cropped to a square
  (``soc_report.square_crop``; the matte the same way), as uint8 arrays.
* ``split(n, seed)``: a fixed shuffle of the photo indices into target-train (SOC adapts on
  these, labels unused), target-held-out (scored with their mattes) and clean-held-out
  (scored unmodified: what adaptation forgets), about 40 / 30 / 30 %.
* ``CAMERAS``: camera models a user's camera could be, each a fixed transform of an RGB uint8
  image (the same camera for every photo; the random parts, noise and compression, are drawn
  per image from ``(seed, image index)``):

  ======== ==================================================================
  lowres   4x area downscale, bilinear upscale: a small sensor / digital zoom
  cast     tungsten-like white balance: R x1.25, G x1.0, B x0.7, then clipped
  exposure under-exposed and flat: 0.55 x + 25, gamma 1.3 (dim indoor light)
  noise    sensor noise: Gaussian, 14 grey levels luma + 6 per channel
  jpeg     heavy JPEG compression, quality 12
  ======== ==================================================================

* ``clip_domain(size, frames, seed)``: generated footage (``modnet_jax.data.synthetic_video``,
  a synthetic portrait swaying over a fixed background, sensor noise 2 grey levels): three
  training clips (unlabelled frames) and one held-out clip with its true mattes.
"""

from __future__ import annotations

import glob
import os
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

from modnet_jax.training.soc_report import square_crop


def load_photos(folder: str, size: int) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """(images uint8 [N, size, size, 3] RGB, mattes uint8 [N, size, size], names)."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, "image", "*"))
                   if os.path.splitext(p)[1].lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise FileNotFoundError(f"no photos in {folder}/image")
    images, mattes, names = [], [], []
    for p in paths:
        name = os.path.splitext(os.path.basename(p))[0]
        mp = os.path.join(folder, "matte", name + ".png")
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        matte = cv2.imread(mp, cv2.IMREAD_GRAYSCALE)
        if img is None or matte is None:
            raise FileNotFoundError(f"unreadable photo or matte for {name}")
        images.append(square_crop(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size))
        mattes.append(square_crop(matte, size))
        names.append(name)
    return np.stack(images), np.stack(mattes), names


def split(n: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Indices of target-train / target-held-out / clean-held-out (fixed by ``seed``)."""
    order = np.random.default_rng(seed).permutation(n)
    a, b = round(0.4 * n), round(0.7 * n)
    return {"train": np.sort(order[:a]), "held": np.sort(order[a:b]),
            "clean": np.sort(order[b:])}


def _lowres(img, rng):
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _cast(img, rng):
    return np.clip(img.astype(np.float32) * np.float32([1.25, 1.0, 0.7]), 0, 255)


def _exposure(img, rng):
    x = (0.55 * img.astype(np.float32) + 25.0) / 255.0
    return 255.0 * np.power(x, 1.3)


def _noise(img, rng):
    h, w = img.shape[:2]
    luma = rng.normal(0.0, 14.0, (h, w, 1))
    chroma = rng.normal(0.0, 6.0, (h, w, 3))
    return img.astype(np.float32) + luma + chroma


def _jpeg(img, rng):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 12])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


CAMERAS: Dict[str, Callable] = {"lowres": _lowres, "cast": _cast, "exposure": _exposure,
                                "noise": _noise, "jpeg": _jpeg}


def through_camera(name: str, images: np.ndarray, indices: np.ndarray, seed: int = 0
                   ) -> np.ndarray:
    """``images[indices]`` as camera ``name`` would record them (uint8)."""
    fn = CAMERAS[name]
    out = []
    for i in indices:
        rng = np.random.default_rng([seed, int(i), 0xCA3])
        out.append(np.clip(np.rint(fn(images[i], rng)), 0, 255).astype(np.uint8))
    return np.stack(out)


def clip_domain(size: int, frames: int, seed: int = 0, noise: float = 2.0) -> Dict:
    """{"train": uint8 [3*frames, H, W, 3] (unlabelled), "held": {"frames", "alpha"}}."""
    from modnet_jax.data.synthetic_video import generate_clip

    clips = [generate_clip(seed, i, frames, size, noise=noise) for i in (1, 2, 3)]
    return {"train": np.concatenate([c["frames"] for c in clips]),
            "held": generate_clip(seed, 100, frames, size, noise=noise)}
