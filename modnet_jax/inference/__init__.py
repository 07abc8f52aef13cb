"""Inference: the release's pre-processing, a jit-cached ``Predictor``, One-Frame Delay, video."""

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
from modnet_jax.inference.predictor import (
    CheckpointError,
    Predictor,
    check_variables,
    load_checked_variables,
)
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
    "OneFrameDelay",
    "Predictor",
    "area_resize",
    "check_variables",
    "composite",
    "count_frames",
    "cutout",
    "load_checked_variables",
    "model_input_size",
    "one_frame_delay",
    "parse_colour",
    "postprocess",
    "preprocess",
    "process_video",
    "read_image",
    "read_matte",
    "write_image",
]
