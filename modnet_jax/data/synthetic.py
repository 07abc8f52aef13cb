"""Procedurally generated portrait-like matting data (no files, deterministic from a seed).

Why: the default training command must run on a fresh machine with nothing downloaded, and
tests need known data. Each sample is a head-and-shoulders silhouette (tilted ellipse head,
neck, shoulders/torso running off the bottom edge, a hair cap) with:

* alpha 255 inside, 0 outside, anti-aliased and slightly blurred edges, and thin hair-like
  strands drawn with anti-aliasing at partial intensity, so the matte has a genuine band of
  fractional values, as real hair does;
* a textured foreground: skin tone for face and neck, hair colour with streaks, clothes with
  noise or stripes;
* a separate textured, blurred background (gradient, low-frequency noise, blobs), whose
  colour is kept away from the clothes colour so the subject is visible.

Everything is drawn with OpenCV at the requested size (a 64x64 sample takes well under a
millisecond, a 512x512 one a few milliseconds) and depends only on (seed, index).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from modnet_jax.imaging import output
from modnet_jax.imaging.compositing import composite

_SHIFT = 4  # OpenCV drawing uses fixed-point coordinates with this many fractional bits
_SCALE = 1 << _SHIFT
_SKIN = np.array([[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66],
                  [141, 85, 36], [92, 51, 23]], np.float32)
_HAIR = np.array([[20, 16, 14], [60, 40, 28], [110, 75, 45], [200, 160, 100],
                  [150, 60, 30], [90, 90, 95]], np.float32)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, 0x9E37])


def _smooth_noise(rng, height, width, cells, channels=1):
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled with cubic filtering."""
    grid = rng.uniform(-1.0, 1.0, (cells, cells, channels)).astype(np.float32)
    noise = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return noise.reshape(height, width, channels)


def _fixed(points):
    return np.round(np.asarray(points, np.float64) * _SCALE).astype(np.int32)


def _point(xy):
    return tuple(int(v) for v in _fixed(xy))


def _ellipse(canvas, centre, axes, angle, value, start=0, end=360):
    cv2.ellipse(canvas, _point(centre), _point(axes), float(angle), start, end, value, -1,
                cv2.LINE_AA, _SHIFT)


def _texture(rng, height, width, base, amplitude, cells, detail=4):
    """A smooth colour field (`base` RGB plus tinted noise) as uint8 [H, W, 3].

    Computed at 1/`detail` resolution and enlarged: the field is smooth, and float work at
    full 512x512 resolution was most of the generation time.
    """
    small_h, small_w = max(4, height // detail), max(4, width // detail)
    noise = _smooth_noise(rng, small_h, small_w, cells)
    tint = rng.uniform(0.6, 1.0, 3).astype(np.float32)
    field = np.clip(base[None, None, :] + amplitude * noise * tint, 0, 255).astype(np.uint8)
    return cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)


def _stripes(rng, height, width, unit):
    """A mask of parallel bands (0 or 255) at a random angle and period, drawn as thick lines."""
    mask = np.zeros((height, width), np.uint8)
    period = unit * rng.uniform(0.04, 0.12)
    angle = rng.uniform(0, np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)])
    along = np.array([-normal[1], normal[0]]) * 2 * (height + width)
    centre = np.array([width / 2, height / 2])
    thickness = max(1, int(round(period / 2)))
    for offset in np.arange(-(height + width), height + width, period):
        mid = centre + normal * offset
        cv2.line(mask, _point(mid - along), _point(mid + along), 255, thickness, cv2.LINE_AA, _SHIFT)
    return mask


def _strands(rng, canvas, centre, axes, angle, unit):
    """Thin, gently curving strands leaving the upper head outline, at partial intensity."""
    count = int(np.clip(rng.uniform(30, 70) * unit / 256, 8, 180))
    theta = np.deg2rad(rng.uniform(185, 355, count) + angle)
    start_r = rng.uniform(0.85, 1.0, count)
    x = centre[0] + axes[0] * start_r * np.cos(theta)
    y = centre[1] + axes[1] * start_r * np.sin(theta)
    # Strands leave roughly outwards and droop under "gravity" (heading drifts to +y).
    heading = theta + rng.normal(0, 0.3, count)
    step = unit * rng.uniform(0.005, 0.015, count)
    curl = rng.normal(0, 0.06, count)
    points = [np.stack([x, y], -1)]
    for _ in range(8):
        heading = heading + curl + 0.05 * np.cos(heading) + rng.normal(0, 0.04, count)
        x = x + step * np.cos(heading)
        y = y + step * np.sin(heading)
        points.append(np.stack([x, y], -1))
    lines = _fixed(np.stack(points, 1))  # [count, 9, 2]
    for group, value in enumerate(rng.integers(90, 250, 3)):
        chosen = list(lines[group::3])
        if chosen:
            cv2.polylines(canvas, chosen, False, int(value), 1, cv2.LINE_AA, _SHIFT)


