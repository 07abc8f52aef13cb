"""Grain pipelines: training, evaluation and unlabelled (SOC) iterators, and start-up checks.

Training chain (one `MapDataset`, then an iterator):

    range(n) -> seed -> shuffle -> repeat(num_epochs) -> random_map(SampleBuilder)
      -> batch(B, drop_remainder) -> this host's batches -> to_iter_dataset
      [-> mp_prefetch(num_workers)]

* Shuffling happens before `repeat`, and `repeat` reseeds upstream randomness per epoch, so
  every epoch has its own order and its own augmentation draws. (A per-epoch permutation
  looked up by position, cheaper than Grain's `shuffle` on small datasets, was tried and
  reverted: with it, training on 2 processes no longer equalled 1 process,
  tests/test_multihost.py.)
* Batching happens on the `MapDataset`, so a batch is one element with a fixed position:
  worker processes each build whole batches (shipped once through shared memory) and the
  stream is the same for 0, 1 or N workers. The iterator's `get_state()`/`set_state()`
  resume it exactly; a saved state must be restored with the same `num_workers`.
* Batches are dicts of uint8 numpy arrays, NHWC, leading axis = per-host batch size:
  image [B,H,W,3], alpha [B,H,W,1], trimap [B,H,W,1] in {0,128,255}, plus fg and bg
  [B,H,W,3] when the samples are composited. Normalisation happens on the device.
  With ``augment_on_device`` (training streams only) they are the device path's instead:
  crop [B,P,P,4] (colour + alpha; 3 channels unlabelled), bg_crop [B,P,P,3] when
  composited, draws float32 [B,9] (data/recipe.py; ``modnet_jax.device_augment``).
* Sharding: with `shard_count` k, `batch_size` B is the per-host batch and the global
  batch (k*B samples) is the same whatever k is: host i yields rows [i*B, (i+1)*B) of each
  global batch, i.e. batches i, i+k, i+2k, ... of the B-sample stream (and only builds those).
  Concatenating the k hosts' g-th batches gives the g-th batch of the k=1 stream with batch
  k*B, samples and augmentation draws included, so a run's data does not depend on how many
  hosts it uses; every host gets the same number of batches, and iterator states (a position
  in units of global batches) look alike on all hosts.

Multiprocess workers (`num_workers > 0`) start processes that re-import the main module, so
the calling program needs an `if __name__ == "__main__":` guard; Grain also reads absl flags,
which are marked parsed here (defaults) if the program did not parse them. `num_workers=0`
needs neither.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import grain
import numpy as np

from modnet_jax.data import augment, cache, recipe, records, sources
from modnet_jax.data.config import layout_spec, resolve_config
from modnet_jax.data.report import LOGGER, DatasetError, UnusableFile
from modnet_jax.data.samples import SampleBuilder, SampleOptions, stack_batch

_PROCEDURAL_BACKGROUNDS = 4096
_PROBE_SAMPLES = 4


@dataclass(frozen=True)
class DatasetSummary:
    """What start-up found for one split (also logged)."""

    split: str
    layout: str
    root: str | None
    num_samples: int
    keys: tuple
    backgrounds: str
    skipped: tuple = ()
    notes: tuple = ()

    def __str__(self) -> str:
        text = (f"data[{self.split}]: layout {self.layout!r} at {self.root or '(generated)'}: "
                f"{self.num_samples} samples, keys {list(self.keys)}, backgrounds: {self.backgrounds}")
        if self.skipped:
            text += f"; {len(self.skipped)} file(s) skipped (reported above)"
        return text + "".join(f"; {note}" for note in self.notes)


@dataclass
class SplitPlan:
    """One split, scanned and checked (``scan_split``): pass it to the iterator builders
    (``plan=``) so that building an iterator does not scan the files again."""

    source: object
    backgrounds: object
    options: SampleOptions
    summary: DatasetSummary


_LOGGED: set = set()  # dataset summaries already logged by this process


def _held_out(count: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the validation members among `count` sorted items (fixed by seed)."""
    mask = np.zeros(count, bool)
    mask[np.random.default_rng(seed).permutation(count)[:int(round(count * fraction))]] = True
    return mask


