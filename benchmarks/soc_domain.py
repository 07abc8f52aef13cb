"""Does SOC adapt? Labelled photos seen through simulated cameras, scored before and after.

    python -m benchmarks.soc_domain --data PPM_FOLDER --init modnet_photographic_portrait_matting.onnx \\
        [--size 256] [--steps 30] [--eval-every 10] [--seeds 0,1] \\
        [--domains lowres,cast,exposure,noise,jpeg,clip] [--recipes release,paper,...] \\
        [--prepare onnx|none] [--prepared-dir DIR] [--at-steps 6,12] [--json out.json]

``PPM_FOLDER`` holds ``image/*.jpg`` and ``matte/*.png`` (the PPM-100 layout). The photos
are split once (``camera_domains.split``) into target-train (SOC adapts on them through the
camera, labels unused), target-held-out (scored through the camera) and clean-held-out
(scored as they are: what adaptation forgets). The ``clip`` domain is generated footage:
SOC adapts on three clips' frames, the held-out clip is scored with its true matte and
with ``temporal.flicker_score``, raw and after One-Frame Delay.

Per domain the model is prepared once, as ``train --config soc`` does from the ONNX
export: every BatchNorm re-estimated on target-train images (eval function unchanged) and
the training-only heads distilled from the model's own matte. So "before" is the released
model's own matte. ``--prepare none`` adapts ``--init`` as it is (a trained checkpoint: its
own statistics and supervised heads); ``--prepared-dir`` keeps the prepared weights per
domain for later runs. Then every recipe (``RECIPES``) runs ``--steps`` SOC steps per seed
(the seed draws the image order) and is scored every ``--eval-every`` steps: MAD, MSE and
Grad on the held-out target photos, the held-out SOC loss (SOC's own objective on those
photos, unlabelled: what a user can measure), and the clean photos' MAD. "fixed" rows are
the model after all steps; "early" rows the scored step with the lowest held-out SOC loss
(step 0, the unadapted model, included: it is also the guard that refuses an adaptation
whose held-out SOC loss rose); ``--at-steps`` adds the rows of the model at given steps (step
count). Clean MAD is scored at every scored step.

Prints one table: per recipe and domain, after/before ratios averaged over seeds (spread:
min..max over seeds), then the mean over domains against the goals (target MAD <= 0.90,
clean MAD <= 1.05, clip flicker <= 1.00 raw and with OFD).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from benchmarks import camera_domains
from modnet_jax.training.soc_recipes import RECIPES

GOALS = {"mad": 0.90, "clean_mad": 1.05, "flicker": 1.00, "flicker_ofd": 1.00}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder with image/ and matte/")
    p.add_argument("--init", help=".onnx export or checkpoint to adapt")
    p.add_argument("--tables", nargs="+", metavar="JSON",
                   help="only print the table of earlier --json files (e.g. one per domain)")
    p.add_argument("--size", type=int, default=256, help="square side (multiple of 32)")
    p.add_argument("--steps", type=int, default=30, help="SOC steps per run")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--domains", default=",".join(list(camera_domains.CAMERAS) + ["clip"]))
    p.add_argument("--recipes", default="release,paper")
    p.add_argument("--head-steps", type=int, default=40, help="head distillation steps")
    p.add_argument("--frames", type=int, default=24, help="frames per generated clip")
    p.add_argument("--max-held", type=int, default=10,
                   help="score at most this many held-out photos per split (cost)")
    p.add_argument("--prepare", choices=("onnx", "none"), default="onnx",
                   help="onnx: re-estimate BatchNorm and distil the heads per domain (an "
                        "export lacks both); none: adapt --init as it is (a trained checkpoint)")
    p.add_argument("--prepared-dir", default=None,
                   help="keep each domain's prepared weights here and reuse them")
    p.add_argument("--at-steps", default="",
                   help="also print the table of the model at these scored steps (e.g. 6,18)")
    p.add_argument("--json", default=None, help="also write every measurement here")
    p.add_argument("--compile-cache", default="/tmp/modnet_jax_soc_domain_cache",
                   help="JAX's persistent compilation cache (shared by parallel runs)")
    args = p.parse_args(argv)
    if not args.tables and not (args.data and args.init):
        p.error("give --data and --init (run), or --tables")
    bad = [r for r in args.recipes.split(",") if r not in RECIPES]
    if bad:
        p.error(f"unknown recipes {bad}; known: {', '.join(RECIPES)}")
    return args


class Scorer:
    """Everything measured on one domain's held-out data for a set of variables."""

    def __init__(self, fwd, held, held_gt, clean, clean_gt, clip_frames=None, chunk=6):
        self.chunk = chunk
        self.held, self.held_gt = held, held_gt.astype(np.float32) / 255.0
        self.clean, self.clean_gt = clean, clean_gt.astype(np.float32) / 255.0
        self.clip_frames = clip_frames  # the held-out clip's frames (flicker), or None
        self._fwd = fwd  # jit(variables, x) -> (semantic, detail, matte), shared by domains
        self.frozen, self.start = None, None

    def outputs(self, variables, images):
        """(semantic, detail, matte) numpy arrays for uint8 images, a fixed batch shape."""
        from modnet_jax.steps import normalize_image

        n = len(images)
        pad = (-n) % self.chunk
        x = np.concatenate([images, np.repeat(images[-1:], pad, 0)]) if pad else images
        outs = [self._fwd(variables, normalize_image(x[i:i + self.chunk]))
                for i in range(0, len(x), self.chunk)]
        return tuple(np.concatenate([np.asarray(o[k]) for o in outs])[:n] for k in range(3))

    def set_reference(self, variables):
        """M' on the held-out images (the SOC loss compares against it)."""
        self.frozen = self.outputs(variables, self.held)

    def clean_mad(self, variables):
        from modnet_jax import metrics

        m = self.outputs(variables, self.clean)[2]
        return float(np.mean([metrics.mad(m[i, ..., 0], self.clean_gt[i]) for i in range(len(m))]))

    def score(self, variables):
        from modnet_jax import metrics
        from modnet_jax.training.soc_report import flicker_pair, soc_loss_per_image

        sem, det, matte = self.outputs(variables, self.held)
        row = {"soc_loss": float(np.mean(soc_loss_per_image(
            sem, det, matte, self.frozen[1], self.frozen[2])))}
        rows = [metrics.compute_metrics(matte[i, ..., 0], self.held_gt[i])
                for i in range(len(matte))]
        for k in ("mad", "mse", "grad"):
            row[k] = float(np.mean([r[k] for r in rows]))
        if self.clip_frames is not None:
            row["flicker"], row["flicker_ofd"] = flicker_pair(self.clip_frames, matte[..., 0])
        return row


