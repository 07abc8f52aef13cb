"""The one place that knows how steps are spread over devices (today: ``jax.pmap``).

Steps are written per device against ``AXIS`` (BatchNorm statistics and gradients are averaged
over it). Host arrays go in with ``shard_batch`` (leading axis split over local devices) and
``replicate`` (state copied to every local device). Callers that should not know this layout
(the training loop) use ``put_state`` / ``get_state`` / ``put_batch`` / ``get_rows``, which
move data only with explicit ``jax.device_put`` / ``jax.device_get`` (so they pass under
``jax.transfer_guard("disallow")``). With several processes
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


def participating_devices(devices: Sequence[Any]) -> list:
    """Every device of every process that takes part when each process uses ``devices`` (its
    first ``len(devices)`` local devices). ``jax.pmap`` wants this global list, the same on all
    processes: given only the local devices, its collectives would stay within each host."""
    devices = list(devices)
    if jax.process_count() == 1:
        return devices
    if devices != jax.local_devices()[:len(devices)]:
        raise ValueError("with several processes, each must use its first N local devices")
    by_process = {}
    for d in jax.devices():
        by_process.setdefault(d.process_index, []).append(d)
    return [d for p in sorted(by_process) for d in by_process[p][:len(devices)]]


_CONNECTS = [0]


def connect(devices: Sequence[Any], timeout_s: int = 1800) -> None:
    """With several processes: wait for all of them, then run one small collective on each
    device group that training uses, so the collective backend connects them while the
    processes are in step. Call it on every process; no-op with one process.

    Why: on CPU, Gloo connects a device group at its first collective and gives a late peer
    only 30 s (later collectives wait as long as needed), while a process can be minutes late
    when it compiles what another found in the compilation cache. The groups: the step's
    devices (``data_parallel``), and one device per process (Orbax's barriers and
    broadcasts, ``process_allgather``)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils
    from orbax.checkpoint import multihost  # a barrier through the coordinator, not devices

    _CONNECTS[0] += 1
    name = f"modnet_jax_connect_{_CONNECTS[0]}"
    multihost.get_barrier_sync_fn()(key=name, timeout_ms=timeout_s * 1000)
    total = data_parallel(lambda x: jax.lax.psum(x, AXIS), devices)(
        replicate(np.ones((), np.int32), devices))
    expected = len(devices) * jax.process_count()
    if int(unreplicate(total)) != expected:
        raise RuntimeError(f"device collective over {expected} devices returned {total}")
    multihost_utils.sync_global_devices(name)
    multihost_utils.broadcast_one_to_all(np.zeros((), np.int32))


def data_parallel(fn: Callable, devices: Sequence[Any], donate_argnums=(),
                  in_axes: Any = 0) -> Callable:
    """``fn`` (written per device, collectives over ``AXIS``) run on ``devices`` in parallel
    (and on the same number of devices of every other process, under ``jax.distributed``)."""
    return jax.pmap(fn, axis_name=AXIS, devices=participating_devices(devices),
                    donate_argnums=donate_argnums, in_axes=in_axes)


def replicate(tree: Any, devices: Sequence[Any]) -> Any:
    """Copy every leaf to each device: leading axis ``len(devices)``."""
    n, sharding = len(devices), _sharding(devices)
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding),
        tree)


def unreplicate(tree: Any) -> Any:
    """The first local device's copy of a replicated tree. Reads that device's buffer only,
    so no multi-device program runs: indexing the sharded output (``x[0]``) compiles one, and
    under ``jax.distributed`` on CPU (collectives through Gloo) we saw that hang at the first
    checkpoint of a 2-process run."""
    return jax.tree_util.tree_map(lambda x: x.addressable_data(0)[0], tree)


def host_local(tree: Any) -> Any:
    """This process's rows of a device-parallel output, as numpy (leading axis: local
    devices); the whole output when there is one process."""

    def local(x):
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        return np.concatenate(jax.device_get([s.data for s in shards]))

    return jax.tree_util.tree_map(local, tree)


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


# ------------------------------------------------------------------ layout-free host <-> device


def put_state(tree: Any, devices: Sequence[Any]) -> Any:
    """Host tree (params, optimiser state, metrics...) -> the form the steps take it in."""
    return replicate(tree, devices)


def get_state(tree: Any) -> Any:
    """A state (or metrics) tree produced by the steps -> one numpy copy on the host.

    One explicit transfer of the first local device's buffers (``unreplicate`` would index
    them on the device first, an implicit host->device transfer of the index)."""
    first = jax.tree_util.tree_map(lambda x: x.addressable_data(0), tree)
    return jax.tree_util.tree_map(lambda x: x[0], jax.device_get(first))


def put_batch(batch: Any, devices: Sequence[Any]) -> Any:
    """A host batch (leading axis: this host's samples) -> the form the steps take it in."""
    return shard_batch(batch, devices)


def get_rows(tree: Any) -> Any:
    """A per-sample output of a step -> numpy with this host's samples on the leading axis."""
    return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), host_local(tree))
