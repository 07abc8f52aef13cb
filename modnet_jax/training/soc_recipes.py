"""SOC recipes: what adapts, how fast, against which M', with which extra term.

A ``Recipe`` is what ``benchmarks/soc_domain.py`` measures; the trainer takes the same
choices from its config (``optimizer.learning_rate``, ``soc.adapt`` through ``restrict``,
``soc.refresh_frozen_every_epoch``; the ``soc`` config variants): the optimiser (Adam, betas (0.9, 0.99) as released), the
parameters that adapt (``adapt``), how often M' is re-copied from M (``refresh_every``, 0:
never) and the weight of the neighbouring-frame term (``temporal_weight``,
``losses.temporal_consistency``; batches are then pairs of consecutive frames; measured by
the benchmark only: the trainer's unlabelled batches are not consecutive frames). BatchNorm
statistics are always frozen (SOC runs M with ``freeze_bn``).

``adapt``:
  all        every parameter (the release and the paper)
  lowres     the low-resolution path only: backbone + semantic branch (``lr_branch``); the
             high-resolution and fusion branches keep their weights
  bn_affine  only the BatchNorm scales and biases (a per-channel re-colouring of features)
"""

from __future__ import annotations

import dataclasses
from typing import Dict

import jax
import optax
from flax import traverse_util

from modnet_jax.losses import soc_loss, temporal_consistency
from modnet_jax.steps import normalize_image

ADAPT = ("all", "lowres", "bn_affine")


@dataclasses.dataclass(frozen=True)
class Recipe:
    lr: float = 1e-5
    adapt: str = "all"
    refresh_every: int = 0
    temporal_weight: float = 0.0
    pairs: bool = False


RECIPES: Dict[str, Recipe] = {
    "release": Recipe(),                       # Adam 1e-5, batch 1, everything adapts
    "paper": Recipe(lr=1e-4),                  # the paper's Adam 1e-4
    "lowres": Recipe(adapt="lowres"),
    "lowres_1e-4": Recipe(lr=1e-4, adapt="lowres"),
    "bn_affine": Recipe(lr=1e-4, adapt="bn_affine"),
    "bn_affine_1e-3": Recipe(lr=1e-3, adapt="bn_affine"),
    "refresh10": Recipe(refresh_every=10),
    "temporal": Recipe(temporal_weight=10.0),  # video: + neighbouring-frame consistency
    "pairs": Recipe(pairs=True),               # video control: the same pairs, no term
}


def adapt_mask(params, adapt: str = "all"):
    """A pytree of bools over ``params``: True where the parameter adapts."""
    if adapt not in ADAPT:
        raise ValueError(f"soc.adapt must be one of {ADAPT}, got {adapt!r}")
    flat = traverse_util.flatten_dict(dict(params))
    bn = {p[:-1] for p in flat if p[-1] == "scale"}
    if adapt == "all":
        keep = {p: True for p in flat}
    elif adapt == "lowres":
        keep = {p: p[0] in ("backbone", "lr_branch") for p in flat}
    else:
        keep = {p: p[:-1] in bn for p in flat}
    return traverse_util.unflatten_dict(keep)


def restrict(tx: optax.GradientTransformation, adapt: str = "all"
             ) -> optax.GradientTransformation:
    """``tx`` on the parameters that adapt (``adapt_mask``); the others get zero updates
    (and no optimiser state). ``adapt="all"`` returns ``tx`` itself."""
    if adapt not in ADAPT:
        raise ValueError(f"soc.adapt must be one of {ADAPT}, got {adapt!r}")
    if adapt == "all":
        return tx
    return optax.multi_transform({True: tx, False: optax.set_to_zero()},
                                 lambda p: adapt_mask(p, adapt))


def adapt_weights(params, adapt: str = "all"):
    """``adapt_mask`` as float arrays shaped like ``params`` (1.0 adapts, 0.0 stays)."""
    return jax.tree.map(lambda keep, p: jax.numpy.full(jax.numpy.shape(p), float(keep),
                                                       jax.numpy.float32),
                        adapt_mask(params, adapt), params)


def make_soc_update(model):
    """(init(recipe, params) -> (opt_state, mask), jitted update(params, opt_state,
    batch_stats, frozen, image_u8, mask, temporal_weight) -> (params, opt_state, terms)): one
    SOC step on one device. The learning rate lives in the optimiser state and what adapts in
    ``mask`` (1.0 / 0.0 per parameter, multiplying Adam's update, which for an element-wise
    optimiser is ``restrict``'s result), so every recipe runs the same compiled program
    (one per batch size)."""
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-5, b1=0.9, b2=0.99)

    def init(recipe: "Recipe", params):
        opt_state = tx.init(params)
        opt_state.hyperparams["learning_rate"] = jax.numpy.asarray(recipe.lr, jax.numpy.float32)
        return opt_state, adapt_weights(params, recipe.adapt)

    @jax.jit
    def update(params, opt_state, stats, frozen, image_u8, mask, temporal_weight):
        image = normalize_image(image_u8)
        _, frozen_detail, frozen_matte = model.apply(jax.lax.stop_gradient(frozen), image,
                                                     train=False)

        def loss_fn(p):
            sem, det, matte = model.apply({"params": p, "batch_stats": stats}, image,
                                          train=True, freeze_bn=True)
            terms = soc_loss(sem, det, matte, frozen_detail, frozen_matte)
            terms["temporal"] = temporal_consistency(matte, image)
            terms["total"] = terms["total"] + temporal_weight * terms["temporal"]
            return terms["total"], terms

        grads, terms = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u, m: u * m, updates, mask)
        return optax.apply_updates(params, updates), opt_state, terms

    return init, update
