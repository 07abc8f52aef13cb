"""SOC self-supervised adaptation of a trained MODNet to unlabelled frames of a new domain.

  python -m modnet_jax.train --config soc \
      --config.init_from=workdir/supervised --config.data.root=/data/webcam_clips

Starts from ``init_from`` (a supervised workdir or checkpoint, or a release checkpoint
converted with ``python -m modnet_jax.convert_from_torch``); M' is a frozen copy of it,
M trains with BatchNorm statistics frozen, batch 1, 10 epochs. Default recipe
``bn_affine_pull``: Adam 1e-4, betas (0.9, 0.99), only the BatchNorm scales/biases adapt, and
every step pulls them 10% of the way back to their starting values (``soc.pull=0.1``, an
L2-SP-like anchor that bounds how far they drift however long the run): the recipe chosen
from those measured on benchmarks/soc_domain.py (docs/soc.md); ``soc:release`` is the
release's Adam 1e-5 on every parameter.
Expected: the SOC loss falls over the first epoch while M' and all BatchNorm statistics stay
bit-identical (checked by the tests).

From the official ONNX export, prepare first (its training-only heads are missing and SOC
uses them; BatchNorm statistics re-estimated without changing the eval function):

  python -m modnet_jax.recalibrate --init modnet_photographic_portrait_matting.onnx \
      --data /data/webcam_clips --output ckpt/prepared --fit-heads 100
  (or set --config.recalibrate_batches=4 --config.fit_heads_steps=100 here)

Recipe variants (measured by benchmarks/soc_domain.py; docs/soc.md has the table and why
the default is what it is): ``soc:release`` (Adam 1e-5, every parameter: the release),
``soc:paper`` (Adam 1e-4, every parameter), ``soc:lowres`` (Adam 1e-5, backbone + semantic
branch only), ``soc:bn_affine`` (Adam 1e-4, BatchNorm scales/biases only, no pull),
``soc:bn_affine_pull`` (the default, named). BatchNorm
statistics stay frozen in all. Run-size variants: ``soc:cpu`` (256x256, 40 steps, every video
frame; the run documented in benchmarks/RESULTS.md, issue 15), ``soc:tiny`` (64x64, batch 2,
4 steps on the synthetic images with labels dropped).

Every run logs a before/after report (held-out SOC loss, flicker for a video, and a verdict;
``soc.report_from``, training/soc_report.py).

Documented run (2026-12-02, 2-core CPU under load ~15 from other jobs): generated footage,
``python -m benchmarks.soc_flicker --write-videos /tmp/soc/videos`` (3 mp4 clips x 40 frames,
256x256, a synthetic portrait swaying over a fixed background with sensor noise); the
released ONNX prepared by ``benchmarks/soc_flicker.py --save-prepared`` (same as the
recalibrate command above, 60 head steps); then

  python -m modnet_jax.train --config soc:cpu --workdir /tmp/soc/run \
      --config.init_from=/tmp/soc/prepared --config.data.root=/tmp/soc/videos
  python -m benchmarks.soc_flicker --score /tmp/soc/prepared /tmp/soc/run

40 steps (batch 1, Adam 1e-5 on every parameter: the release recipe, now ``soc:release``).
On the held-out clip: flicker (``temporal.flicker_score``) 1.07e-3 -> 1.17e-3 (with One-Frame
Delay 8.76e-4 -> 9.60e-4), mean |matte - unadapted matte| 0.0015, MAD vs the true matte
0.0081 -> 0.0086. SOC as released does not lower flicker here either; see
benchmarks/RESULTS.md (issue 15) for the variants measured.
"""

from modnet_jax.configs import unknown_variant
from modnet_jax.training.config import soc_config, tiny
from modnet_jax.training.soc_recipes import RECIPES

# recipe variants: the learning rate and what adapts of training/soc_recipes.RECIPES
RECIPE_VARIANTS = ("release", "paper", "lowres", "bn_affine", "bn_affine_pull")
VARIANTS = ("cpu", "tiny") + RECIPE_VARIANTS


DEFAULT_RECIPE = "bn_affine_pull"  # chosen from the benchmark's table (docs/soc.md)


def get_config(variant=None):
    c = soc_config()  # the release's optimiser settings, then the recipe below
    recipe = RECIPES[variant if variant in RECIPE_VARIANTS else
                     "release" if variant == "cpu" else DEFAULT_RECIPE]
    c.optimizer.learning_rate, c.soc.adapt = recipe.lr, recipe.adapt
    c.soc.pull = recipe.pull
    if variant in (None, "") or variant in RECIPE_VARIANTS:
        return c
    if variant == "cpu":  # the documented run (issue 15's, with the release recipe)
        c.image_size = 256
        c.num_train_steps = 40
        c.log_every = 5
        c.checkpoint_every = 40
        c.data.video_frame_stride = 1
        return c
    if variant == "tiny":
        c = tiny(c)
        c.data.layout = "synthetic"  # the synthetic images, labels dropped
        c.eval_every = -1
        return c
    raise unknown_variant("soc", variant, VARIANTS)
