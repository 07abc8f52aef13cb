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

from modnet_jax.data.config import LAYOUTS, default_data_config, resolve_config
from modnet_jax.data.pipeline import (
    DatasetSummary,
    SplitPlan,
    make_eval_iterator,
    make_train_iterator,
    make_unlabelled_iterator,
    scan_split,
    validate_dataset,
)
from modnet_jax.data.report import DatasetError, UnusableFile
from modnet_jax.data.synthetic import generate_background, generate_portrait, write_synthetic_folder
from modnet_jax.imaging.compositing import composite, estimate_foreground
from modnet_jax.imaging.trimap import make_trimap

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