def _labelled(cfg, layout: str, root, split: str, image_size: int):
    """(source, scan) for a labelled layout and split; scan is None for synthetic data."""
    spec = layout_spec(layout)
    if spec.kind == "synthetic":
        total = int(cfg.synthetic_size)
        held = int(round(total * float(cfg.val_fraction)))
        offset, length = (total - held, held) if split == "val" else (0, total - held)
        return sources.SyntheticSource(length, int(cfg.synthetic_seed), image_size, offset), None
    if spec.kind == "unlabelled":
        raise DatasetError(f"layout {layout!r} has no mattes: use make_unlabelled_iterator, or a "
                           "labelled layout for training and evaluation")
    if spec.kind == "prepared":
        folder = sources.require_folder(root, f"layout {layout!r}: data root")
        indices = np.arange(int(records.read_meta(folder)["count"]))
        if cfg.val_root is None and split in ("train", "val") and len(indices):
            held = _held_out(len(indices), float(cfg.val_fraction), int(cfg.split_seed))
            indices = indices[held == (split == "val")]
        return records.PreparedSource(folder, indices), None
    candidates = (tuple(cfg.subdirs),) if cfg.subdirs else spec.subdirs
    first, second = sources.resolve_subdirs(root, candidates, layout)
    names = ("fg", "alpha") if spec.kind == "fg_alpha" else ("image", "matte")
    scan = sources.scan_pairs(first, second, bool(cfg.verify_files), names)
    entries = scan.entries
    if cfg.val_root is None and split in ("train", "val") and entries:
        held = _held_out(len(entries), float(cfg.val_fraction), int(cfg.split_seed))
        entries = [e for e, h in zip(entries, held) if h == (split == "val")]
    kind = sources.ForegroundAlphaSource if spec.kind == "fg_alpha" else sources.ImageMatteSource
    return kind(entries, min_side=_decode_min_side(cfg, image_size)), scan


def _decode_min_side(cfg, image_size: int) -> int:
    """Short side a decoded image must keep so the smallest random crop (short side /
    max zoom) is still >= image_size: JPEGs larger than twice that decode at reduced size.
    0 (always full size) when reduced_decoding is off."""
    if not cfg.reduced_decoding:
        return 0
    return int(np.ceil(image_size * max(1.0, float(max(cfg.scale_range)))))


def _kind(layout: str, root) -> str:
    """The layout's kind; a prepared folder's is the kind of the layout it was made from."""
    kind = layout_spec(layout).kind
    return records.read_meta(root)["kind"] if kind == "prepared" else kind


def _backgrounds(cfg, image_size: int):
    if cfg.bg_root is None:
        length, seed = _PROCEDURAL_BACKGROUNDS, int(cfg.synthetic_seed)
        return sources.ProceduralBackgrounds(length, seed, image_size), "procedural"
    if records.is_prepared(cfg.bg_root):
        backgrounds = records.PreparedSource(cfg.bg_root, images=True)
        return backgrounds, f"{len(backgrounds)} prepared in {cfg.bg_root}"
    folder = sources.require_folder(cfg.bg_root, "bg_root")
    scan = sources.scan_images(folder, bool(cfg.verify_files))
    if not scan.entries:
        raise DatasetError(f"bg_root {folder}: no usable background images")
    backgrounds = sources.BackgroundSource(scan.entries, min_side=_decode_min_side(cfg, image_size))
    return backgrounds, f"{len(scan.entries)} from {folder}"


def _options(cfg, image_size: int, split: str, **extra) -> SampleOptions:
    jitter = augment.JitterRanges(float(cfg.hue_degrees), tuple(cfg.saturation_range),
                                  tuple(cfg.value_range))
    device = bool(cfg.augment_on_device) and split != "val"
    precrop = int(cfg.precrop_size) or recipe.precrop_size(image_size, cfg.scale_range)
    return SampleOptions(device=device, precrop_size=precrop,
        image_size=int(image_size), augment=bool(cfg.augment), scale_range=tuple(cfg.scale_range),
        subject_bias=float(cfg.subject_bias), flip=bool(cfg.flip),
        color_jitter=bool(cfg.color_jitter), jitter=jitter,
        trimap_kernel_range=tuple(cfg.trimap_kernel_range),
        trimap_fg_threshold=float(cfg.trimap_fg_threshold),
        trimap_bg_threshold=float(cfg.trimap_bg_threshold), recomposite=bool(cfg.recomposite),
        max_retries=int(cfg.max_decode_retries), **extra)


