"""Inference: ``MattingEngine`` (photos, folders, video files and live sources on the device)
and the image and video files around it. docs/inference.md follows the data from file to
output."""

import importlib

# Imported on first use (PEP 562), so that ``modnet_jax.inference.options`` and the command
# lines' --help do not pay for JAX: name -> the submodule that defines it.
_EXPORTS = {
    "CheckpointError": "checkpoint", "check_variables": "checkpoint",
    "load_checked_variables": "checkpoint",
    "default_cache_dir": "options", "setup_compile_cache": "cli",
    "MattingEngine": "engine", "Matted": "engine", "VideoRun": "engine",
    "InputError": "images", "composite": "images", "cutout": "images",
    "parse_colour": "images", "read_image": "images", "read_matte": "images",
    "write_image": "images",
    "model_input_size": "sizes",
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


__all__ = sorted(_EXPORTS)
