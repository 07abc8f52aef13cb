"""Load test of ``python -m modnet_jax.serve`` over loopback: N concurrent clients posting photos
to ``/v1/matte`` for a fixed time, against two servers started side by side from the same
checkpoint -- the batching worker (default) and one request at a time (``--max-batch 1``).

    python -m benchmarks.serve_load [--checkpoint CKPT] [--clients 1,4,16,64] [--seconds 15]
        [--size 320x240] [--ref-size 256] [--max-queue 32] [--max-requests 3000]

Per server and client count: requests/s answered 200, p50/p95 latency of those, answers by
status code (an honest 503 with Retry-After when the queue is full; clients wait
``--backoff`` s and send again), requests lost (sent without any answer: timeouts, resets),
the server's peak resident memory (sampled from /proc) and whether ``/v1/health`` answers
afterwards. Each level alternates between the two servers in ``--rounds`` rounds (A B A B
...), so a change in machine load hits both; the ratio column is batched / one-at-a-time. With
one client both servers run the same code path (a batch of one), so that row's ratio shows
how far the machine's noise alone moves the figures.

The servers run with serve's defaults (on a CPU: split into host devices, each matting one of
the photos that come together, as predict does); the warm-up runs every level twice before
timing, so the programs they need are compiled.
Without ``--checkpoint`` the release architecture with random weights is used (the speed does
not depend on the weights). Bounded: each level stops after ``--seconds`` or
``--max-requests`` answers, whichever is first. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Dict, List, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_checkpoint(folder: str) -> str:
    """The release MODNet with random weights (abstract init: nothing is compiled)."""
    from modnet_jax import checkpointing
    from modnet_jax.models.random_weights import random_variables

    variables = random_variables(0, {})
    return checkpointing.save_variables(folder, variables, model_config={})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class ServerProcess:
    def __init__(self, name: str, argv: List[str], log_dir: str):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(log_dir, f"{name}.log"), "w")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modnet_jax.serve", "--port", str(self.port)] + argv,
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def wait_ready(self, timeout: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"error: server {self.name} exited; see {self.log.name}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"error: server {self.name} did not start in {timeout:.0f} s")

    def healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(self.url + "/v1/health", timeout=30).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def load(url: str, body: bytes, clients: int, seconds: float, max_requests: int,
               backoff: float) -> Dict:
    import httpx

    latencies: List[float] = []
    codes: Counter = Counter()
    sent = [0]
    stop_at = time.monotonic() + seconds

    async def client(http):
        while time.monotonic() < stop_at and sum(codes.values()) < max_requests:
            sent[0] += 1
            t0 = time.perf_counter()
            try:
                r = await http.post(url + "/v1/matte", content=body)
                codes[r.status_code] += 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                elif r.status_code == 503:
                    await asyncio.sleep(backoff)
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    elapsed = time.monotonic() - started
    answered = sum(v for k, v in codes.items() if isinstance(k, int))
    return {"elapsed": elapsed, "codes": codes, "latencies": latencies,
            "lost": sent[0] - answered}


class Level:
    """One server at one client count, summed over its rounds."""

    def __init__(self, server: ServerProcess, clients: int):
        self.server, self.clients = server, clients
        self.elapsed, self.codes, self.latencies, self.lost = 0.0, Counter(), [], 0
        self.peak = 0.0

    def run(self, body: bytes, seconds: float, max_requests: int, backoff: float) -> None:
        pid = self.server.proc.pid
        self.peak = max(self.peak, rss_mib(pid))
        done = threading.Event()

        def sample():
            while not done.wait(0.2):
                self.peak = max(self.peak, rss_mib(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = asyncio.run(load(self.server.url, body, self.clients, seconds, max_requests,
                                  backoff))
        done.set()
        sampler.join()
        self.elapsed += result["elapsed"]
        self.codes.update(result["codes"])
        self.latencies += result["latencies"]
        self.lost += result["lost"]

    def row(self) -> Dict:
        lat = np.asarray(self.latencies) * 1000
        ok = self.codes.get(200, 0)
        return {"server": self.server.name, "clients": self.clients, "ok": ok,
                "rate": ok / self.elapsed if self.elapsed else 0.0,
                "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "codes": ", ".join(f"{k}: {v}" for k, v in sorted(self.codes.items(),
                                                                 key=lambda kv: str(kv[0]))),
                "lost": self.lost, "rss": self.peak, "healthy": self.server.healthy()}


def warm_up(server: ServerProcess, body: bytes, clients: List[int]) -> None:
    """Compile what the levels will need (batch 1 and full batches) before timing: each level
    for a moment, twice."""
    for _ in range(2):
        for n in clients:
            asyncio.run(load(server.url, body, n, 2.0, 4 * n, 0.1))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None,
                   help="a checkpoint serve accepts (default: release architecture, random "
                        "weights)")
    p.add_argument("--clients", default="1,4,16,64")
    p.add_argument("--seconds", type=float, default=15.0, help="per level and server")
    p.add_argument("--max-requests", type=int, default=3000, help="per level and server")
    p.add_argument("--size", default="320x240", help="photo WIDTHxHEIGHT (JPEG)")
    p.add_argument("--ref-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-queue", type=int, default=32)
    p.add_argument("--backoff", type=float, default=0.5, help="client wait after a 503 (s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="each level alternates the servers this many times (default: 3)")
    args = p.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    width, height = (int(v) for v in args.size.lower().split("x"))

    import cv2

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 128.0)], -1)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    body = cv2.imencode(".jpg", image)[1].tobytes()

    work = tempfile.mkdtemp(prefix="serve_load_")
    servers: List[ServerProcess] = []
    try:
        checkpoint = args.checkpoint or random_checkpoint(os.path.join(work, "ckpt"))
        common = ["--checkpoint", checkpoint, "--ref-size", str(args.ref_size), "--ref-sizes",
                  "", "--batch-size", str(args.batch_size), "--max-queue", str(args.max_queue)]
        servers = [ServerProcess("batched", common, work),
                   ServerProcess("one-at-a-time", common + ["--max-batch", "1"], work)]
        for s in servers:
            s.wait_ready()
            warm_up(s, body, clients)
        load_before = os.getloadavg()
        started = datetime.datetime.now(datetime.timezone.utc)
        rows = []
        for n in clients:
            levels = [Level(s, n) for s in servers]
            for _ in range(args.rounds):  # A B A B ...: drifting machine load hits both
                for level in levels:
                    level.run(body, args.seconds / args.rounds,
                              max(1, args.max_requests // args.rounds), args.backoff)
            for level in levels:
                rows.append(level.row())
                print(f"  {rows[-1]['server']:>13} x{n:<3} {rows[-1]['rate']:.2f} req/s",
                      file=sys.stderr, flush=True)
        load_after = os.getloadavg()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
          f"{load_before[0]:.1f} before / {load_after[0]:.1f} after; photo {width}x{height} "
          f"JPEG ({len(body) / 1e3:.0f} kB), ref size {args.ref_size}, batch size "
          f"{args.batch_size}, queue {args.max_queue}, {args.seconds:g} s per level and server in "
          f"{args.rounds} alternating rounds\n")
    print("| server | clients | 200s | req/s | p50 ms | p95 ms | answers by code | lost | "
          "peak RSS MiB | healthy after | batched / one-at-a-time |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|")
    by = {(r["server"], r["clients"]): r for r in rows}
    for r in rows:
        base = by.get(("one-at-a-time", r["clients"]))
        ratio = (f"{r['rate'] / base['rate']:.2f}x" if r["server"] == "batched" and base
                 and base["rate"] > 0 else "")
        print(f"| {r['server']} | {r['clients']} | {r['ok']} | {r['rate']:.2f} | "
              f"{r['p50']:.0f} | {r['p95']:.0f} | {r['codes']} | {r['lost']} | "
              f"{r['rss']:.0f} | {'yes' if r['healthy'] else 'NO'} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