def generate_portrait(seed: int, index: int, height: int, width: int | None = None) -> dict:
    """One synthetic foreground: {"fg": uint8 [H, W, 3] RGB, "alpha": uint8 [H, W], and
    "clothes_colour": the RGB base colour of the clothes (to keep backgrounds distinct)}."""
    width = height if width is None else width
    rng = _rng(seed, index)
    unit = float(min(height, width))
    cx = width / 2 + rng.uniform(-0.12, 0.12) * unit
    head_ry = unit * rng.uniform(0.13, 0.18)
    head_rx = head_ry * rng.uniform(0.72, 0.86)
    head = (cx + rng.uniform(-0.03, 0.03) * unit, height - unit * rng.uniform(0.56, 0.68))
    tilt = rng.uniform(-12, 12)
    shoulder_y = head[1] + head_ry * rng.uniform(1.0, 1.25)
    torso_rx = unit * rng.uniform(0.27, 0.42)
    torso_ry = unit * rng.uniform(0.12, 0.22)
    hair_axes = (head_rx * rng.uniform(1.04, 1.14), head_ry * rng.uniform(1.03, 1.1))
    hair_centre = (head[0], head[1] - head_ry * rng.uniform(0.02, 0.08))
    hair_arc = (rng.uniform(160, 195), rng.uniform(345, 380))  # how far down the sides

    # Silhouette: torso (rounded shoulders + a block down to the bottom edge), neck, head,
    # hair cap (an arc of a slightly larger ellipse).
    torso = np.zeros((height, width), np.uint8)
    _ellipse(torso, (cx, shoulder_y + torso_ry), (torso_rx, torso_ry), 0, 255)
    cv2.rectangle(torso, _point((cx - torso_rx, shoulder_y + torso_ry)),
                  _point((cx + torso_rx, height + 2)), 255, -1, cv2.LINE_AA, _SHIFT)
    neck = np.zeros_like(torso)
    neck_w = head_rx * rng.uniform(0.45, 0.6)
    cv2.rectangle(neck, _point((head[0] - neck_w, head[1])),
                  _point((head[0] + neck_w, shoulder_y + torso_ry)), 255, -1, cv2.LINE_AA, _SHIFT)
    face = np.zeros_like(torso)
    _ellipse(face, head, (head_rx, head_ry), tilt, 255)
    hair = np.zeros_like(torso)
    _ellipse(hair, hair_centre, hair_axes, tilt, 255, *hair_arc)
    body = np.maximum(np.maximum(torso, neck), np.maximum(face, hair))

    sigma = max(0.4, unit / 512 * rng.uniform(0.5, 1.5))
    alpha = cv2.GaussianBlur(body, (0, 0), sigma)
    strands = np.zeros_like(body)
    _strands(rng, strands, hair_centre, hair_axes, tilt, unit)
    alpha = np.maximum(alpha, strands)

    # Colours. The hair texture is the base everywhere, so strand pixels and the soft rim
    # carry hair colour; clothes and skin are painted over their (hard) regions.
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.9, 1.05)
    hair_colour = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2)
    clothes_colour = rng.uniform(20, 235, 3).astype(np.float32)
    fg = _texture(rng, height, width, hair_colour, 40, max(6, int(unit // 24)))
    clothes = _texture(rng, height, width, clothes_colour, 35, 6)
    if rng.random() < 0.5:  # stripes: high-frequency structure inside the subject
        stripes = _stripes(rng, height, width, unit) >> 2
        clothes = cv2.subtract(clothes, cv2.merge([stripes, stripes, stripes]))
    skin_tex = _texture(rng, height, width, skin, 14, 5)
    # Region masks with OpenCV (boolean numpy indexing was the slowest step at 512x512).
    hairless = cv2.compare(hair, 127, cv2.CMP_LE)
    skin_mask = cv2.bitwise_and(cv2.compare(np.maximum(face, neck), 127, cv2.CMP_GT), hairless)
    torso_mask = cv2.bitwise_and(cv2.compare(torso, 127, cv2.CMP_GT), hairless)
    cv2.copyTo(clothes, torso_mask, fg)
    cv2.copyTo(skin_tex, skin_mask, fg)
    return {"fg": fg, "alpha": alpha, "clothes_colour": clothes_colour}


def generate_background(seed: int, index: int, height: int, width: int | None = None,
                        avoid: np.ndarray | None = None) -> np.ndarray:
    """A textured, blurred background, uint8 [H, W, 3] RGB.

    `avoid` is an RGB colour the background's base colours keep their distance from (the
    subject's clothes), so composites have a visible subject. Drawn and blurred at half
    resolution (it is blurred anyway), then enlarged and given fine grain.
    """
    width = height if width is None else width
    rng = _rng(seed, index + 0x5BD1E995)
    small_h, small_w = max(4, (height + 1) // 2), max(4, (width + 1) // 2)
    unit = float(min(small_h, small_w))
    colours = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    for _ in range(8):
        if avoid is None or np.abs(colours.mean(0) - avoid).sum() > 120:
            break
        colours = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp_x = np.linspace(-1, 1, small_w, dtype=np.float32)[None, :] * np.cos(direction)
    ramp_y = np.linspace(-1, 1, small_h, dtype=np.float32)[:, None] * np.sin(direction)
    ramp = ((ramp_x + ramp_y) * 0.5 + 0.5)[:, :, None]
    image = colours[0] * (1 - ramp) + colours[1] * ramp
    image += 40 * _smooth_noise(rng, small_h, small_w, int(rng.integers(3, 10)), 3)
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 14))):  # blobs: out-of-focus objects and windows
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (rng.uniform(0, small_w), rng.uniform(0, small_h))
        size = unit * rng.uniform(0.04, 0.25)
        if rng.random() < 0.5:
            _ellipse(canvas, centre, (size, size * rng.uniform(0.5, 1.5)), 0, colour)
        else:
            corner = (centre[0] + size, centre[1] + size * rng.uniform(0.5, 2))
            cv2.rectangle(canvas, _point(centre), _point(corner), colour, -1, cv2.LINE_AA, _SHIFT)
    canvas = cv2.GaussianBlur(canvas, (0, 0), max(0.5, unit / 256 * rng.uniform(0.5, 3.5)))
    canvas = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_LINEAR)
    grain = np.frombuffer(rng.bytes(height * width), np.uint8).reshape(height, width) & 7
    return cv2.add(canvas, cv2.merge([grain, grain, grain]))