def prepare(model, variables, train_images, head_steps, seed):
    """Recalibrated BatchNorms + distilled heads on target-train images (as the trainer)."""
    from modnet_jax.steps import normalize_image
    from modnet_jax.training.heads import fit_training_heads
    from modnet_jax.training.recalibrate import recalibrate_batchnorm

    rng = np.random.default_rng(seed + 7919)
    draw = lambda n: np.asarray(normalize_image(  # noqa: E731
        train_images[rng.choice(len(train_images), n, replace=False)]))
    variables, _ = recalibrate_batchnorm(model, variables, [draw(4) for _ in range(4)])
    variables, losses = fit_training_heads(model, variables, [draw(2) for _ in range(head_steps)])
    return variables, losses


def prepared_for(args, model, base, domain, train):
    """``base`` prepared for ``domain`` (``--prepare``), read from / kept in --prepared-dir."""
    from flax import serialization

    if args.prepare == "none":
        return base
    path = None
    if args.prepared_dir:
        os.makedirs(args.prepared_dir, exist_ok=True)
        name = f"{domain}_{args.size}_{args.head_steps}_{args.frames}_{os.path.basename(args.init)}"
        path = os.path.join(args.prepared_dir, name + ".msgpack")
        if os.path.exists(path):
            with open(path, "rb") as f:
                return serialization.msgpack_restore(f.read())
    t = time.time()
    prepared, head_losses = prepare(model, base, train, args.head_steps, 0)
    print(f"  {domain}: prepared in {time.time() - t:.0f} s (head loss {head_losses[0]:.3f} "
          f"-> {head_losses[-1]:.3f})", flush=True)
    if path:
        with open(path, "wb") as f:
            f.write(serialization.msgpack_serialize(prepared))
    return prepared


_UPDATES = {}