def _plan(cfg, split: str, image_size: int) -> SplitPlan:
    """Scans and checks the data of one split: "train", "val" or "unlabelled"."""
    layout, root = cfg.layout, cfg.root
    if split == "val" and cfg.val_root is not None:
        layout, root = cfg.val_layout or cfg.layout, cfg.val_root
    unlabelled_root = cfg.unlabelled_root or (root if layout == "unlabelled" else None)
    backgrounds, bg_text, composited = None, "none", False
    if split == "unlabelled" and unlabelled_root is not None:
        root = sources.require_folder(unlabelled_root, "unlabelled data root")
        layout = "unlabelled"
        scan = sources.scan_unlabelled(root, bool(cfg.verify_files), cfg.video_frame_stride)
        source = sources.UnlabelledSource(scan.entries, min_side=_decode_min_side(cfg, image_size))
    else:
        source, scan = _labelled(cfg, layout, root, split, image_size)
        composited = _kind(layout, root) in ("synthetic", "fg_alpha") or bool(cfg.recomposite)
        if composited:
            backgrounds, bg_text = _backgrounds(cfg, image_size)
    image_only = split == "unlabelled"  # SOC from a labelled layout: its images, no labels
    keys = ("image",) if image_only else ("image", "alpha", "trimap") + (("fg", "bg") if composited else ())
    summary = DatasetSummary(split, layout, root, len(source), keys, bg_text,
                             tuple(scan.skipped) if scan else (), tuple(scan.notes) if scan else ())
    if len(source) == 0:
        reason = (f"{len(summary.skipped)} file(s) were skipped, see the warnings above"
                  if summary.skipped else "nothing matched")
        hint = ("" if split != "val" or cfg.val_root is not None else
                f"; val_fraction={cfg.val_fraction} holds out none: raise it or set val_root"
                if float(cfg.val_fraction) > 0 else "; set val_fraction > 0 or val_root")
        raise DatasetError(f"data[{split}]: layout {layout!r} at {root or '(generated)'} has no "
                           f"usable samples ({reason}){hint}")
    if split != "val":  # validation is one pass per evaluation (rebuilt each time): no hits
        source = cache.cached(source, cfg.sample_cache_mb)
        backgrounds = cache.cached(backgrounds, cfg.bg_cache_mb)
    _probe(source, split)
    if str(summary) not in _LOGGED:  # once per process, not at every (re)build
        _LOGGED.add(str(summary))
        LOGGER.info("%s", summary)
    return SplitPlan(source, backgrounds, _options(cfg, image_size, split, image_only=image_only),
                     summary)


def _probe(source, split: str) -> None:
    """Decodes the first few samples so a dataset of undecodable files fails at start-up."""
    reasons = []
    for index in range(min(_PROBE_SAMPLES, len(source))):
        try:
            source[index]
            return
        except UnusableFile as err:
            reasons.append(f"{err.path}: {err.reason}")
    raise DatasetError(f"data[{split}]: the first {len(reasons)} samples cannot be read "
                       f"({'; '.join(reasons)}); the dataset looks unusable")


def validate_dataset(data_cfg, *, image_size: int = 512, split: str = "train") -> DatasetSummary:
    """Start-up check of one split ("train", "val" or "unlabelled"): scans the files, reports
    unusable ones, decodes a few samples, and raises DatasetError (or ValueError for a bad
    config) if the split is empty or unusable. Cheap: no pipeline is built."""
    return scan_split(data_cfg, image_size=image_size, split=split).summary


