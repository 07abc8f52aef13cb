"""SOC self-supervised adaptation of a trained MODNet to unlabelled frames of a new domain.

  python -m modnet_jax.train --config configs/soc.py \
      --config.init_from=workdir/supervised --config.data.root=/data/webcam_clips

Starts from ``init_from`` (a supervised workdir or checkpoint, or a release checkpoint
converted with ``python -m modnet_jax.convert_from_torch``); M' is a frozen copy of it,
M trains with BatchNorm frozen: Adam lr 1e-5, betas (0.9, 0.99), batch 1, 10 epochs.
Expected: the SOC loss falls over the first epoch while M' and all BatchNorm statistics stay
bit-identical (checked by the tests).

Variants: ``:tiny`` (64x64, batch 2, 4 steps on the synthetic images with labels dropped).
"""

from modnet_jax.training.config import soc_config, tiny


def get_config(variant=None):
    c = soc_config()
    if variant in (None, ""):
        return c
    if variant == "cpu":  # the documented run (see the module docstring)
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
    raise ValueError(f"unknown variant {variant!r} of configs/soc.py: use cpu or tiny")
