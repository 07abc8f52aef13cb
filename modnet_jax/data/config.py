"""The data configuration: every field, its default and its meaning, in one place.

`default_data_config()` returns an `ml_collections.ConfigDict`; the pipeline accepts that, a
plain dict of overrides, or None. Unknown field names are rejected (a typo would otherwise
silently fall back to a default).

Layouts (`layout`, `val_layout`) name how files sit under `root`; the names, their folders
and the `p3m` alias are listed once, in `modnet_jax.imaging.layouts` (shared with
`evaluate --layout`). `fg_alpha` layouts are composited onto `bg_root` backgrounds,
`image_matte` ones used as they are (or re-composited with `recomposite=True`), and
`unlabelled` reads images and videos (every `video_frame_stride`-th frame) for SOC.

Throughput (benchmarks/RESULTS.md, "Data pipeline"): decoding dominates a sample's CPU
cost. `sample_cache_mb` keeps decoded foregrounds + mattes in memory per process, so a fg
set that fits is decoded once per worker and never again (samples unchanged, bit for bit);
`bg_cache_mb` does the same for backgrounds. Folders prepared with
`python -m modnet_jax.data.prepare --format raw` hold .npy arrays that are memory-mapped
instead of decoded (any layout accepts them; extension .npy); `--format arrayrecord`
writes one ArrayRecord file read with `layout=prepared` (data/records.py; a prepared
`bg_root` is recognised by its prepared.json). `augment_on_device` moves the per-pixel
recipe into the train step (docs/data.md, "Feeding the accelerators"). `malloc_tuning` keeps image
buffers allocated between samples (see pipeline.tune_malloc). Float fields (MiB) take ints.
"""

from __future__ import annotations

import ml_collections

from modnet_jax.imaging.trimap import BG_THRESHOLD, FG_THRESHOLD
from modnet_jax.imaging.layouts import LAYOUTS, LayoutSpec, canonical_layout, layout_spec

__all__ = ["LAYOUTS", "LayoutSpec", "default_data_config", "layout_spec", "resolve_config"]

_DEFAULTS = dict(
    # --- what to read -------------------------------------------------------------------
    layout="synthetic",        # see the module docstring; unknown names raise ValueError
    root=None,                 # folder holding the layout's subfolders (unused for synthetic)
    subdirs=None,              # (first, second) subfolder names, overriding the layout's
    bg_root=None,              # backgrounds (any depth of image files, e.g. COCO, BG-20k/train);
                               # None -> procedural backgrounds from synthetic.py
    recomposite=False,         # image_matte layouts: estimate fg and composite onto new bgs
    unlabelled_root=None,      # SOC images/videos; None -> root when layout is unlabelled,
                               # else the images of the labelled layout (labels dropped)
    video_frame_stride=5,      # use every n-th frame of each video (neighbours are redundant)
    verify_files=True,         # start-up header/size/truncation scan of every file (cheap)
    max_decode_retries=8,      # a sample that fails at decode time is replaced by the next one
    reduced_decoding=True,     # decode a JPEG (and its matte) at 1/2, 1/4 or 1/8 size when its
                               # short side stays >= image_size * max(scale_range) (so the
                               # smallest crop is never enlarged); False: always full size
    sample_cache_mb=0.0,       # > 0: keep decoded samples (fg + alpha, or image + alpha) in
                               # memory, up to this many MiB per process (each Grain worker
                               # has its own: total = training processes x max(1, workers) x
                               # this; the validation split is never cached), so later
                               # epochs skip decoding; bit-identical
                               # samples. Sized to hold the whole fg set it removes all fg
                               # decoding in steady state (1080p subject: ~8 MiB). 0: off
    bg_cache_mb=0.0,           # the same for backgrounds (useful when they are few; a large
                               # background set is better served by `prepare --format raw`)
    # --- synthetic data -----------------------------------------------------------------
    synthetic_size=2048,       # number of synthetic samples (train + validation)
    synthetic_seed=0,          # content seed (independent of the training seed)
    # --- validation split ---------------------------------------------------------------
    val_root=None,             # separate held-out set; None -> hold out val_fraction of root
    val_layout=None,           # layout of val_root (None -> `layout`)
    val_fraction=0.05,         # share of the training data held out for evaluation
    split_seed=0,              # which files are held out (fixed, so the split never drifts)
    # --- trimap (docs/data.md, "Trimaps") ----------------------------------------------
    trimap_kernel_range=(10.0, 20.0),  # kernel k ~ (image_size / 256) * U(lo, hi) pixels
    trimap_fg_threshold=FG_THRESHOLD,  # fg = alpha >= this (0.9, as evaluation uses)
    trimap_bg_threshold=BG_THRESHOLD,  # not_bg = alpha > this
    # --- augmentation (training only; evaluation is resize + centre crop) ----------------
    augment=True,              # master switch
    scale_range=(1.0, 1.5),    # crop side = short side / s (s > 1 zooms in)
    subject_bias=0.8,          # probability that the crop is centred on the subject
    flip=True,                 # random horizontal flip
    color_jitter=True,         # jitter of the foreground (whole image for as-is image_matte)
    hue_degrees=10.0,
    saturation_range=(0.7, 1.3),
    value_range=(0.7, 1.3),
    augment_on_device=False,   # training: the host only crops (uint8, at precrop_size) and
                               # draws; resize, flip, jitter, compositing and trimap run in the
                               # train step (modnet_jax/device_augment.py, docs/data.md); not with
                               # recomposite. Validation batches are always made on the host
    precrop_size=0,            # side of the crops handed to the device; 0: image_size x
                               # max(scale_range) (larger crops are shrunk to it on the host)
    # --- loading ------------------------------------------------------------------------
    num_workers=0,             # > 0: Grain multiprocess workers (needs a __main__ guard)
    read_threads=2,            # in-process prefetch threads (each builds whole batches)
    prefetch_batches=2,        # batches buffered ahead (per worker with num_workers > 0)
    malloc_tuning=True,        # glibc: keep freed image buffers for reuse instead of unmapping
                               # them (pipeline.tune_malloc; +11% samples per CPU-second on
                               # the raw + cache path), in the processes that build samples:
                               # the workers, or this one with num_workers=0
)