def write_synthetic_folder(root: str, count: int, *, height: int = 256, width: int | None = None,
                           seed: int = 0, layout: str = "fg_alpha", fg_ext: str = ".png",
                           bg_ext: str = ".jpg", start: int = 0) -> list[str]:
    """Writes `count` synthetic samples to disk; returns their stems.

    layout "fg_alpha": `root/fg/<stem><fg_ext>`, `root/alpha/<stem>.png`, and backgrounds in
    `root/bg/<stem><bg_ext>` (usable as `bg_root`). layout "image_matte": composited
    `root/image/<stem>.jpg` + `root/matte/<stem>.png`. Each file is written whole or not at
    all (``imaging.output``); a failed write is a ``WriteError`` (an OSError) naming it.
    """
    if layout not in ("fg_alpha", "image_matte"):
        raise ValueError(f"write_synthetic_folder: layout must be fg_alpha or image_matte, not {layout!r}")
    names = ("fg", "alpha", "bg") if layout == "fg_alpha" else ("image", "matte")
    for name in names:
        output.make_folders(os.path.join(root, name))
    stems = []
    for index in range(start, start + count):
        stem = f"synth_{index:05d}"
        sample = generate_portrait(seed, index, height, width)
        bg = generate_background(seed, index, height, width, avoid=sample["clothes_colour"])
        fg, alpha = sample["fg"], sample["alpha"]
        if layout == "fg_alpha":
            files = {f"fg/{stem}{fg_ext}": fg, f"alpha/{stem}.png": alpha, f"bg/{stem}{bg_ext}": bg}
        else:
            files = {f"image/{stem}.jpg": composite(fg, bg, alpha), f"matte/{stem}.png": alpha}
        for rel, array in files.items():
            if array.ndim == 3:
                array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if rel.endswith((".jpg", ".jpeg")) else []
            output.write_image(os.path.join(root, rel), array, params)  # whole or not at all
        stems.append(stem)
    return stems
