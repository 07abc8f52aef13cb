"""Split a CPU into several JAX devices for video and photo inference (``predict`` and
``evaluate`` do it before JAX starts).

Why: on XLA:CPU one MODNet call does not keep every core busy (the MobileNetV2 encoder hardly
runs faster on two cores than on one), and two calls on one device run one after the other.
Split into two host devices, the engine runs a video batch as one program whose frames are
shared between the devices, each computing its own frames at the same time. On our 2-core
machine a 512x896 frame took 214 ms of throughput instead of 262 ms (3 and 4 devices: 223
and 240 ms), with the same mattes (each device's share equals running its frames alone).
Photos on canvases (``models/canvas.py``) are shared the same way, one photo per device;
live streams, which want the lowest latency per frame, stay on the first device.

``XLA_FLAGS --xla_force_host_platform_device_count`` is only read when JAX's backends start,
so the split must be asked for before anything uses JAX; a count already in ``XLA_FLAGS`` (the
user's choice) is left alone.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, List, Optional

FLAG = "--xla_force_host_platform_device_count"
LOGGER = logging.getLogger(__name__)


def auto_count() -> int:
    """The split used by default: 2 devices when there are at least 2 cores (measured best on
    2 cores; not measured on larger machines, so it is not raised there), else 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def split_host_cpu(count: Optional[int] = None) -> int:
    """Ask for ``count`` host CPU devices (None: ``auto_count()``); returns the count in effect
    (the one already in ``XLA_FLAGS`` if there is one, 1 if JAX has already started)."""
    current = os.environ.get("XLA_FLAGS", "")
    match = re.search(FLAG + r"=(\d+)", current)
    if match:
        return int(match.group(1))
    count = auto_count() if count is None else int(count)
    if count <= 1:
        return 1
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        LOGGER.warning("JAX already started: %s=%d not applied", FLAG, count)
        return 1
    os.environ["XLA_FLAGS"] = f"{current} {FLAG}={count}".strip()
    return count


def video_devices() -> List[Any]:
    """The devices a video is split over: every local device of JAX's default backend (the
    host CPU devices on a CPU, every local GPU on a GPU machine)."""
    import jax

    return list(jax.local_devices())


ACCELERATOR_VIDEO_BATCH = 8


def default_video_batch(devices) -> int:
    """Video frames per model call: one per device on a CPU (larger batches were slower per
    frame there: 367 vs 262 ms at 512x896, batch 4 vs 1), ``ACCELERATOR_VIDEO_BATCH`` per
    call on a GPU/TPU, where batching is what fills the chip."""
    devices = list(devices)
    return len(devices) if devices[0].platform == "cpu" else ACCELERATOR_VIDEO_BATCH
