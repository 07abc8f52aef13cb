"""SOC on footage, measured: flicker and drift of the released model before/after adaptation.

    python -m benchmarks.soc_flicker --init modnet_photographic_portrait_matting.onnx \\
        [--size 256] [--frames 40] [--steps 40] [--variants release,lr1e-6,refresh10,...]
    python -m benchmarks.soc_flicker --score CKPT_BEFORE CKPT_AFTER [...]   # held-out only
    python -m benchmarks.soc_flicker --write-videos DIR   # the training clips as .mp4 files

Data: generated clips (``modnet_jax.data.synthetic_video``): a synthetic portrait swaying over
a fixed background with sensor-like noise; clips 1..``--train-clips`` are the unlabelled
footage SOC adapts on, clip 100 is held out. Preparation, shared by every variant: every
BatchNorm re-estimated on training frames (eval function unchanged) and, for the ONNX export
(no training heads), the semantic and detail heads distilled from the model's own matte
(``training/heads.py``; without it SOC's loss is dominated by random heads).

Each variant runs SOC (BatchNorm frozen, frozen copy M', batch 1, the release's loss) from the
same prepared model on the same random frame order, then scores the held-out clip:
flicker (``temporal.flicker_score``, raw and after One-Frame Delay), the mean |matte - the
unadapted matte| (drift), and MAD against the clip's true matte. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import time

VARIANTS = {
    # name: (optimizer, lr, refresh M' every n steps (0 never), frame order)
    "release": ("adam", 1e-5, 0, "random"),
    "lr3e-6": ("adam", 3e-6, 0, "random"),
    "lr1e-6": ("adam", 1e-6, 0, "random"),
    "refresh10": ("adam", 1e-5, 10, "random"),
    "one_clip": ("adam", 1e-5, 0, "one_clip"),
    "sgd": ("sgd", 1e-4, 0, "random"),
    # BatchNorm gamma/beta frozen too (only conv/linear weights adapt): Adam's equal-size steps
    # on the gammas of low-variance channels are a candidate cause of the flicker rise.
    "bn_affine_frozen": ("adam", 1e-5, 0, "random"),
}


def _not_batchnorm_affine(params):
    """A pytree of bools, False on BatchNorm scale/bias (modules holding a ``scale``)."""
    from flax import traverse_util

    flat = traverse_util.flatten_dict(dict(params))
    bn = {p[:-1] for p in flat if p[-1] == "scale"}
    return traverse_util.unflatten_dict({p: p[:-1] not in bn for p in flat})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", help=".onnx export or checkpoint to adapt")
    p.add_argument("--score", nargs="+", metavar="CKPT",
                   help="only score these checkpoints on the held-out clip (drift vs the first)")
    p.add_argument("--write-videos", metavar="DIR",
                   help="only write the training clips to DIR/clip_<i>.mp4 (for configs/soc.py)")
    p.add_argument("--size", type=int, default=256, help="frame height = width (multiple of 32)")
    p.add_argument("--frames", type=int, default=40, help="frames per clip")
    p.add_argument("--train-clips", type=int, default=3)
    p.add_argument("--steps", type=int, default=40, help="SOC steps per variant")
    p.add_argument("--head-steps", type=int, default=60, help="head distillation steps")
    p.add_argument("--variants", default="release,lr1e-6,refresh10",
                   help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--noise", type=float, default=1.0, help="per-frame noise, grey levels")
    p.add_argument("--save-prepared", default=None, metavar="DIR",
                   help="also save the prepared (recalibrated, heads fitted) model there")
    p.add_argument("--prepared", action="store_true",
                   help="--init is already prepared (e.g. a --save-prepared directory)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.init or args.score or args.write_videos):
        p.error("give --init (run the variants), --score or --write-videos")
    return args


def main(argv=None):
    args = parse_args(argv)
    import jax
    import numpy as np
    import optax

    from modnet_jax import parallel, steps
    from modnet_jax import state as state_lib
    from modnet_jax.data.synthetic_video import generate_clip
    from modnet_jax.temporal import one_frame_delay
    from modnet_jax.models import model_from_config
    from modnet_jax.temporal import flicker_score
    from modnet_jax.training.heads import fit_training_heads
    from modnet_jax.training.pretrained import load_init_variables
    from modnet_jax.training.recalibrate import recalibrate_batchnorm

    t0 = time.time()
    s = args.size
    clips = [generate_clip(args.seed, i, args.frames, s, noise=args.noise)
             for i in range(1, args.train_clips + 1)]
    held = generate_clip(args.seed, 100, args.frames, s, noise=args.noise)
    if args.write_videos:
        from modnet_jax.data.synthetic_video import write_clip

        for i, c in enumerate(clips, start=1):
            write_clip(os.path.join(args.write_videos, f"clip_{i}.mp4"), c["frames"])
        print(f"wrote {len(clips)} clips of {args.frames} frames to {args.write_videos}")
        return
    train_frames = np.concatenate([c["frames"] for c in clips])
    norm = lambda f: (f.astype(np.float32) / 255.0 - 0.5) / 0.5  # noqa: E731
    rng = np.random.default_rng(args.seed)

    model = model_from_config(None)
    matte_fn = jax.jit(lambda v, x: model.apply(v, x, train=False, inference=True)[2][..., 0])

    def held_mattes(v):
        out = [np.asarray(matte_fn(v, norm(held["frames"][i:i + 8])))
               for i in range(0, args.frames, 8)]
        return np.concatenate(out)

    def ofd(mattes):
        out = mattes.copy()
        for t in range(1, len(mattes) - 1):
            out[t] = one_frame_delay(mattes[t - 1], mattes[t], mattes[t + 1])
        return out

    gt = held["alpha"].astype(np.float32) / 255.0
    base = None

    def score(name, mattes, losses, seconds):
        return (name, flicker_score(held["frames"], mattes),
                flicker_score(held["frames"], ofd(mattes)), float(np.abs(mattes - base).mean()),
                float(np.abs(mattes - gt).mean()), losses, seconds)

    if args.score:
        from modnet_jax.checkpointing import load_variables

        base = held_mattes(load_variables(args.score[0]))
        rows = [score(path, held_mattes(load_variables(path)), (float("nan"),) * 2, 0.0)
                for path in args.score]
        return _table(args, rows)
    variables = load_init_variables(args.init)
    if not args.prepared:
        cal = [norm(train_frames[rng.choice(len(train_frames), 4, replace=False)])
               for _ in range(4)]
        variables, _ = recalibrate_batchnorm(model, variables, cal)
        head_batches = [norm(train_frames[rng.choice(len(train_frames), 2, replace=False)])
                        for _ in range(args.head_steps)]
        variables, head_losses = fit_training_heads(model, variables, head_batches)
        print(f"prepared in {time.time() - t0:.0f} s: head loss "
              f"{np.mean(head_losses[:5]):.4f} -> {np.mean(head_losses[-5:]):.4f}", flush=True)
    if args.save_prepared:
        from modnet_jax.checkpointing import save_variables

        print("saved", save_variables(args.save_prepared, variables, 0))

    base = held_mattes(variables)
    rows = [score("unadapted", base, (float("nan"), float("nan")), 0.0)]
    devices = jax.local_devices()[:1]
    soc_model = model_from_config(None, axis_name=parallel.AXIS)
    soc_step = steps.build_soc_step(soc_model, devices)
    for name in [v for v in args.variants.split(",") if v]:
        opt, lr, refresh, order = VARIANTS[name]
        tx = optax.adam(lr, b1=0.9, b2=0.99) if opt == "adam" else optax.sgd(lr, momentum=0.9)
        if name == "bn_affine_frozen":
            tx = optax.chain(optax.masked(optax.set_to_zero(), lambda p: jax.tree.map(
                lambda keep: not keep, _not_batchnorm_affine(p))), tx)
        st = parallel.replicate(state_lib.create_train_state(soc_model, variables, tx), devices)
        frozen = parallel.replicate(variables, devices)
        pool = clips[0]["frames"] if order == "one_clip" else train_frames
        order_rng = np.random.default_rng(args.seed + 1)
        losses, t1 = [], time.time()
        for i in range(args.steps):
            if refresh and i and i % refresh == 0:
                frozen = st.variables
            batch = {"image": pool[order_rng.integers(len(pool))][None]}
            st, metrics = soc_step(st, frozen, parallel.shard_batch(batch, devices))
            losses.append(float(parallel.unreplicate(metrics)["total"]))
        adapted = jax.device_get(parallel.unreplicate(st).variables)
        k = max(1, min(5, len(losses) // 4))
        rows.append(score(name, held_mattes(adapted),
                          (float(np.mean(losses[:k])), float(np.mean(losses[-k:]))),
                          time.time() - t1))
        print(rows[-1], flush=True)
    _table(args, rows)


def _table(args, rows):
    s = args.size
    print(f"\nSOC on generated footage: {s}x{s}, {args.train_clips} training clips x "
          f"{args.frames} frames, held-out clip of {args.frames}; {args.steps} steps, batch 1; "
          f"noise {args.noise} grey levels; load {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<11} {'flicker':>9} {'+OFD':>9} {'drift':>8} {'MAD':>8} "
          f"{'SOC loss first->last':>22} {'time s':>7}")
    for name, fl, fo, drift, mad, (l0, l1), sec in rows:
        print(f"{name:<11} {fl:9.2e} {fo:9.2e} {drift:8.4f} {mad:8.4f} "
              f"{l0:10.3f} -> {l1:8.3f} {sec:7.0f}")
    print("flicker: mean |a_t - a_(t-1)| over still pixels (temporal.flicker_score); drift: "
          "mean |a - unadapted a| on the held-out clip; MAD vs its true matte")


if __name__ == "__main__":
    main()
