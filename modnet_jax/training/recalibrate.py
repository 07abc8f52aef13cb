"""Give BatchNorms real running statistics without changing the eval-mode function.

Why: a model imported from the official ONNX export has its backbone BatchNorms folded (gamma 1,
mean 0, var 1 - eps, beta = the conv bias). In eval mode that is the trained function, but a
train-mode forward normalises with batch statistics, which for a folded layer are nothing like
(mean 0, var 1 - eps): the train-mode function starts far from the eval one and supervised
fine-tuning wrecks the model in its first steps.

The fix, per BatchNorm. In eval mode a BatchNorm is an affine map per channel:

    y = gamma (x - mu) / sqrt(var + eps) + beta = a x + c,
    a = gamma / sqrt(var + eps),   c = beta - a mu.

Measure the real statistics (mu', var') of its input x over calibration images (the eval-mode
forward; the layer's input does not depend on the choice below, so one pass serves every
layer), then choose

    gamma' = a sqrt(var' + eps),   beta' = c + a mu'

so that gamma' (x - mu') / sqrt(var' + eps) + beta' = a x + c: the eval function is unchanged
(up to fp32 rounding of gamma', beta'), and in train mode the layer normalises by batch
statistics that are now close to (mu', var'), so the train-mode function starts close to the
eval one. For a folded layer (a = 1, c = b) this is gamma' = sqrt(var' + eps), beta' = b + mu'.
It applies to every BatchNorm (the branches' IBNorm halves too), not only folded ones.

(mu', var') pool all calibration pixels: per-batch mean and centred variance combined exactly
(Chan et al.) in float64, so the result does not depend on how the images are batched.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

from modnet_jax.models.layers import BN_EPS, BatchNorm

Path = Tuple[str, ...]


def _stats_program(model):
    """jit(variables, x) -> {BatchNorm path: (mean [C], biased var [C], element count)} of
    each BatchNorm's input in the eval-mode forward (training heads included)."""
    plain = model.clone(fast_paths="off")  # every BatchNorm is a plain ``BatchNorm`` module

    def run(variables, x):
        found: Dict[Path, Tuple[jax.Array, jax.Array]] = {}

        def interceptor(next_fun, args, kwargs, context):
            if isinstance(context.module, BatchNorm) and context.method_name == "__call__":
                h = args[0].astype(jnp.float32)
                axes = tuple(range(h.ndim - 1))
                mean = jnp.mean(h, axes)
                count = jnp.asarray(np.prod(h.shape[:-1]), jnp.int32)
                found[tuple(context.module.path)] = (
                    mean, jnp.mean(jnp.square(h - mean), axes), count)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            plain.apply(variables, x, train=False, inference=False)
        return found

    return jax.jit(run)


def combine(pooled: Optional[Dict[str, Any]], mean, var, n: int) -> Dict[str, Any]:
    """Add one batch's (mean, biased var, count) to the running pooled statistics, exactly
    (Chan et al.'s pairwise update of mean and M2 = var * count), in float64.
    ``batch_var`` accumulates the sum of per-batch variances (divided by ``batches`` later)."""
    mean, var = np.float64(mean), np.float64(var)
    if pooled is None:
        return dict(mean=mean, var=var, count=n, batch_var=var, batches=1)
    total = pooled["count"] + n
    delta = mean - pooled["mean"]
    m2 = pooled["var"] * pooled["count"] + var * n + delta ** 2 * pooled["count"] * n / total
    return dict(mean=pooled["mean"] + delta * n / total, var=m2 / total, count=total,
                batch_var=pooled["batch_var"] + var, batches=pooled["batches"] + 1)


def batchnorm_input_stats(model, variables: Mapping[str, Any], batches: Iterable[np.ndarray]
                          ) -> Dict[Path, Dict[str, Any]]:
    """Per BatchNorm, statistics of its input in the eval-mode forward over ``batches``:
    ``mean`` and ``var`` pooled over every pixel (biased), ``batch_var`` the average of the
    per-batch biased variances (what a train-mode forward at that batch size normalises by,
    on average), ``count`` the pixels.

    ``batches``: NHWC float arrays normalised like the model's input ([-1, 1]).
    """
    program = _stats_program(model)
    pooled: Dict[Path, Dict[str, Any]] = {}
    for x in batches:
        x = np.asarray(x, np.float32)
        for path, (mean, var, n) in jax.device_get(program(variables, x)).items():
            pooled[path] = combine(pooled.get(path), mean, var, int(n))
    if not pooled:
        raise ValueError("recalibration needs at least one batch of images")
    for p in pooled.values():
        p["batch_var"] = p["batch_var"] / p.pop("batches")
    return pooled


VARIANCES = ("batch", "pooled")


def recalibrate_batchnorm(model, variables: Mapping[str, Any], batches: Iterable[np.ndarray],
                          variance: str = "batch", eps: float = BN_EPS
                          ) -> Tuple[Dict[str, Any], Dict[str, float]]:
    """(variables with every BatchNorm re-estimated, a small report); eval function unchanged.

    See the module docstring for the algebra. Only ``params/**/scale|bias`` and
    ``batch_stats/**/mean|var`` of BatchNorms change. ``variance``: "batch" (default) sets
    var' to the average per-batch variance, so give batches of the training batch size: that
    is what train mode divides by; "pooled" uses the variance over all calibration pixels.
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    stats = batchnorm_input_stats(model, variables, batches)
    params = traverse_util.flatten_dict(jax.device_get(dict(variables["params"])))
    bstats = traverse_util.flatten_dict(jax.device_get(dict(variables["batch_stats"])))
    missing = [p for p in stats if p + ("mean",) not in bstats]
    if missing:
        raise ValueError(f"BatchNorm statistics not found in the variables: {missing[:5]}")
    shifts = []
    for path, st in stats.items():
        new_mean, new_var = st["mean"], st["var" if variance == "pooled" else "batch_var"]
        gamma = np.float64(params[path + ("scale",)])
        beta = np.float64(params[path + ("bias",)])
        mean = np.float64(bstats[path + ("mean",)])
        var = np.float64(bstats[path + ("var",)])
        a = gamma / np.sqrt(var + eps)
        c = beta - a * mean
        params[path + ("scale",)] = np.float32(a * np.sqrt(new_var + eps))
        params[path + ("bias",)] = np.float32(c + a * new_mean)
        bstats[path + ("mean",)] = np.float32(new_mean)
        bstats[path + ("var",)] = np.float32(new_var)
        shifts.append(float(np.max(np.abs(new_mean - mean) / np.sqrt(var + eps))))
    out = dict(variables)
    out["params"] = traverse_util.unflatten_dict(params)
    out["batch_stats"] = traverse_util.unflatten_dict(bstats)
    report = {"batchnorms": len(stats), "max_mean_shift_in_old_std": max(shifts)}
    return out, report


def train_eval_gap(model, variables: Mapping[str, Any], x: np.ndarray) -> float:
    """Mean |matte(train mode, batch statistics) - matte(eval mode)| on one batch ``x``."""
    def both(v, x):
        _, _, train = model.apply(v, x, train=True, mutable=["batch_stats"])[0]
        _, _, ev = model.apply(v, x, train=False)
        return jnp.mean(jnp.abs(train - ev))

    return float(jax.jit(both)(variables, np.asarray(x, np.float32)))
