"""Grain data pipelines for MODNet training, evaluation and SOC adaptation.

Only numpy, OpenCV, Grain and ml_collections are used here: never jax (Grain itself imports
it), never the model, never torch. Batches are uint8 numpy arrays; the device normalises.

Modules: config (fields), sources (folder scans, random-access sources), cache (in-memory
decoded records), synthetic (procedural portraits), augment (crops, flips, colour jitter),
recipe (a sample's random draws, shared with the device stage `modnet_jax.device_augment`),
samples (per-sample builders), pipeline (Grain iterators, start-up validation, malloc
tuning), prepare (resized, raw or ArrayRecord copies of a dataset), records and
prepare_records (the ArrayRecord prepared layout), report (once-only messages).
Reading files, layouts, trimaps and compositing live in `modnet_jax.imaging`, shared with
inference and evaluation.
"""

import importlib

# Names exported here, imported on first use (PEP 562) so that ``python -m
# modnet_jax.data.prepare --help`` does not pay for Grain (which imports JAX).
_EXPORTS = {
    "LAYOUTS": "modnet_jax.data.config", "default_data_config": "modnet_jax.data.config",
    "resolve_config": "modnet_jax.data.config",
    "DatasetSummary": "modnet_jax.data.pipeline", "SplitPlan": "modnet_jax.data.pipeline",
    "make_eval_iterator": "modnet_jax.data.pipeline",
    "make_train_iterator": "modnet_jax.data.pipeline",
    "make_unlabelled_iterator": "modnet_jax.data.pipeline",
    "scan_split": "modnet_jax.data.pipeline", "validate_dataset": "modnet_jax.data.pipeline",
    "DatasetError": "modnet_jax.data.report", "UnusableFile": "modnet_jax.data.report",
    "generate_background": "modnet_jax.data.synthetic",
    "generate_portrait": "modnet_jax.data.synthetic",
    "write_synthetic_folder": "modnet_jax.data.synthetic",
    "composite": "modnet_jax.imaging.compositing",
    "estimate_foreground": "modnet_jax.imaging.compositing",
    "make_trimap": "modnet_jax.imaging.trimap",
}


def __getattr__(name):
    if name not in _EXPORTS:  # submodules (``from modnet_jax.data import sources``) import
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "LAYOUTS",
    "DatasetError",
    "DatasetSummary",
    "SplitPlan",
    "UnusableFile",
    "composite",
    "default_data_config",
    "estimate_foreground",
    "generate_background",
    "generate_portrait",
    "make_eval_iterator",
    "make_train_iterator",
    "make_trimap",
    "make_unlabelled_iterator",
    "resolve_config",
    "scan_split",
    "validate_dataset",
    "write_synthetic_folder",
]
