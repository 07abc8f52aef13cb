"""Random variables of a MODNet's exact structure, drawn on the host (numpy) from its abstract
shapes: nothing is compiled, so tests, benchmarks and examples get a model of the right shapes
at once (``create_model``'s release initialisation compiles ``init``). The weights are noise;
what runs on them is plumbing, speed or a layout, never quality."""

from __future__ import annotations

from typing import Any, Dict

import jax
import numpy as np

from modnet_jax.models.build import model_from_config


def random_variables(seed: int = 0, cfg: Any = None) -> Dict[str, dict]:
    """Random ``{"params", "batch_stats"}`` (numpy float32) of ``model_from_config(cfg)``.

    Kernels uniform(+-sqrt(6/fan_in)), biases N(0, 0.1), BatchNorm scales U(0.5, 1.5), running
    means N(0, 0.1), running variances U(0.5, 1.5): every layer keeps its activations in a
    sane range, so the outputs are neither constant nor saturated.
    """
    model = model_from_config(cfg)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), np.float32)
    template = jax.eval_shape(model.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            bound = np.sqrt(6.0 / np.prod(shape[:-1]))
            value = rng.uniform(-bound, bound, shape)
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        return value.astype(np.float32)

    tree = jax.tree_util.tree_map_with_path(draw, dict(template))
    return {"params": tree["params"], "batch_stats": tree["batch_stats"]}
