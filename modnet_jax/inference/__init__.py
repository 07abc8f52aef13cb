"""Inference: ``MattingEngine`` (photos, folders, video on the device), the release's resize rule,
One-Frame Delay, image / video files, the persistent compile cache.

``preprocess.preprocess`` / ``postprocess`` and ``ofd.OneFrameDelay`` are the host (numpy)
definitions of the release's pre-processing and of OFD; the engine computes the same on the
device and is tested against them.
"""

from modnet_jax.inference.checkpoint import (
    CheckpointError,
    check_variables,
    load_checked_variables,
)
from modnet_jax.inference.compile_cache import default_cache_dir, setup_compile_cache
from modnet_jax.inference.engine import MattingEngine, Matted
from modnet_jax.inference.images import (
    InputError,
    composite,
    cutout,
    parse_colour,
    read_image,
    read_matte,
    write_image,
)
from modnet_jax.inference.ofd import OneFrameDelay, one_frame_delay
from modnet_jax.inference.preprocess import (
    area_resize,
    model_input_size,
    postprocess,
    preprocess,
)
from modnet_jax.inference.video import count_frames, process_video

__all__ = [
    "CheckpointError",
    "InputError",
    "Matted",
    "MattingEngine",
    "OneFrameDelay",
    "area_resize",
    "check_variables",
    "composite",
    "count_frames",
    "cutout",
    "default_cache_dir",
    "load_checked_variables",
    "model_input_size",
    "one_frame_delay",
    "parse_colour",
    "postprocess",
    "preprocess",
    "process_video",
    "read_image",
    "read_matte",
    "setup_compile_cache",
    "write_image",
]
