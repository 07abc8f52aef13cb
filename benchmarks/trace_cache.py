"""Does the trace cache (``modnet_jax/inference/trace_cache.py``) pay on a real job?

    python -m benchmarks.trace_cache --checkpoint CKPT --photos FOLDER [--repeats 2]

``predict FOLDER`` in fresh processes sharing one compile cache folder (new for this run):
cold with the trace cache on, cold with it off (``MODNET_JAX_TRACE_CACHE=off``; each side's
compiles are then cached), then warm reruns alternating on and off ``--repeats`` times each, so
a change of machine load hits both sides. The table: wall time and CPU seconds of the process
(all threads), each run and the median, and on / off. The load average is printed beside it:
on a shared machine read the CPU seconds as well as the wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, cache: str, out: str, trace_cache: bool):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT"))}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["MODNET_JAX_TRACE_CACHE"] = "on" if trace_cache else "off"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "modnet_jax.predict", "--checkpoint", args.checkpoint,
           args.photos, "--output", out, "--compile-cache", cache, "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"  {'on ' if trace_cache else 'off'}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    return wall, cpu


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--photos", required=True, help="a folder of photos")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workdir", default=None, help="default: a temporary folder, removed")
    args = p.parse_args(argv)
    work = args.workdir or tempfile.mkdtemp(prefix="trace_cache_bench_")
    cache, out = os.path.join(work, "cache"), os.path.join(work, "out")
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(cache + "-traces", ignore_errors=True)
    loads = [os.getloadavg()[0]]
    rows = {"cold": {}, "warm": {True: [], False: []}}
    print("cold")
    for on in (True, False):
        rows["cold"][on] = run(args, cache, out, on)
    print("warm")
    for _ in range(args.repeats):
        for on in (True, False):
            rows["warm"][on].append(run(args, cache, out, on))
    loads.append(os.getloadavg()[0])
    print(f"\n{'job':14} {'trace cache':>11} {'wall s':>22} {'CPU s':>22}")
    for on in (True, False):
        wall, cpu = rows["cold"][on]
        print(f"{'cold folder':14} {'on' if on else 'off':>11} {wall:22.1f} {cpu:22.1f}")
    med = {}
    for on in (True, False):
        walls, cpus = zip(*rows["warm"][on])
        med[on] = statistics.median(walls), statistics.median(cpus)
        print(f"{'warm rerun':14} {'on' if on else 'off':>11} "
              f"{' '.join(f'{w:.1f}' for w in walls) + f' (med {med[on][0]:.1f})':>22} "
              f"{' '.join(f'{c:.1f}' for c in cpus) + f' (med {med[on][1]:.1f})':>22}")
    print(f"warm on / off: wall {med[True][0] / med[False][0]:.2f}, "
          f"CPU {med[True][1] / med[False][1]:.2f}; cold on / off: wall "
          f"{rows['cold'][True][0] / rows['cold'][False][0]:.2f}")
    print(f"load average (1 min) at start / end: {loads[0]:.1f} / {loads[1]:.1f}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
