"""SOC self-supervised adaptation of a trained MODNet to unlabelled frames of a new domain.

  python -m modnet_jax.train --config soc \
      --config.init_from=workdir/supervised --config.data.root=/data/webcam_clips

Starts from ``init_from`` (a supervised workdir or checkpoint, or a release checkpoint
converted with ``python -m modnet_jax.convert_from_torch``); M' is a frozen copy of it,
M trains with BatchNorm frozen: Adam lr 1e-5, betas (0.9, 0.99), batch 1, 10 epochs.
Expected: the SOC loss falls over the first epoch while M' and all BatchNorm statistics stay
bit-identical (checked by the tests).

Variants: ``soc:tiny`` (64x64, batch 2, 4 steps on the synthetic images with labels dropped).
"""

from modnet_jax.configs import unknown_variant
from modnet_jax.training.config import soc_config, tiny

VARIANTS = ("tiny",)


def get_config(variant=None):
    c = soc_config()
    if variant in (None, ""):
        return c
    if variant == "tiny":
        c = tiny(c)
        c.data.layout = "synthetic"  # the synthetic images, labels dropped
        c.eval_every = -1
        return c
    raise unknown_variant("soc", variant, VARIANTS)