def run_recipe(model, recipe, variables, train_images, scorer, steps, eval_every, seed,
               pairs=False):
    """SOC from ``variables``; returns {step: scores} at step 0, every eval_every, the end."""
    import jax

    from modnet_jax.training.soc_recipes import make_soc_update, pull_back

    if "soc" not in _UPDATES:  # one compiled update for every recipe and run
        _UPDATES["soc"] = make_soc_update(model)
    init, update = _UPDATES["soc"]
    opt_state, mask = init(recipe, variables["params"])
    params = anchor = variables["params"]
    frozen = variables
    stats = variables["batch_stats"]
    rng = np.random.default_rng(seed + 1)
    if scorer.start is None:  # step 0 is the prepared model, the same for every run
        scorer.start = dict(scorer.score(variables), train_loss=float("nan"))
    out = {0: dict(scorer.start)}
    losses = []
    for step in range(1, steps + 1):
        if recipe.refresh_every and step > 1 and (step - 1) % recipe.refresh_every == 0:
            frozen = {"params": params, "batch_stats": stats}
        if pairs:  # two neighbouring frames (the clip's frames are stored in order)
            i = int(rng.integers(len(train_images) - 1))
            batch = train_images[i:i + 2]
        else:
            batch = train_images[rng.integers(len(train_images))][None]
        before = params
        params, opt_state, terms = update(params, opt_state, stats, frozen, batch, mask,
                                          np.float32(recipe.temporal_weight))
        if recipe.pull:
            params = pull_back(params, before, anchor, mask, np.float32(recipe.pull))
        losses.append(float(terms["total"]))
        if step % eval_every == 0 or step == steps:
            v = jax.device_get({"params": params, "batch_stats": stats})
            out[step] = dict(scorer.score(v), train_loss=float(np.mean(losses[-eval_every:])),
                             clean_mad=scorer.clean_mad(v))  # what it forgets
    out[0]["clean_mad"] = scorer.clean_before
    return out


