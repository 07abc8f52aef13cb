"""Helpers shared by the interop tests: random Flax variables and the fp32 parity criterion.

Why the parity criterion is relative to PyTorch's own rounding: on random weights MODNet's ~70
normalised layers amplify fp32 rounding, so two fp32 implementations of the *same* function
differ by a few 1e-5 (PyTorch fp32 vs PyTorch fp64 on the same weights differs that much).
``parity`` therefore asks that JAX fp32 be as close to the exact (fp64 PyTorch) result as
PyTorch fp32 is, and also reports the plain JAX-vs-PyTorch max |diff|.
"""

from __future__ import annotations

import copy
from typing import Dict, Optional

import jax
import numpy as np

# Random weights of the model's exact structure, drawn without compiling: one home, in the
# package, so the benchmarks use it too.
from modnet_jax.models.random_weights import random_variables as random_flax_variables  # noqa: F401

# JAX may be at most this many times further from the fp64 result than PyTorch fp32 is.
NOISE_FACTOR = 3.0
NOISE_SLACK = 2e-6
# Plain max |JAX fp32 - PyTorch fp32|: a sanity ceiling (a real layout/semantics bug is ~1e-1;
# the criterion above already implies <= (NOISE_FACTOR + 1) * floor + slack).
ABS_CEILING = 1e-3


def nchw(x):
    return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))


def nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


def max_diff(a, b, relative: bool = False) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = np.abs(a - b)
    return float(np.max(d / (1.0 + np.abs(b)) if relative else d))


def parity(got, t32, t64, what: str, relative: bool = False) -> dict:
    """Assert the fp32 parity criterion for one array; return the figures."""
    figures = {"jax_vs_torch32": max_diff(got, t32, relative),
               "jax_vs_torch64": max_diff(got, t64, relative),
               "torch32_vs_torch64": max_diff(t32, t64, relative)}
    bound = NOISE_FACTOR * figures["torch32_vs_torch64"] + NOISE_SLACK
    assert figures["jax_vs_torch64"] <= bound, (what, figures)
    assert figures["jax_vs_torch32"] <= ABS_CEILING, (what, figures)
    return figures


def torch_runs(net, x_nhwc, train: bool):
    """(outputs fp32, outputs fp64, net fp32 after the call, net fp64 after) of a torch net.

    Works on deep copies, so ``net`` (its running statistics) is left untouched.
    """
    import torch

    n32 = copy.deepcopy(net).float().train(train)
    n64 = copy.deepcopy(net).double().train(train)
    x = torch.from_numpy(nchw(x_nhwc))
    with torch.no_grad():
        o32 = [nhwc(t.numpy()) for t in n32(x, inference=False)]
        o64 = [nhwc(t.numpy()) for t in n64(x.double(), inference=False)]
    return o32, o64, n32, n64


def state_dict_numpy(net) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def stats_vector(batch_stats) -> np.ndarray:
    leaves = jax.tree_util.tree_leaves(batch_stats)
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in leaves])


def synthetic_portraits(n: int, height: int, width: Optional[int] = None, start: int = 0,
                        seed: int = 0) -> Dict[str, np.ndarray]:
    """Composited synthetic portraits (modnet_jax.data.synthetic): ``image`` uint8 [n,H,W,3],
    ``x`` the model input in [-1, 1], ``alpha`` uint8 [n,H,W,1], ``trimap`` uint8 {0,128,255}
    (unknown = the matte's fractional pixels dilated by 5 px)."""
    import cv2

    from modnet_jax.imaging.compositing import composite
    from modnet_jax.data.synthetic import generate_background, generate_portrait

    width = height if width is None else width
    images, alphas, trimaps = [], [], []
    for i in range(start, start + n):
        s = generate_portrait(seed, i, height, width)
        bg = generate_background(seed, i, height, width, avoid=s["clothes_colour"])
        a = s["alpha"]
        unknown = cv2.dilate(((a > 0) & (a < 255)).astype(np.uint8), np.ones((11, 11), np.uint8))
        images.append(composite(s["fg"], bg, a))
        alphas.append(a[..., None])
        trimaps.append(np.where(unknown > 0, 128, np.where(a == 255, 255, 0))[..., None])
    image = np.stack(images)
    return {"image": image, "x": ((image.astype(np.float32) / 255.0 - 0.5) / 0.5),
            "alpha": np.stack(alphas), "trimap": np.stack(trimaps).astype(np.uint8)}