# Fields whose default is None but which a command line sets (``--config.data.root=/data``):
# ml_collections can only override a None field declared as a typed placeholder.
_OPTIONAL_TYPES = dict(root=str, subdirs=tuple, bg_root=str, unlabelled_root=str, val_root=str,
                       val_layout=str)


def default_data_config() -> ml_collections.ConfigDict:
    """All data fields with their defaults (see the comments in `_DEFAULTS`)."""
    fields = dict(_DEFAULTS)
    for name, kind in _OPTIONAL_TYPES.items():
        if fields[name] is None:
            fields[name] = ml_collections.config_dict.placeholder(kind)
    return ml_collections.ConfigDict(fields)


def resolve_config(data_cfg) -> ml_collections.ConfigDict:
    """Defaults overridden by `data_cfg` (ConfigDict, dict or None), checked and locked."""
    if data_cfg is None:
        overrides = {}
    elif isinstance(data_cfg, ml_collections.ConfigDict):
        overrides = data_cfg.to_dict()
    else:
        overrides = dict(data_cfg)
    unknown = sorted(set(overrides) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown data config field(s) {unknown}; known: {sorted(_DEFAULTS)}")
    merged = dict(_DEFAULTS)
    merged.update(overrides)
    merged["layout"] = canonical_layout(merged["layout"])
    if merged["val_layout"] is not None:
        merged["val_layout"] = canonical_layout(merged["val_layout"])
    if not 0.0 <= float(merged["val_fraction"]) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {merged['val_fraction']}")
    for name in ("sample_cache_mb", "bg_cache_mb"):
        if float(merged[name]) < 0:
            raise ValueError(f"{name} must be >= 0 (0 = no cache), got {merged[name]}")
    if bool(merged["augment_on_device"]) and bool(merged["recomposite"]):
        raise ValueError("augment_on_device does not support recomposite (its foreground "
                         "estimate runs on the host): set one of them False")
    if int(merged["precrop_size"]) < 0:
        raise ValueError(f"precrop_size must be >= 0 (0 = automatic), got {merged['precrop_size']}")
    if int(merged["num_workers"]) < 0:
        raise ValueError(f"num_workers must be >= 0, got {merged['num_workers']}")
    cfg = ml_collections.ConfigDict(merged)
    cfg.lock()
    return cfg
