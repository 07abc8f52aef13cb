"""benchmarks/gpu_suite.py is correct before it reaches a GPU: its smoke mode (tiny sizes,
on CPU) measures every kind of row and writes the JSON and the table; the per-measurement
time limit and the suite budget stop what would overrun."""

import json
import os
import time

import pytest

from benchmarks import gpu_suite


def test_smoke_run_writes_every_row(tmp_path):
    out = str(tmp_path / "suite")
    rc = gpu_suite.main(["--smoke", "--out", out, "--dtypes", "bfloat16",
                         "--infer-batches", "2", "--budget-s", "900", "--item-limit-s", "600"])
    with open(os.path.join(out, "gpu_suite.json")) as f:
        report = json.load(f)
    items = report["items"]
    assert rc == 0, [(i["kind"], i["framework"], i.get("status")) for i in items]
    kinds = {(i["kind"], i["framework"]) for i in items}
    assert kinds == {("train", "jax"), ("train", "torch"), ("inference", "jax"),
                     ("video engine", "jax")}
    for i in items:
        assert i["status"] == "ok" and i["img_s"] > 0 and i["repeats"] >= 1
        # TFLOP/s = nominal FLOPs per call / median seconds per call (64x64 smoke images).
        scale = (64 * 64) / (512 * 512)
        if i["kind"] == "train":
            flops = 2 * 3 * 18.12e9 * scale * i["batch"]
        elif i["kind"] == "inference":
            flops = 2 * 15.47e9 * scale * i["batch"]
        else:  # one video frame at the engine's model input size
            w, h = (int(v) for v in i["model_input"].split("x"))
            flops = 2 * 15.47e9 * (w * h) / (512 * 512)
        assert i["tflops"] == pytest.approx(flops / i["median_s"] / 1e12, rel=1e-9)
    with open(os.path.join(out, "gpu_suite.md")) as f:
        table = f.read()
    assert table.count("| ok |") == len(items)
    assert "JAX/torch img/s" in table and "% of peak" in table


def test_item_time_limit_and_budget(tmp_path):
    """A measurement that overruns its limit is interrupted and recorded as a timeout; once
    the budget is spent the rest are skipped; the JSON writer runs after each one."""
    def slow(args, weights, dtype, batch, limit):
        end = time.perf_counter() + 30
        while time.perf_counter() < end:  # Python-level work: the timer can interrupt it
            sum(range(1000))
        return {"img_s": 1.0}

    def quick(args, weights, dtype, batch, limit):
        return {"img_s": 2.0, "median_s": 0.5, "min_s": 0.5, "tflops": 0.0, "repeats": 1}

    args = gpu_suite.build_parser().parse_args(["--budget-s", "1.5", "--item-limit-s", "1",
                                                "--min-item-s", "0.6"])
    items = [{"kind": "k", "framework": "f", "dtype": "d", "batch": b, "fn": fn}
             for b, fn in ((1, quick), (2, slow), (3, quick))]
    writes = []
    start = time.perf_counter()
    gpu_suite.run_items(args, None, items, lambda: writes.append(1))
    assert time.perf_counter() - start < 5
    assert [i["status"] for i in items] == ["ok", "timeout after 1 s",
                                            "skipped: suite budget spent"]
    assert items[0]["img_s"] == 2.0 and len(writes) == 2