def scan_split(data_cfg, *, image_size: int, split: str) -> SplitPlan:
    """``validate_dataset``'s scan and checks, kept: its ``summary`` is what
    ``validate_dataset`` returns, and ``make_*_iterator(..., plan=it)`` builds on it without
    scanning again (a training run scans each split once)."""
    if split not in ("train", "val", "unlabelled"):
        raise ValueError(f"split must be train, val or unlabelled, not {split!r}")
    return _plan(resolve_config(data_cfg), split, image_size)


def _plan_for(cfg, plan: SplitPlan | None, split: str, image_size: int) -> SplitPlan:
    """The given plan (checked to be of this split and size), or a fresh scan."""
    if plan is None:
        return _plan(cfg, split, image_size)
    if plan.summary.split != split or plan.options.image_size != int(image_size):
        raise ValueError(f"plan is for split {plan.summary.split!r} at {plan.options.image_size}"
                         f" px, not {split!r} at {image_size} px")
    return plan


def _check_shard(shard_index: int, shard_count: int) -> None:
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} outside [0, {shard_count})")


def _host_batches(dataset, batch_size: int, shard_index: int, shard_count: int,
                  options: SampleOptions):
    """Batches of ``batch_size`` rows; host ``shard_index`` of ``shard_count`` keeps batches
    i, i+k, ... (its rows of every global batch), the same count on every host."""
    batch_fn = functools.partial(stack_batch, canvas=options.precrop_size if options.device else 0)
    batched = dataset.batch(batch_size, drop_remainder=True, batch_fn=batch_fn)
    whole = len(batched) // shard_count * shard_count
    return batched[shard_index:whole:shard_count]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_MMAP_THRESHOLD = 32 * 2 ** 20   # glibc's largest allowed value on 64-bit systems
_TRIM_THRESHOLD = 256 * 2 ** 20


