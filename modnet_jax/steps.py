"""Train and eval steps: pure functions of (state, batch), data-parallel over local devices.

Each ``build_*`` returns a compiled, device-parallel callable (see ``modnet_jax.parallel``):

* ``supervised_step(state, batch) -> (state, metrics)``: the state is donated.
* ``soc_step(state, frozen, batch) -> (state, metrics)``: ``frozen`` is M' (a copy of
  ``{"params", "batch_stats"}`` taken when adaptation starts), never donated nor updated; M
  runs with BatchNorm frozen, so ``state.batch_stats`` stays bit-identical.
* ``eval_step(variables, batch) -> (matte, metrics)``.

Inputs are replicated states and batches sharded with ``parallel.shard_batch``. Batches are
the pipeline's uint8 dicts (``image`` [B,H,W,3], ``alpha`` [B,H,W,1] 0..255, ``trimap``
[B,H,W,1] in {0,128,255}, optional ``fg``/``bg``), converted to floats here on the device;
send only the entries a step reads (``select`` with ``supervised_keys``, ``SOC_KEYS``,
``EVAL_KEYS``). Built with a ``device_recipe`` (``device_augment.DeviceRecipe``), the
training steps take the device path's batches instead (uint8 crops + draws, ``DEVICE_KEYS``)
and make the samples first, inside the same compiled step (``augment_batch``).
The model must be built with ``axis_name=parallel.AXIS`` so BatchNorm averages its statistics
over the global batch.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence

import jax
import jax.numpy as jnp
import optax

from modnet_jax.device_augment import DEVICE_KEYS, augment_batch
from modnet_jax.losses import soc_loss, supervised_loss
from modnet_jax.parallel import AXIS, data_parallel


def normalize_image(image_u8):
    """uint8 RGB [..., 3] -> float32 in [-1, 1], as the release's (x / 255 - 0.5) / 0.5."""
    return (image_u8.astype(jnp.float32) / 255.0 - 0.5) / 0.5


def decode_trimap(trimap_u8):
    """uint8 trimap {0, 128, 255} -> float32 exactly {0, 0.5, 1}."""
    t = trimap_u8.astype(jnp.float32)
    return jnp.where(t > 191.0, 1.0, jnp.where(t > 63.0, 0.5, 0.0))


SOC_KEYS = ("image",)
EVAL_KEYS = ("image", "alpha")


def supervised_keys(loss_variant: str = "release", device_recipe=None) -> tuple:
    """The batch entries a supervised step reads: ``fg``/``bg`` only for the paper variant
    (its compositional term); the release loss never reads them, so they need not travel.
    With a device recipe: the crops and draws."""
    if device_recipe is not None:
        return DEVICE_KEYS
    return ("image", "alpha", "trimap") + (("fg", "bg") if loss_variant == "paper" else ())


def soc_keys(device_recipe=None) -> tuple:
    return SOC_KEYS if device_recipe is None else DEVICE_KEYS


def _augmented(batch, device_recipe):
    """The batch as the host path makes it: itself, or the device stage's output."""
    return batch if device_recipe is None else augment_batch(batch, device_recipe)


def select(batch: Dict[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
    """The entries of a host batch that a step needs (those present)."""
    return {k: batch[k] for k in keys if k in batch}


def device_batch(batch: Dict[str, Any]) -> Dict[str, jax.Array]:
    """The float batch the losses see (done on device: uint8 travels, floats do not)."""
    out = {"image": normalize_image(batch["image"])}
    if "alpha" in batch:
        out["alpha"] = batch["alpha"].astype(jnp.float32) / 255.0
    if "trimap" in batch:
        out["trimap"] = decode_trimap(batch["trimap"])
    for key in ("fg", "bg"):
        if key in batch:
            out[key] = batch[key].astype(jnp.float32) / 255.0
    return out


def _check_axis(model):
    if getattr(model, "axis_name", None) != AXIS:
        raise ValueError(f"build the model with axis_name={AXIS!r} (model_from_config(cfg, "
                         f"axis_name=parallel.AXIS)) so BatchNorm syncs over devices")


def supervised_step_fn(model, loss_variant: str = "release", device_recipe=None) -> Callable:
    """The per-device supervised update (un-mapped; ``build_supervised_step`` maps it)."""

    def step(state, batch):
        b = device_batch(_augmented(batch, device_recipe))

        def loss_fn(params):
            (sem, det, matte), updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats}, b["image"], train=True,
                mutable=["batch_stats"])
            terms = supervised_loss(sem, det, matte, b["image"], b["trimap"], b["alpha"],
                                    variant=loss_variant, fg=b.get("fg"), bg=b.get("bg"))
            return terms["total"], (terms, updates["batch_stats"])

        grads, (terms, new_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
        grads = jax.lax.pmean(grads, AXIS)
        metrics = jax.lax.pmean(terms, AXIS)
        metrics["grad_norm"] = optax.tree.norm(grads)
        return state.apply_gradients(grads=grads, batch_stats=new_stats), metrics

    return step


def soc_step_fn(model, device_recipe=None) -> Callable:
    """The per-device SOC update (un-mapped)."""

    def step(state, frozen, batch):
        image = normalize_image(_augmented(batch, device_recipe)["image"])
        # M' in eval mode; its outputs are constants for the update.
        _, frozen_detail, frozen_matte = model.apply(jax.lax.stop_gradient(frozen), image,
                                                     train=False)

        def loss_fn(params):
            sem, det, matte = model.apply({"params": params, "batch_stats": state.batch_stats},
                                          image, train=True, freeze_bn=True)
            terms = soc_loss(sem, det, matte, frozen_detail, frozen_matte, axis_name=AXIS)
            return terms["total"], terms

        grads, terms = jax.grad(loss_fn, has_aux=True)(state.params)
        grads = jax.lax.pmean(grads, AXIS)
        metrics = jax.lax.pmean(terms, AXIS)
        metrics["grad_norm"] = optax.tree.norm(grads)
        return state.apply_gradients(grads=grads), metrics

    return step


def eval_step_fn(model) -> Callable:
    """Per-device inference + MSE/MAD against ``alpha`` (when the batch has it)."""

    def step(variables, batch):
        b = device_batch(batch)
        _, _, matte = model.apply(variables, b["image"], train=False, inference=True)
        metrics = {}
        if "alpha" in b:
            err = matte - b["alpha"]
            metrics = jax.lax.pmean({"mse": jnp.mean(jnp.square(err)),
                                     "mad": jnp.mean(jnp.abs(err))}, AXIS)
        return matte, metrics

    return step


def build_supervised_step(model, devices: Sequence[Any], loss_variant: str = "release",
                          device_recipe=None):
    _check_axis(model)
    return data_parallel(supervised_step_fn(model, loss_variant, device_recipe), devices,
                         donate_argnums=(0,))


def build_soc_step(model, devices: Sequence[Any], device_recipe=None):
    _check_axis(model)
    return data_parallel(soc_step_fn(model, device_recipe), devices, donate_argnums=(0,))


def build_eval_step(model, devices: Sequence[Any]):
    _check_axis(model)
    return data_parallel(eval_step_fn(model), devices)
