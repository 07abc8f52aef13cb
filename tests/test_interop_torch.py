"""JAX <-> PyTorch parity through the converted weights, refereed by tests/torch_reference.py.

Two checks per case, on the same fp32-valued weights and image:

* fp64: JAX (``dtype=float64`` under ``jax.enable_x64``) vs PyTorch in float64 must agree to
  ``EXACT`` (outputs and updated running statistics): the converted model computes the same
  function, with no rounding noise hiding a small error.
* fp32: the real use; ``interop_utils.parity`` explains the criterion (on random weights fp32
  rounding alone moves the outputs by a few 1e-5 in PyTorch itself).

Fast tests run at 64x96 (batch 2, non-square): fp32 in eval mode and fp64 in train mode (two
compiles; train mode exercises every layer, eval mode the running statistics). All four
combinations at the release sizes 512x512 and 480x640 are slow tests (``pytest -m slow``).
Every comparison prints its figures (``-s`` shows them).
"""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interop_utils import (  # noqa: E402
    max_diff,
    nchw,
    parity,
    random_flax_variables,
    state_dict_numpy,
    stats_vector,
    torch_runs,
)
from torch_reference import ReferenceMODNet, channels_last, randomize_  # noqa: E402

from modnet_jax.interop import keys, torch_io  # noqa: E402
from modnet_jax.models import model_from_config  # noqa: E402

NAMES = ("semantic", "detail", "matte")
FAST = (2, 64, 96, 3)
EXACT = 1e-9  # fp64 JAX vs fp64 PyTorch (measured ~1e-12): the port computes the same function


@pytest.fixture(scope="module")
def jax_fns():
    """{(precision, train): jitted apply}; fp64 functions are traced and run under x64."""
    fns = {}
    for precision in ("fp32", "fp64"):
        model = model_from_config({"dtype": "float64" if precision == "fp64" else "float32"})
        fns[precision, False] = jax.jit(
            lambda v, x, m=model: (m.apply(v, x, train=False), None))
        fns[precision, True] = jax.jit(
            lambda v, x, m=model: m.apply(v, x, train=True, mutable=["batch_stats"]))
    return fns


@pytest.fixture(scope="module")
def jax_weights():
    """Random weights made on the JAX side, and the reference loaded from their conversion."""
    variables = random_flax_variables(seed=11)
    net = ReferenceMODNet()
    net.load_state_dict(torch_io.to_tensors(keys.flax_to_torch(variables)), strict=True)
    return variables, net


@pytest.fixture(scope="module")
def torch_weights():
    """Random weights made on the torch side (BN stats calibrated), converted to Flax."""
    net = randomize_(ReferenceMODNet(), seed=5)
    variables, kind = keys.torch_to_flax(state_dict_numpy(net))
    assert kind == "modnet"
    return variables, net


def _image(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _run_jax(jax_fns, precision, train, variables, x):
    if precision == "fp32":
        return jax_fns[precision, train](variables, x)
    with jax.enable_x64(True):  # same (fp32-valued) weights and image, computed in fp64
        up = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables)
        outs, updated = jax_fns[precision, train](up, x.astype(np.float64))
        return jax.tree_util.tree_map(np.asarray, (outs, updated))


def _stats_fp64(updated, n64):
    """max relative |JAX - torch| over every BN running statistic, both in fp64."""
    torch_sd = n64.state_dict()
    worst = 0.0
    for e in keys.modnet_entries():
        if e.collection == "batch_stats" and not e.alias:
            got = updated["batch_stats"]
            for part in e.flax_path:
                got = got[part]
            worst = max(worst, max_diff(got, torch_sd[e.torch_key].numpy(), relative=True))
    return worst


def compare(jax_fns, variables, net, shape, train, label, precision="fp32"):
    """Run JAX and torch (fp32 and fp64) on one input; assert parity, print the figures.

    fp32: ``interop_utils.parity`` (JAX as close to the fp64 result as PyTorch fp32 is).
    fp64: JAX fp64 vs PyTorch fp64 on the same weights, max |diff| <= EXACT (exactness).
    """
    x = _image(shape)
    outs, updated = _run_jax(jax_fns, precision, train, variables, x)
    o32, o64, n32, n64 = torch_runs(net, x, train)
    report = {}
    for name, got, a, b in zip(NAMES, outs, o32, o64):
        assert got.shape == a.shape, (name, got.shape, a.shape)
        if precision == "fp64":
            report[name] = {"jax64_vs_torch64": max_diff(got, b)}
            assert report[name]["jax64_vs_torch64"] <= EXACT, (label, name, report[name])
        else:
            report[name] = parity(got, a, b, f"{label} {name}")
    if train and precision == "fp64":
        report["running stats (rel)"] = {"jax64_vs_torch64": _stats_fp64(updated, n64)}
        assert report["running stats (rel)"]["jax64_vs_torch64"] <= EXACT
    elif train:  # running statistics after one train-mode step (PyTorch's unbiased-var rule)
        s32, _ = keys.torch_to_flax(state_dict_numpy(n32))
        s64, _ = keys.torch_to_flax(state_dict_numpy(n64))
        report["running stats (rel)"] = parity(
            stats_vector(updated["batch_stats"]), stats_vector(s32["batch_stats"]),
            stats_vector(s64["batch_stats"]), f"{label} stats", relative=True)
    for name, fig in report.items():
        print(f"\n{label} {precision} {'train' if train else 'eval'} {name}: " +
              ", ".join(f"{k} {v:.2e}" for k, v in fig.items()), end="")
    return report


