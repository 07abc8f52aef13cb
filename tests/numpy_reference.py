"""Independent numpy/scipy implementations of the release's formulas (the tests' referee).

Written from docs/ (losses.md, metrics.md), deliberately without any modnet_jax code: loops
and scipy where the package uses shifts and pools. Arrays are NHWC float64.
"""

import cv2
import numpy as np
from scipy import ndimage

GAUSS = np.array([0.25022103, 0.49955794, 0.25022103])


def torch_bilinear(x, out_h, out_w):
    """F.interpolate(mode='bilinear', align_corners=False) on [B,H,W,C], from its formula:
    src = (dst + 0.5) * in / out - 0.5, clamped below at 0, neighbours clamped at the edge."""
    b, h, w, c = x.shape

    def weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = src - i0
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), i0] += 1 - lam
        m[np.arange(n_out), i1] += lam
        return m

    wh, ww = weights(h, out_h), weights(w, out_w)
    return np.einsum("oh,bhwc,pw->bopc", wh, np.asarray(x, np.float64), ww)


def blur(x):
    """ReflectionPad2d(1) + 3x3 Gaussian conv per channel, with scipy."""
    k = np.outer(GAUSS, GAUSS)
    out = np.empty_like(np.asarray(x, np.float64))
    for bi in range(x.shape[0]):
        for ci in range(x.shape[3]):
            # scipy's 'mirror' mode is PyTorch's reflection padding (edge not repeated).
            out[bi, :, :, ci] = ndimage.correlate(np.asarray(x[bi, :, :, ci], np.float64), k,
                                                  mode="mirror")
    return out


def down16(x):
    return torch_bilinear(x, x.shape[1] // 16, x.shape[2] // 16)


def supervised_release(ps, pd, pm, img, tri, gt):
    known = (tri < 0.5) | (tri > 0.5)
    gt_s = blur(down16(gt))
    l_s = 10 * np.mean((ps - gt_s) ** 2)
    l_d = 10 * np.mean(np.abs(np.where(known, tri, pd) - np.where(known, tri, gt)))
    bm = np.where(known, tri, pm)
    l_a = (np.mean(np.abs(pm - gt)) + 4 * np.mean(np.abs(bm - gt))
           + np.mean(np.abs(img * pm - img * gt)) + 4 * np.mean(np.abs(img * bm - img * gt)))
    return l_s, l_d, l_a


def supervised_paper(ps, pd, pm, img, tri, gt, fg, bg):
    band = (tri == 0.5)
    l_s = 0.5 * np.mean((ps - blur(down16(gt))) ** 2)
    l_d = 10 * np.abs(pd - gt)[band].mean()
    comp = lambda a: fg * a + bg * (1 - a)  # noqa: E731
    l_a = np.mean(np.abs(pm - gt)) + np.mean(np.abs(comp(pm) - comp(gt)))
    return l_s, l_d, l_a


def soc_band(ps, pm):
    """The release's host-side band: scipy grey dilation/erosion per sample."""
    b, h, w, _ = pm.shape
    fg = (pm > 0.1).astype(np.float64) * torch_bilinear((ps > 0.1).astype(np.float64), h, w)
    side = int((h + w) / 2 * 0.05)
    band = np.zeros_like(fg)
    for i in range(b):
        f = fg[i, :, :, 0]
        d = ndimage.grey_dilation(f, size=(side, side))
        e = ndimage.grey_erosion(f, size=(side, side))
        band[i, :, :, 0] = (d - e) != 0
    return band


def soc(ps, pd, pm, fd, fm):
    d = blur(down16(pm))
    pseudo_s = d * (d > 0.01)
    pseudo_m = ps * (ps > 0.01)
    l_s = 100 * (np.mean((ps - pseudo_s) ** 2) + np.mean((d - pseudo_m) ** 2))
    band = soc_band(ps, pm)
    terms = []
    for i in range(pm.shape[0]):
        m = band[i] > 0
        if m.sum() == 0:
            continue  # the release would divide by zero here
        terms.append(np.abs(pd[i] - fd[i])[m].mean() + np.abs(pm[i] - fm[i])[m].mean())
    l_d = np.mean(terms) if terms else 0.0
    return l_s, l_d


# ---------------------------------------------------------------- the release's processing
# As its demo scripts do it (docs/inference.md), in numpy on the host: the definition that
# ``MattingEngine`` (on the device) is tested against. The resize rule that picks the model
# input size is the package's (tested against hand values in test_inference.py).

def _area_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Adaptive average pooling of ``x`` along ``axis`` to ``n_out`` cells (float64 sums).

    Output cell i averages input indices floor(i * n_in / n_out) .. ceil((i+1) * n_in / n_out)-1
    (PyTorch's ``interpolate(mode='area')``; when upscaling each output copies one input).
    Computed from a cumulative sum, so the cost is linear in the input size.
    """
    n_in = x.shape[axis]
    i = np.arange(n_out)
    starts = (i * n_in) // n_out
    ends = -((-(i + 1) * n_in) // n_out)
    csum = np.cumsum(x, axis=axis, dtype=np.float64)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 0)
    csum = np.pad(csum, pad)
    shape = [1] * x.ndim
    shape[axis] = n_out
    counts = (ends - starts).reshape(shape)
    return (np.take(csum, ends, axis=axis) - np.take(csum, starts, axis=axis)) / counts


def area_resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize [H, W] or [H, W, C] to ``height`` x ``width`` with area (adaptive-average) weights.

    Returns float32; rows first, then columns.
    """
    x = np.asarray(x)
    if x.shape[:2] == (height, width):
        return x.astype(np.float32)
    out = _area_axis(x, height, 0)
    out = _area_axis(out, width, 1)
    return out.astype(np.float32)


def preprocess(image: np.ndarray, rh: int, rw: int) -> np.ndarray:
    """Model input [rh, rw, 3] float32 in [-1, 1] from an RGB image (uint8 0..255); (rh, rw):
    the model input size (the resize rule, ``modnet_jax.inference.model_input_size``)."""
    return area_resize(np.asarray(image)[:, :, :3], rh, rw) / 127.5 - 1.0


def postprocess(matte: np.ndarray, height: int, width: int, mode: str = "area") -> np.ndarray:
    """The model's matte [rh, rw] (or [rh, rw, 1]) resized back to ``height`` x ``width``.

    ``mode``: "area" (the release) or "bilinear" (smoother when upscaling). Float32 in [0, 1].
    """
    m = np.asarray(matte, dtype=np.float32)
    if m.ndim == 3:
        m = m[..., 0]
    if mode == "area":
        out = area_resize(m, height, width)
    elif mode == "bilinear":
        out = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        raise ValueError(f"resize mode must be 'area' or 'bilinear', got {mode!r}")
    return np.clip(out, 0.0, 1.0)
