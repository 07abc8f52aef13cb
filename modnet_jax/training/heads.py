"""Fit the training-only heads of a model that lacks them (the official ONNX export).

The export traced the inference path only, so ``lr_branch/conv_lr`` (semantic head) and
``hr_branch/conv_hr_*`` (detail head) come back freshly initialised. Supervised fine-tuning
trains them from labels, but SOC *uses* them without labels: its semantic term ties the matte
to the semantic head and its detail term compares the detail head with the frozen copy's. With
random heads SOC's loss is dominated by them and its gradients pull the shared trunk (and the
matte) towards noise.

``fit_training_heads`` distils the heads from the model's own eval-mode matte on unlabelled
frames, everything else fixed: semantic head -> G(bilinear(matte, 1/16)) (the release's
semantic target), detail head -> the matte, L1 in the boundary band plus 0.1 x everywhere. Only
the two heads' parameters change, so the matte (the inference function) is untouched.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from modnet_jax.losses import semantic_target, soc_boundary_band
from modnet_jax.models.build import TRAINING_ONLY_MODULES


def _is_head(path: Tuple[str, ...]) -> bool:
    return any(path[:2] == m for m in TRAINING_ONLY_MODULES)


def head_mask(params: Mapping[str, Any]):
    """A pytree of bools: True on the training-only heads' parameters."""
    flat = traverse_util.flatten_dict(dict(params))
    return traverse_util.unflatten_dict({p: _is_head(p) for p in flat})


def fit_training_heads(model, variables: Mapping[str, Any], batches: Iterable[np.ndarray],
                       learning_rate: float = 1e-3) -> Tuple[Dict[str, Any], list]:
    """(variables with fitted heads, loss per step). One Adam step per batch ([-1, 1] NHWC).

    BatchNorm runs on its running statistics (recalibrate first, so that the detail head's
    own BatchNorm has real ones); nothing outside the heads changes.
    """
    params = variables["params"]
    stats = variables["batch_stats"]
    tx = optax.masked(optax.adam(learning_rate), head_mask(params))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, stats, x):  # stats an argument: one program for any model
        _, _, matte = model.apply({"params": params, "batch_stats": stats}, x, train=False,
                                  inference=True)
        matte = jax.lax.stop_gradient(matte)
        sem_target = semantic_target(matte)

        def loss_fn(p):
            sem, det, _ = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                      freeze_bn=True)
            band = soc_boundary_band(sem_target, matte)
            err = jnp.abs(det - matte)
            detail = (jnp.sum(band * err) / jnp.maximum(jnp.sum(band), 1.0)
                      + 0.1 * jnp.mean(err))
            return 10.0 * jnp.mean(jnp.square(sem - sem_target)) + detail

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        # masked() passes non-head gradients through unchanged: zero them explicitly.
        updates = jax.tree.map(lambda u, m: u if m else jnp.zeros_like(u), updates,
                               head_mask(params))
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for x in batches:
        params, opt_state, loss = step(params, opt_state, stats, np.asarray(x, np.float32))
        losses.append(float(loss))
    out = dict(variables)
    out["params"] = jax.device_get(params)
    return out, losses
