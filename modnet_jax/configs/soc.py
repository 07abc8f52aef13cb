"""SOC self-supervised adaptation of a trained MODNet to unlabelled frames of a new domain.

  python -m modnet_jax.train --config soc \
      --config.init_from=workdir/supervised --config.data.root=/data/webcam_clips

Starts from ``init_from`` (a supervised workdir or checkpoint, or a release checkpoint
converted with ``python -m modnet_jax.convert_from_torch``); M' is a frozen copy of it,
M trains with BatchNorm frozen: Adam lr 1e-5, betas (0.9, 0.99), batch 1, 10 epochs.
Expected: the SOC loss falls over the first epoch while M' and all BatchNorm statistics stay
bit-identical (checked by the tests).

From the official ONNX export, prepare first (its training-only heads are missing and SOC
uses them; BatchNorm statistics re-estimated without changing the eval function):

  python -m modnet_jax.recalibrate --init modnet_photographic_portrait_matting.onnx \
      --data /data/webcam_clips --output ckpt/prepared --fit-heads 100
  (or set --config.recalibrate_batches=4 --config.fit_heads_steps=100 here)

Variants: ``soc:cpu`` (256x256, 40 steps, every video frame: the documented run below),
``soc:tiny`` (64x64, batch 2, 4 steps on the synthetic images with labels dropped).

Documented run (2026-12-02, 2-core CPU under load ~15 from other jobs): generated footage,
``python benchmarks/soc_flicker.py --write-videos /tmp/soc/videos`` (3 mp4 clips x 40 frames,
256x256, a synthetic portrait swaying over a fixed background with sensor noise); the
released ONNX prepared by ``benchmarks/soc_flicker.py --save-prepared`` (same as the
recalibrate command above, 60 head steps); then

  python -m modnet_jax.train --config soc:cpu --workdir /tmp/soc/run \
      --config.init_from=/tmp/soc/prepared --config.data.root=/tmp/soc/videos
  python benchmarks/soc_flicker.py --score /tmp/soc/prepared /tmp/soc/run

40 steps (batch 1, Adam 1e-5). On the held-out clip: flicker (``temporal.flicker_score``) 1.07e-3 -> 1.17e-3 (with One-Frame
Delay 8.76e-4 -> 9.60e-4), mean |matte - unadapted matte| 0.0015, MAD vs the true matte
0.0081 -> 0.0086. SOC as released does not lower flicker here either; see
benchmarks/RESULTS.md (issue 15) for the variants measured.
"""

from modnet_jax.configs import unknown_variant
from modnet_jax.training.config import soc_config, tiny

VARIANTS = ("cpu", "tiny")


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
    raise unknown_variant("soc", variant, VARIANTS)
