"""Does the data loader slow the training step? Step time fed by the real Grain pipeline vs
fed one pre-made batch from memory, same model, same compiled step.

  python -m benchmarks.loader_overhead                       # quick config: 96x96, batch 8
  python -m benchmarks.loader_overhead --image-size 128 --batch-size 8 --steps 40

Prints a table with the median step time of each and their ratio (goal <= 1.1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from modnet_jax import parallel, steps
from modnet_jax import state as state_lib
from modnet_jax.data import make_train_iterator
from modnet_jax.models import init_variables, model_from_config


def time_steps(step, st, batches, devices, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        st, metrics = step(st, parallel.shard_batch(next(batches), devices))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    return st, times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--num-workers", type=int, default=0)
    args = ap.parse_args()

    devices = parallel.local_devices(1)
    model = model_from_config(None, axis_name=parallel.AXIS)
    variables = init_variables(model_from_config(None), jax.random.key(0))
    tx = state_lib.make_optimizer(None, 100)
    st = parallel.replicate(state_lib.create_train_state(model, variables, tx), devices)
    step = steps.build_supervised_step(model, devices)
    data = {"synthetic_size": 1024, "num_workers": args.num_workers}
    it = make_train_iterator(data, batch_size=args.batch_size, seed=0,
                             image_size=args.image_size)
    fixed = next(it)

    def memory():
        while True:
            yield fixed

    st, _ = time_steps(step, st, memory(), devices, args.warmup)  # compile + warm up
    st, t_mem = time_steps(step, st, memory(), devices, args.steps)
    st, t_real = time_steps(step, st, it, devices, args.steps)
    m_mem, m_real = statistics.median(t_mem), statistics.median(t_real)
    print(f"{args.image_size}x{args.image_size}, batch {args.batch_size}, {args.steps} steps, "
          f"{jax.device_count()} {jax.default_backend()} device(s), "
          f"{args.num_workers} loader workers")
    print("| feed | median step (ms) | img/s |\n|---|---|---|")
    print(f"| in-memory batch | {1e3 * m_mem:.1f} | {args.batch_size / m_mem:.1f} |")
    print(f"| Grain pipeline | {1e3 * m_real:.1f} | {args.batch_size / m_real:.1f} |")
    print(f"ratio pipeline / in-memory: {m_real / m_mem:.3f} (goal <= 1.1)")


if __name__ == "__main__":
    main()
