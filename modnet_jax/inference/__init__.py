"""Inference: ``MattingEngine`` (photos, folders, video files and live sources on the device),
image and video files, and the release's processing on the host (``reference``), which the
engine is tested against. docs/inference.md follows the data from file to output."""

from modnet_jax.inference.checkpoint import CheckpointError, check_variables, load_checked_variables
from modnet_jax.inference.engine import Matted, MattingEngine, VideoRun
from modnet_jax.inference.images import (InputError, composite, cutout, parse_colour, read_image,
                                         read_matte, write_image)
from modnet_jax.inference.reference import (OneFrameDelay, area_resize, model_input_size,
                                            one_frame_delay, postprocess, preprocess)
from modnet_jax.inference.video import count_frames, process_video

__all__ = ["CheckpointError", "InputError", "Matted", "MattingEngine", "OneFrameDelay",
           "VideoRun", "area_resize", "check_variables", "composite", "count_frames", "cutout",
           "load_checked_variables", "model_input_size", "one_frame_delay", "parse_colour",
           "postprocess", "preprocess", "process_video", "read_image", "read_matte",
           "write_image"]