DIRECTIONS = pytest.mark.parametrize("direction", ["jax->torch", "torch->jax"],
                                     ids=["jax_to_torch", "torch_to_jax"])
MODES = pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
PRECISIONS = pytest.mark.parametrize("precision", ["fp32", "fp64"])


def _weights(direction, jax_weights, torch_weights):
    return jax_weights if direction == "jax->torch" else torch_weights


@pytest.mark.parametrize("precision,train", [("fp32", False), ("fp64", True)],
                         ids=["fp32-eval", "fp64-train"])  # the rest: slow, release sizes
@DIRECTIONS
def test_parity(jax_fns, jax_weights, torch_weights, direction, train, precision):
    variables, net = _weights(direction, jax_weights, torch_weights)
    compare(jax_fns, variables, net, FAST, train, f"{direction} 2x64x96", precision)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(512, 512), (480, 640)], ids=["512x512", "480x640"])
@PRECISIONS
@MODES
@DIRECTIONS
def test_parity_at_release_sizes(jax_fns, jax_weights, torch_weights, direction, train,
                                 precision, size):
    variables, net = _weights(direction, jax_weights, torch_weights)
    compare(jax_fns, variables, net, (1,) + size + (3,), train,
            f"{direction} 1x{size[0]}x{size[1]}", precision)


def test_jax_torch_jax_round_trip_through_a_file_is_bit_exact(jax_weights, tmp_path):
    variables, _ = jax_weights
    path = str(tmp_path / "m.ckpt")
    torch_io.save_state_dict_file(keys.flax_to_torch(variables, dataparallel=True), path)
    back, _ = keys.torch_to_flax(torch_io.load_state_dict_file(path))
    same = jax.tree_util.tree_map(lambda a, b: a.dtype == b.dtype and np.array_equal(a, b),
                                  variables, back)
    assert all(jax.tree_util.tree_leaves(same))


def test_reference_has_the_release_key_layout():
    ref = ReferenceMODNet().state_dict()
    assert [(k, tuple(v.shape)) for k, v in ref.items()] == [
        (e.torch_key, e.torch_shape) for e in keys.modnet_entries()]
    assert ref["backbone.model.features.7.conv.1.num_batches_tracked"].dtype == torch.int64
    wrapped = torch.nn.DataParallel(ReferenceMODNet()).state_dict()
    assert list(wrapped) == ["module." + e.torch_key for e in keys.modnet_entries()]


@pytest.mark.parametrize("dataparallel", [False, True], ids=["plain", "module."])
def test_strict_load_into_the_official_layout(jax_weights, dataparallel):
    """What the official loaders do: (DataParallel-wrapped) model, load_state_dict(strict)."""
    variables, _ = jax_weights
    sd = torch_io.to_tensors(keys.flax_to_torch(variables, 3, dataparallel))
    target = ReferenceMODNet()
    holder = torch.nn.DataParallel(target) if dataparallel else target
    result = holder.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    kernel = variables["params"]["backbone"]["features_0_0"]["kernel"]
    np.testing.assert_array_equal(
        target.lr_branch.backbone.model.features[0][0].weight.detach().numpy(),
        kernel.transpose(3, 2, 0, 1))
    assert int(target.backbone.model.features[0][1].num_batches_tracked) == 3
    torch_io.torch_model(keys.flax_to_torch(variables, 3, dataparallel))  # the package's model


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_package_torch_model_equals_reference(torch_weights, train):
    """The release-named model used for ONNX export computes what the referee computes."""
    _, net = torch_weights
    ours = torch_io.torch_model(state_dict_numpy(net)).train(train)
    ref = ReferenceMODNet()
    ref.load_state_dict(net.state_dict())
    x = torch.from_numpy(nchw(_image(FAST, 3)))
    with torch.no_grad():
        got, want = ours(x), ref.train(train)(x)
    for a, b in zip(got, want):
        assert float((a - b).abs().max()) <= 1e-6
    if train:  # and updates the running statistics alike
        for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
            assert torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-7), k


def test_reference_runs_in_channels_last(torch_weights):
    _, net = torch_weights
    x = torch.from_numpy(nchw(_image(FAST, 4)))
    with torch.no_grad():
        want = net.eval()(x)
        cl = channels_last(ReferenceMODNet())
        cl.load_state_dict(net.state_dict())
        got = cl.eval()(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(got, want):
        assert float((a - b).abs().max()) <= 1e-4


def test_inference_flag_matches(torch_weights):
    _, net = torch_weights
    x = torch.from_numpy(nchw(_image(FAST, 6)))
    with torch.no_grad():
        semantic, detail, matte = net.eval()(x, inference=True)
        full = net(x, inference=False)[2]
    assert semantic is None and detail is None and torch.equal(matte, full)
