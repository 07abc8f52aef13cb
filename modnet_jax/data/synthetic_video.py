"""Generated talking-head-like clips: a synthetic portrait swaying over a fixed background.

For measuring temporal behaviour (flicker, SOC adaptation) without real footage. The subject
(``synthetic.generate_portrait``) moves by a smooth sub-pixel horizontal sway with a slight
tilt, holding still for stretches; the background never moves, so most background pixels
are "still" in the sense of ``modnet_jax.temporal`` (input unchanged), and the subject's
interior is still during holds. Each frame gets independent sensor-like Gaussian noise
(``noise`` grey levels, default 1), which a perfect matting model would ignore and a real one
partly turns into flicker, as with a real camera.

Frames are RGB uint8 [H, W, 3]; ``alpha`` is the ground-truth matte of each frame (uint8).
Everything depends only on (seed, index).
"""

from __future__ import annotations

import os
from typing import Dict, Iterable

import cv2
import numpy as np

from modnet_jax.imaging import output
from modnet_jax.imaging.compositing import composite
from modnet_jax.imaging.video import VideoOutput
from modnet_jax.data.synthetic import generate_background, generate_portrait


def _motion(rng: np.random.Generator, frames: int, width: int):
    """Per-frame (dx pixels, angle degrees): sway segments separated by holds."""
    dx, angle = np.zeros(frames), np.zeros(frames)
    x, a, t = 0.0, 0.0, 0
    while t < frames:
        hold = int(rng.integers(4, 10))
        dx[t:t + hold], angle[t:t + hold] = x, a
        t += hold
        if t >= frames:
            break
        move = int(rng.integers(6, 14))
        x_to = rng.uniform(-0.06, 0.06) * width
        a_to = rng.uniform(-3, 3)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, move + 1)[1:])  # eased
        end = min(frames, t + move)
        dx[t:end] = x + (x_to - x) * ramp[:end - t]
        angle[t:end] = a + (a_to - a) * ramp[:end - t]
        x, a, t = x_to, a_to, t + move
    return dx, angle


def generate_clip(seed: int, index: int, frames: int, height: int, width: int | None = None,
                  noise: float = 1.0) -> Dict[str, np.ndarray]:
    """{"frames": uint8 [T, H, W, 3], "alpha": uint8 [T, H, W]} of one generated clip."""
    width = height if width is None else width
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, 0x51D0])
    subject = generate_portrait(seed, index, height, width)
    background = generate_background(seed, index, height, width,
                                     avoid=subject["clothes_colour"])
    dx, angle = _motion(rng, frames, width)
    out_f = np.empty((frames, height, width, 3), np.uint8)
    out_a = np.empty((frames, height, width), np.uint8)
    pivot = (width / 2.0, float(height))  # sway about the bottom centre (the torso)
    for t in range(frames):
        m = cv2.getRotationMatrix2D(pivot, float(angle[t]), 1.0)
        m[0, 2] += dx[t]
        fg = cv2.warpAffine(subject["fg"], m, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
        alpha = cv2.warpAffine(subject["alpha"], m, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        frame = composite(fg, background, alpha).astype(np.float32)
        if noise > 0:
            frame += rng.normal(0.0, noise, frame.shape).astype(np.float32)
        out_f[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        out_a[t] = alpha
    return {"frames": out_f, "alpha": out_a}


def write_clip(path: str, frames: Iterable[np.ndarray], fps: float = 25.0) -> None:
    """Write RGB uint8 frames as a video OpenCV can read back (mp4v in .mp4, else MJPG),
    whole or not at all (``imaging.video.VideoOutput``: a temporary name, read back before the
    rename)."""
    frames = list(frames)
    if not frames:
        raise ValueError("write_clip: no frames")
    h, w = frames[0].shape[:2]
    output.make_folders(os.path.dirname(os.path.abspath(path)) or ".")
    codec = "mp4v" if path.lower().endswith(".mp4") else "MJPG"
    writer = VideoOutput(path, codec, fps, (w, h))
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    except BaseException:
        writer.discard()
        raise
    writer.release()
