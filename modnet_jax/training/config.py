"""Every training field, its default and meaning, in one place (the files in ``configs/``
start from these and change a few fields).

Run fields (``config.X``):
  mode              "supervised" (labelled data, release loss) or "soc" (unlabelled adaptation)
  seed              data order and model init; with the step it determines every random choice
  image_size        square training crop (multiple of 32)
  batch_size        GLOBAL batch: per-device batch x all devices of all hosts
  num_epochs        epochs (an epoch = samples // batch_size steps, or steps_per_epoch)
  num_train_steps   > 0 overrides num_epochs
  steps_per_epoch   > 0 overrides the dataset-derived epoch length (lr decay is per epoch)
  num_devices       local devices to use (-1: all)
  init_from         checkpoint to start from (workdir / manager dir / step dir, or the official
                    ONNX export *.onnx; required for SOC)
  recalibrate_batches  > 0: before the first step (not on resume), re-estimate every
                    BatchNorm's statistics on this many training batches, keeping the eval
                    function (needed for the ONNX export's folded BatchNorms;
                    training/recalibrate.py)
  fit_heads_steps   > 0 (with recalibrate_batches): then distil the training-only semantic/
                    detail heads from the model's own matte for this many steps (the ONNX
                    export lacks them; random heads pull the trunk; training/heads.py)
  eval_every, checkpoint_every   in steps (eval_every 0: only at the end, -1: never)
  log_every         training metrics are logged as means over each interval of this many steps
  eval_batch_size, num_eval_batches (-1: the whole validation split), eval_at_start: the
                    in-training validation ("val_crop": centre crops at image_size)
  keep_checkpoints (newest N kept), keep_best (best N by val_crop MAD kept), async_checkpoint
  grid_images       samples in the PNG grid written at each validation
  progress          draw the progress line
  xla_cpu_ynnpack   False (default): train.py runs XLA:CPU with its own conv kernels instead of
                    its YNNPACK fusions (CPU training step 1.3-2x faster; training/xla_cpu.py);
                    True keeps XLA's default. No effect on GPU/TPU computations.
Sub-configs: ``model`` (modnet_jax.models.MODEL_DEFAULTS), ``optimizer``
(modnet_jax.state.OPTIMIZER_DEFAULTS), ``loss.variant`` ("release" | "paper"), ``data``
(modnet_jax.data.default_data_config()), ``soc.refresh_frozen_every_epoch`` (the release
re-copies M' at each epoch start; the paper, and our default, fixes it once),
``soc.adapt`` (what SOC trains: "all" parameters, "lowres" = backbone + semantic branch,
"bn_affine" = BatchNorm scales/biases only; training/soc_recipes.py), ``soc.report_from`` /
``soc.report_frames`` (SOC's before/after report, training/soc_report.py:
a video file or image folder the run does not train on, and how many of its frames; "" draws
them from the training data; 0 frames: no report).
"""

from __future__ import annotations

import ml_collections

from modnet_jax.data import default_data_config
from modnet_jax.models import MODEL_DEFAULTS
from modnet_jax.state import OPTIMIZER_DEFAULTS


def supervised_config() -> ml_collections.ConfigDict:
    """The paper/release recipe: batch 16, 512x512, SGD 0.01 x0.1 every 10 epochs, 40 epochs."""
    c = ml_collections.ConfigDict()
    c.mode = "supervised"
    c.seed = 0
    c.image_size = 512
    c.batch_size = 16
    c.num_epochs = 40
    c.num_train_steps = -1
    c.steps_per_epoch = -1
    c.num_devices = -1
    c.init_from = ""
    c.recalibrate_batches = 0
    c.fit_heads_steps = 0
    c.log_every = 50
    c.eval_every = 2000
    c.eval_batch_size = 16
    c.num_eval_batches = -1
    c.eval_at_start = True
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.keep_best = 1
    c.async_checkpoint = True
    c.grid_images = 4
    c.progress = True
    c.xla_cpu_ynnpack = False
    c.model = ml_collections.ConfigDict(dict(MODEL_DEFAULTS))
    c.optimizer = ml_collections.ConfigDict(dict(OPTIMIZER_DEFAULTS))
    c.loss = ml_collections.ConfigDict({"variant": "release"})
    c.data = default_data_config()
    c.soc = ml_collections.ConfigDict({"refresh_frozen_every_epoch": False, "adapt": "all",
                                       "report_from": "", "report_frames": 16})
    return c


def soc_config() -> ml_collections.ConfigDict:
    """SOC as released: Adam 1e-5, betas (0.9, 0.99), batch 1, BN frozen, M' frozen."""
    c = supervised_config()
    c.mode = "soc"
    c.batch_size = 1
    c.num_epochs = 10
    c.eval_every = -1
    c.keep_best = 0
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-5
    c.optimizer.lr_decay_every_epochs = 0
    c.data.layout = "unlabelled"
    return c


def tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A seconds-long run for tests and smoke checks: 64x64, batch 2, a few steps."""
    c.image_size = 64
    c.batch_size = 2
    c.eval_batch_size = 2
    c.num_train_steps = 4
    c.log_every = 1
    c.eval_every = 0
    c.num_eval_batches = 2
    c.checkpoint_every = 2
    c.grid_images = 2
    c.async_checkpoint = False
    c.data.synthetic_size = 64
    c.data.val_fraction = 0.125
    return c