def picks(run):
    """The step each selection rule keeps: "fixed" the last, "early" the lowest held-out SOC
    loss, "guarded" the lowest held-out SOC loss among the steps whose held-out flicker
    (raw and with OFD; label-free, videos only) is not above step 0's (0 allowed)."""
    steps = sorted(run, key=int)
    first = run[steps[0]]
    ok = [s for s in steps if all(run[s].get(k, 0) <= first.get(k, 0)
                                  for k in ("flicker", "flicker_ofd"))]
    out = {"fixed": steps[-1], "early": min(steps, key=lambda s: run[s]["soc_loss"]),
           "guarded": min(ok, key=lambda s: run[s]["soc_loss"])}
    out.update({f"step {s}": s for s in steps})
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.tables:
        return print_merged(args.tables, args.at_steps)
    import jax

    # every run, domain and process compiles the same few programs: compile each once
    jax.config.update("jax_compilation_cache_dir", args.compile_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    from modnet_jax.models import model_from_config
    from modnet_jax.training.pretrained import load_init_variables

    t0 = time.time()
    images, mattes, _ = camera_domains.load_photos(args.data, args.size)
    parts = camera_domains.split(len(images))
    parts["held"], parts["clean"] = parts["held"][:args.max_held], parts["clean"][:args.max_held]
    clean, clean_gt = images[parts["clean"]], mattes[parts["clean"]]
    model = model_from_config(None)
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
    base = jax.device_get(load_init_variables(args.init))
    seeds = [int(s) for s in args.seeds.split(",")]
    recipes = args.recipes.split(",")
    results = {}  # domain -> recipe -> seed -> {step: row}
    print(f"{len(images)} photos at {args.size}x{args.size}: "
          + ", ".join(f"{k} {len(v)}" for k, v in parts.items()), flush=True)
    for domain in args.domains.split(","):
        if domain == "clip":
            c = camera_domains.clip_domain(args.size, args.frames)
            train, held = c["train"], c["held"]["frames"]
            held_gt, frames = c["held"]["alpha"], c["held"]["frames"]
        else:
            train = camera_domains.through_camera(domain, images, parts["train"])
            held = camera_domains.through_camera(domain, images, parts["held"])
            held_gt, frames = mattes[parts["held"]], None
        scorer = Scorer(fwd, held, held_gt, clean, clean_gt, frames)
        prepared = prepared_for(args, model, base, domain, train)
        scorer.set_reference(prepared)
        scorer.clean_before = scorer.clean_mad(prepared)
        results[domain] = {}
        for seed in seeds:  # seed-major: an interrupted run still has every recipe once
            for name in recipes:
                recipe = RECIPES[name]
                if (recipe.temporal_weight or recipe.pairs) and domain != "clip":
                    continue
                r = run_recipe(model, recipe, prepared, train, scorer, args.steps,
                               args.eval_every, seed, pairs=domain == "clip" and bool(
                                   recipe.temporal_weight or recipe.pairs))
                results[domain].setdefault(name, {})[seed] = r
                if args.json:  # after every run, so an interrupted benchmark keeps its runs
                    with open(args.json, "w") as f:
                        json.dump({"args": vars(args), "results": results}, f, indent=1)
                last = r[max(r)]
                print(f"[{time.time() - t0:5.0f} s] {domain} {name} seed {seed}: MAD "
                      f"{r[0]['mad']:.4f} -> {last['mad']:.4f}, clean {r[0]['clean_mad']:.4f}"
                      f" -> {last['clean_mad']:.4f}, held SOC {r[0]['soc_loss']:.4f} -> "
                      f"{last['soc_loss']:.4f}" + (f", flicker {r[0]['flicker']:.2e} -> "
                                                   f"{last['flicker']:.2e}" if frames is not None
                                                   else ""), flush=True)
    print_table(args, results, time.time() - t0)


def _pick(run, how):
    return run[picks(run)[how]] if how in picks(run) else None


def summarise(results, how):
    """{recipe: {domain: {metric: (mean ratio, min, max)}}}: after / before over seeds."""
    out = {}
    for domain, by_recipe in results.items():
        for name, by_seed in by_recipe.items():
            cell = {}
            for k in ("mad", "mse", "grad", "clean_mad", "soc_loss", "flicker", "flicker_ofd"):
                ratios = [_pick(run, how)[k] / run[min(run, key=int)][k]
                          for run in by_seed.values() if k in run[min(run, key=int)]
                          and _pick(run, how) is not None and k in _pick(run, how)]
                if ratios:
                    cell[k] = (float(np.mean(ratios)), float(min(ratios)), float(max(ratios)))
            if "mad" in cell and "clean_mad" in cell:
                out.setdefault(name, {})[domain] = cell
    return out


def print_merged(paths, at_steps=""):
    """The table of several --json files (their runs merged by domain, recipe and seed;
    settings from the first)."""
    results, settings = {}, None
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        settings = settings or d["args"]
        for domain, by_recipe in d["results"].items():
            for name, by_seed in by_recipe.items():
                results.setdefault(domain, {}).setdefault(name, {}).update({
                    seed: {int(k): v for k, v in run.items()} for seed, run in by_seed.items()})
    print_table(argparse.Namespace(**dict(settings, at_steps=at_steps)), results, None)


def print_table(args, results, seconds):
    print(f"\nSOC domain adaptation: {args.size}x{args.size}, {args.steps} steps (batch 1; "
          f"clip pairs batch 2), scored every {args.eval_every}; seeds {args.seeds}"
          + ("" if seconds is None else
             f"; {seconds / 60:.0f} min, load {os.getloadavg()[0]:.1f}"))
    print("cells: after/before ratio, mean over seeds [min..max]; MAD / clean MAD / flicker "
          "(raw, OFD) on the clip; goals n/a: the row lacks a domain")
    before = {d: next(iter(next(iter(r.values())).values()))[0] for d, r in results.items()}
    print("before: " + "; ".join(
        f"{d} MAD {b['mad']:.4f}" + (f" flicker {b['flicker']:.2e}/{b['flicker_ofd']:.2e}"
                                     if "flicker" in b else "") for d, b in before.items())
          + f"; clean MAD {next(iter(before.values()))['clean_mad']:.4f}")
    at = [f"step {s}" for s in str(getattr(args, "at_steps", "") or "").split(",") if s]
    for how in ["fixed", "early", "guarded"] + at:
        table = summarise(results, how)
        print(f"\n[{how}] " + {"fixed": "after all steps", "early": "lowest held-out SOC loss (step 0 "
                 "allowed)", "guarded": "lowest held-out SOC loss among steps whose "
                 "held-out flicker did not rise (videos)"}.get(how, "the model at that step"))
        domains = list(results)
        print(f"{'recipe':<16}" + "".join(f"{d:>22}" for d in domains)
              + f"{'mean MAD':>10}{'clean':>8}{'goals':>7}")
        for name, cells in table.items():
            line = f"{name:<16}"
            for d in domains:
                c = cells.get(d)
                line += f"{'':>22}" if c is None else f"{c['mad'][0]:>7.3f} [{c['mad'][1]:.2f}..{c['mad'][2]:.2f}]"[:22].rjust(22)
            mads = [c["mad"][0] for c in cells.values()]
            cleans = [c["clean_mad"][0] for c in cells.values()]
            ok = (np.mean(mads) <= GOALS["mad"] and np.mean(cleans) <= GOALS["clean_mad"]
                  and all(c[k][0] <= GOALS[k] for c in cells.values()
                          for k in ("flicker", "flicker_ofd") if k in c))
            verdict = "n/a" if len(cells) < len(domains) else "met" if ok else "no"
            line += f"{np.mean(mads):>10.3f}{np.mean(cleans):>8.3f}{verdict:>7}"
            print(line)
            extra = [f"{d}: clean {c['clean_mad'][0]:.3f} SOC {c['soc_loss'][0]:.3f} grad "
                     f"{c['grad'][0]:.3f}" + (f" flicker {c['flicker'][0]:.3f} OFD "
                                              f"{c['flicker_ofd'][0]:.3f}" if "flicker" in c
                                              else "") for d, c in cells.items()]
            print("    " + "; ".join(extra))


if __name__ == "__main__":
    main()
