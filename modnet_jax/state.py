"""Train state (params + BatchNorm statistics + optimiser state + step) and optimisers.

Optimiser config fields (``config.optimizer``, an ml_collections ConfigDict or a mapping):

  name:                  "sgd" (supervised recipe) or "adam" (SOC recipe)
  learning_rate:         base learning rate (0.01 supervised, 1e-5 SOC as released)
  momentum:              SGD momentum (0.9)
  b1, b2:                Adam betas ((0.9, 0.99) for SOC)
  lr_decay_every_epochs: multiply the lr by ``lr_decay_factor`` every this many epochs
                         (10 in the recipe; 0 = constant lr)
  lr_decay_factor:       0.1
  grad_clip_norm:        global-norm clipping (0 = off; the release does not clip)
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import optax
from flax import struct
from flax.training import train_state

OPTIMIZER_DEFAULTS = dict(
    name="sgd",
    learning_rate=0.01,
    momentum=0.9,
    b1=0.9,
    b2=0.99,
    lr_decay_every_epochs=10,
    lr_decay_factor=0.1,
    grad_clip_norm=0.0,
)


class TrainState(train_state.TrainState):
    """flax TrainState plus the BatchNorm running statistics (``batch_stats`` collection)."""

    batch_stats: Any = struct.field(default_factory=dict)

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


def _cfg(cfg: Any) -> dict:
    merged = dict(OPTIMIZER_DEFAULTS)
    if cfg is not None:
        given = dict(cfg) if isinstance(cfg, Mapping) else dict(cfg.items())
        unknown = set(given) - set(OPTIMIZER_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown optimizer fields {sorted(unknown)}; "
                             f"known: {sorted(OPTIMIZER_DEFAULTS)}")
        merged.update(given)
    return merged


def learning_rate_schedule(cfg: Any, steps_per_epoch: int) -> optax.Schedule:
    """Step decay: lr * factor ** (epoch // lr_decay_every_epochs), epoch = step // spe."""
    c = _cfg(cfg)
    base = float(c["learning_rate"])
    every = int(c["lr_decay_every_epochs"])
    if every <= 0:
        return optax.constant_schedule(base)
    return optax.exponential_decay(base, transition_steps=every * max(int(steps_per_epoch), 1),
                                   decay_rate=float(c["lr_decay_factor"]), staircase=True)


def make_optimizer(cfg: Any, steps_per_epoch: int) -> optax.GradientTransformation:
    c = _cfg(cfg)
    lr = learning_rate_schedule(c, steps_per_epoch)
    if c["name"] == "sgd":
        opt = optax.sgd(lr, momentum=float(c["momentum"]) or None)
    elif c["name"] == "adam":
        opt = optax.adam(lr, b1=float(c["b1"]), b2=float(c["b2"]))
    else:
        raise ValueError(f"optimizer.name must be 'sgd' or 'adam', got {c['name']!r}")
    if float(c["grad_clip_norm"]) > 0:
        opt = optax.chain(optax.clip_by_global_norm(float(c["grad_clip_norm"])), opt)
    return opt


def create_train_state(model, variables: Mapping, tx: optax.GradientTransformation) -> TrainState:
    """A TrainState at step 0 from a model's ``{"params", "batch_stats"}``."""
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             batch_stats=variables.get("batch_stats", {}), tx=tx)


def frozen_copy(state: TrainState) -> dict:
    """SOC's M': a constant copy of the current model variables (params + batch_stats)."""
    return jax.tree_util.tree_map(lambda x: jax.lax.stop_gradient(x.copy()), state.variables)
