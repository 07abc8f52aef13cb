"""SOC self-supervised adaptation of a trained MODNet to unlabelled frames of a new domain.

  python -m modnet_jax.train --config soc \
      --config.init_from=workdir/supervised --config.data.root=/data/webcam_clips

Starts from ``init_from`` (a supervised workdir or checkpoint, or a release checkpoint
converted with ``python -m modnet_jax.convert_from_torch``); M' is a frozen copy of it,
M trains with BatchNorm statistics frozen, batch 1, 10 epochs. Default recipe ``bn_affine``:
Adam 1e-4, betas (0.9, 0.99), only the BatchNorm scales/biases adapt (the least harmful of
the recipes measured on benchmarks/soc_domain.py, docs/soc.md; ``soc:release`` is the
release's Adam 1e-5 on every parameter).
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
branch only), ``soc:bn_affine`` (Adam 1e-4, BatchNorm scales/biases only). BatchNorm
statistics stay frozen in all. Run-size variants: ``soc:cpu`` (256x256, 40 steps, every video
frame; the run documented in benchmarks/RESULTS.md, issue 15), ``soc:tiny`` (64x64, batch 2,
4 steps on the synthetic images with labels dropped).

Every run logs a before/after report (held-out SOC loss, flicker for a video, and a verdict;
``soc.report_from``, training/soc_report.py).
"""

from modnet_jax.configs import unknown_variant
from modnet_jax.training.config import soc_config, tiny
from modnet_jax.training.soc_recipes import RECIPES

# recipe variants: the learning rate and what adapts of training/soc_recipes.RECIPES
RECIPE_VARIANTS = ("release", "paper", "lowres", "bn_affine")
VARIANTS = ("cpu", "tiny") + RECIPE_VARIANTS


DEFAULT_RECIPE = "bn_affine"  # chosen from the benchmark's table (docs/soc.md)


def get_config(variant=None):
    c = soc_config()  # the release's optimiser settings, then the recipe below
    recipe = RECIPES[variant if variant in RECIPE_VARIANTS else
                     "release" if variant == "cpu" else DEFAULT_RECIPE]
    c.optimizer.learning_rate, c.soc.adapt = recipe.lr, recipe.adapt
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
