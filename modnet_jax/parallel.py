"""The one place that knows how steps are spread over devices (today: ``jax.pmap``).

Steps are written per device against ``AXIS`` (BatchNorm statistics and gradients are averaged
over it). Host arrays go in with ``shard_batch`` (leading axis split over local devices) and
``replicate`` (state copied to every local device). With several processes
(``jax.distributed``), each host feeds its own shard of the global batch and ``AXIS`` spans
every device of every host, so the steps run unchanged. Moving to ``jax.shard_map`` later only
changes this file.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def local_devices(num_devices: Optional[int] = None) -> list:
    devices = jax.local_devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"asked for {num_devices} devices, {len(devices)} are available")
        devices = devices[:num_devices]
    return devices


def _sharding(devices: Sequence[Any]) -> NamedSharding:
    return NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec(AXIS))


def data_parallel(fn: Callable, devices: Sequence[Any], donate_argnums=(),
                  in_axes: Any = 0) -> Callable:
    """``fn`` (written per device, collectives over ``AXIS``) run on ``devices`` in parallel."""
    return jax.pmap(fn, axis_name=AXIS, devices=list(devices), donate_argnums=donate_argnums,
                    in_axes=in_axes)


def replicate(tree: Any, devices: Sequence[Any]) -> Any:
    """Copy every leaf to each device: leading axis ``len(devices)``."""
    n, sharding = len(devices), _sharding(devices)
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding),
        tree)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of a replicated tree (on host-addressable arrays)."""
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def shard_batch(batch: Any, devices: Sequence[Any]) -> Any:
    """Split the leading (per-host batch) axis of every array over ``devices``."""
    n, sharding = len(devices), _sharding(devices)

    def split(x):
        x = np.asarray(x)
        if x.shape[0] % n:
            raise ValueError(f"per-host batch {x.shape[0]} is not divisible by the {n} local "
                             f"devices; choose a batch size that is a multiple of {n}")
        return jax.device_put(x.reshape((n, x.shape[0] // n) + x.shape[1:]), sharding)

    return jax.tree_util.tree_map(split, batch)
