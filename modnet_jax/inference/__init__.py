"""Inference: ``MattingEngine`` (photos, folders, video on the device), the release's resize rule,
One-Frame Delay, image / video files, the persistent compile cache.

``preprocess.preprocess`` / ``postprocess`` and ``ofd.OneFrameDelay`` are the host (numpy)
definitions of the release's pre-processing and of OFD; the engine computes the same on the
device and is tested against them.
"""

import importlib

# Imported on first use (PEP 562), so that ``modnet_jax.inference.options`` and the command
# lines' --help do not pay for JAX: name -> the submodule that defines it. (The host
# ``preprocess`` function is ``modnet_jax.inference.preprocess.preprocess``: the package
# attribute of that name is its module.)
_EXPORTS = {
    "CheckpointError": "checkpoint", "check_variables": "checkpoint",
    "load_checked_variables": "checkpoint",
    "default_cache_dir": "compile_cache", "setup_compile_cache": "compile_cache",
    "MattingEngine": "engine", "Matted": "engine",
    "InputError": "images", "composite": "images", "cutout": "images",
    "parse_colour": "images", "read_image": "images", "read_matte": "images",
    "write_image": "images",
    "OneFrameDelay": "ofd", "one_frame_delay": "ofd",
    "area_resize": "preprocess", "model_input_size": "preprocess",
    "postprocess": "preprocess",
    "count_frames": "video", "process_video": "video",
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


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
    "process_video",
    "read_image",
    "read_matte",
    "setup_compile_cache",
    "write_image",
]