def tune_malloc() -> bool:
    """Makes glibc keep and reuse freed memory for the data pipeline's image buffers.

    By default glibc serves each allocation over ~128 KiB-32 MiB with a fresh mmap and
    unmaps it on free, and returns freed heap memory to the system, so every 512x512
    intermediate (a resize output, composite weights, ...) is re-faulted page by page by
    the kernel; at these sizes that costs about as much CPU as the image operation itself
    (measured: cv2.blendLinear on 512x512x3 0.7 ms with reuse, 1.8 ms without). Raising the
    mmap and trim thresholds keeps those buffers in the heap for reuse, at the price of
    the process holding on to its peak heap (a few batches' worth here). Process-wide and
    glibc-only: returns False (and changes nothing) elsewhere.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok)
    except (OSError, AttributeError):
        return False


def _worker_init(worker_index: int, worker_count: int, malloc_tuning: bool = True) -> None:
    # One OpenCV thread per worker process: the workers are the parallelism.
    del worker_index, worker_count
    cv2.setNumThreads(1)
    if malloc_tuning:
        tune_malloc()


def _to_iterator(dataset, cfg):
    read = grain.ReadOptions(num_threads=int(cfg.read_threads),
                             prefetch_buffer_size=max(1, int(cfg.prefetch_batches)))
    iter_ds = dataset.to_iter_dataset(read)
    if cfg.malloc_tuning and int(cfg.num_workers) == 0:
        # Samples are built in this process. With workers they are built there (tuned in
        # _worker_init) and this process, which also holds JAX's host buffers, keeps glibc's
        # defaults rather than its peak heap.
        tune_malloc()
    if int(cfg.num_workers) > 0:
        from absl import flags  # grain's multiprocessing reads absl flags

        if not flags.FLAGS.is_parsed():
            LOGGER.info("absl flags not parsed: marking them parsed (defaults) for Grain workers")
            flags.FLAGS.mark_as_parsed()
        options = grain.MultiprocessingOptions(num_workers=int(cfg.num_workers),
                                               per_worker_buffer_size=max(1, int(cfg.prefetch_batches)))
        init = functools.partial(_worker_init, malloc_tuning=bool(cfg.malloc_tuning))
        iter_ds = iter_ds.mp_prefetch(options, worker_init_fn=init)
    return iter(iter_ds)


def _random_stream(plan: SplitPlan, cfg, *, batch_size, seed, shard_index, shard_count, num_epochs):
    what = f"data[{plan.summary.split}]"
    _check_shard(shard_index, shard_count)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count, global_batch = len(plan.source), batch_size * shard_count
    if num_epochs is not None and global_batch > count * num_epochs:
        raise DatasetError(f"{what}: {num_epochs} epoch(s) of {count} samples do not fill one "
                           f"global batch of {global_batch}")
    if global_batch > count:
        # Allowed (a batch then spans epochs and repeats samples), but worth knowing.
        LOGGER.warning("%s: global batch %d exceeds the %d samples; batches repeat samples",
                       what, global_batch, count)
    builder = SampleBuilder(plan.source, plan.backgrounds, plan.options)
    dataset = grain.MapDataset.range(count).seed(int(seed) & 0xFFFFFFFF).shuffle()
    dataset = dataset.repeat(num_epochs).random_map(builder)
    return _to_iterator(_host_batches(dataset, batch_size, shard_index, shard_count,
                                     plan.options), cfg)


def make_train_iterator(data_cfg, *, batch_size: int, seed: int, image_size: int,
                        shard_index: int = 0, shard_count: int = 1, num_epochs: int | None = None,
                        plan: SplitPlan | None = None):
    """Augmented training batches, reshuffled every epoch; endless when num_epochs is None.
    With ``shard_count`` > 1, ``batch_size`` is per host (see the module docstring). ``plan``:
    the split's ``scan_split`` result, if already made (else the files are scanned here).

    Returns a Grain iterator (`next()`, `get_state()`, `set_state()`).
    """
    cfg = resolve_config(data_cfg)
    plan = _plan_for(cfg, plan, "train", image_size)
    return _random_stream(plan, cfg, batch_size=batch_size, seed=seed, shard_index=shard_index,
                          shard_count=shard_count, num_epochs=num_epochs)


def make_unlabelled_iterator(data_cfg, *, batch_size: int, seed: int, image_size: int,
                             shard_index: int = 0, shard_count: int = 1,
                             num_epochs: int | None = None, plan: SplitPlan | None = None):
    """SOC batches {"image": uint8 [B, S, S, 3]}: random crops and flips of unlabelled images
    and video frames (`unlabelled_root`, or `root` for the unlabelled layout), or of the
    labelled layout's images with the labels dropped. ``plan``: as for make_train_iterator."""
    cfg = resolve_config(data_cfg)
    plan = _plan_for(cfg, plan, "unlabelled", image_size)
    return _random_stream(plan, cfg, batch_size=batch_size, seed=seed, shard_index=shard_index,
                          shard_count=shard_count, num_epochs=num_epochs)


def make_eval_iterator(data_cfg, *, batch_size: int, image_size: int, shard_index: int = 0,
                       shard_count: int = 1, plan: SplitPlan | None = None):
    """Deterministic validation batches: one pass, short side resized and centre-cropped, no
    augmentation, trimap band at the middle of the configured range, backgrounds chosen by
    index. The last partial global batch (``batch_size * shard_count`` samples) is dropped, so
    each host sees floor(n / (hosts * batch_size)) batches, its rows of each global batch (as in
    training); a split smaller than one global batch raises DatasetError rather than yielding
    nothing. ``plan``: as for make_train_iterator (a training run evaluates many times on one
    scan)."""
    cfg = resolve_config(data_cfg)
    plan = _plan_for(cfg, plan, "val", image_size)
    _check_shard(shard_index, shard_count)
    count, global_batch = len(plan.source), batch_size * shard_count
    if count < global_batch:
        raise DatasetError(f"data[val]: {count} samples, less than one batch of "
                           f"{global_batch}; lower the batch size or enlarge the split")
    builder = SampleBuilder(plan.source, plan.backgrounds, plan.options)
    dataset = grain.MapDataset.range(count).map(builder)
    return _to_iterator(_host_batches(dataset, batch_size, shard_index, shard_count,
                                     plan.options), cfg)
