"""The MODNet release's two demo loops, re-implemented from their description, with the
package's PyTorch model (``modnet_jax.interop.torch_modnet``): the baseline of
``e2e_speed.py``. Written by us; the structure is what the release's demos do, one frame or
photo at a time with nothing overlapped:

* custom-video demo: read a frame with OpenCV, BGR -> RGB, resize it (area) so its short side
  is 512 and both sides are multiples of 32, normalise to [-1, 1], run the model, composite
  the frame on white with the matte at the model size, resize the composite back to the
  frame size, write it with an mp4v ``cv2.VideoWriter``.
* image demo: for each photo of a folder, read it (PIL), RGB, normalise, the release's resize
  rule (short side to 512 unless the sides straddle 512, floor to multiples of 32; torch
  ``interpolate(mode="area")``), the model, the matte resized back (area), written as an
  8-bit PNG.

Both run under ``torch.no_grad()`` in eval mode with the thread count the caller set.
"""

from __future__ import annotations

import os
from typing import List, Tuple

import cv2
import numpy as np

from modnet_jax.inference.sizes import model_input_size

REF_SIZE = 512


def video_demo_size(height: int, width: int, ref: int = REF_SIZE) -> Tuple[int, int]:
    """(rh, rw): short side ``ref``, the other side in proportion, both floored to 32."""
    if width >= height:
        rh, rw = ref, int(width / height * ref)
    else:
        rh, rw = int(height / width * ref), ref
    return rh - rh % 32, rw - rw % 32


def _to_input(rgb: np.ndarray):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    return x / 127.5 - 1.0


def video_demo(model, src: str, dst: str, ref: int = REF_SIZE) -> int:
    """The custom-video demo loop over ``src``, composite on white to ``dst``; frames done."""
    import torch

    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise RuntimeError(f"{src}: cannot open")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    rh, rw = video_demo_size(height, width, ref)
    writer = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), True)
    frames = 0
    try:
        with torch.no_grad():
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                small = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_AREA)
                matte = model(_to_input(small), inference=True)[2][0, 0].numpy()[:, :, None]
                comp = small.astype(np.float32) * matte + 255.0 * (1.0 - matte)
                comp = cv2.resize(comp.astype(np.uint8), (width, height))
                writer.write(cv2.cvtColor(comp, cv2.COLOR_RGB2BGR))
                frames += 1
    finally:
        cap.release()
        writer.release()
    return frames


def image_demo(model, paths: List[str], out_dir: str, ref: int = REF_SIZE) -> int:
    """The image demo loop: one matte PNG per photo in ``out_dir``; photos done."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    with torch.no_grad():
        for path in paths:
            im = np.asarray(Image.open(path))
            if im.ndim == 2:
                im = np.repeat(im[:, :, None], 3, axis=2)
            im = im[:, :, :3]
            height, width = im.shape[:2]
            rh, rw = model_input_size(height, width, ref)
            x = F.interpolate(_to_input(im), size=(rh, rw), mode="area")
            matte = model(x, inference=True)[2]
            matte = F.interpolate(matte, size=(height, width), mode="area")[0, 0].numpy()
            name = os.path.splitext(os.path.basename(path))[0] + ".png"
            Image.fromarray((matte * 255).astype(np.uint8)).save(  # 8-bit gray
                os.path.join(out_dir, name))
    return len(paths)
