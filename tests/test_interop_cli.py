"""convert_to_torch / convert_from_torch end to end: files, errors, ONNX, torch-less installs."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interop_utils import parity, random_flax_variables, state_dict_numpy  # noqa: E402
from torch_reference import ReferenceMODNet, randomize_  # noqa: E402

from modnet_jax import convert_from_torch, convert_to_torch  # noqa: E402
from modnet_jax.checkpointing import load_variables, save_variables  # noqa: E402
from modnet_jax.interop import INSTALL_HINT, keys, torch_io  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Evil:
    """Pickled by reference: loading it needs this class, i.e. code from the file's author."""


class Shell:
    """Unpickling this would call os.system."""

    def __reduce__(self):
        return os.system, ("echo pwned",)


def _bit_equal(a, b) -> bool:
    same = jax.tree_util.tree_map(lambda x, y: x.dtype == y.dtype and np.array_equal(x, y),
                                  dict(a), dict(b))
    return all(jax.tree_util.tree_leaves(same))


def _fail(main, argv, capsys) -> str:
    """Run a CLI expected to fail; return its one stderr line (checked: error:, no traceback)."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A saved Flax checkpoint (step 7) and its conversion with the module. prefix + ONNX."""
    root = tmp_path_factory.mktemp("interop_cli")
    variables = random_flax_variables(seed=21)
    save_variables(str(root / "jax"), variables, step=7)
    argv = ["--checkpoint", str(root / "jax"), "--output", str(root / "dp.ckpt"),
            "--dataparallel", "--onnx", str(root / "m.onnx")]
    assert convert_to_torch.main(argv) == 0
    return root, variables


def test_to_torch_writes_the_release_layout(workdir):
    root, variables = workdir
    sd = torch.load(str(root / "dp.ckpt"), map_location="cpu", weights_only=True)
    assert list(sd) == ["module." + e.torch_key for e in keys.modnet_entries()]
    assert sd["module.lr_branch.conv_lr8x.layers.1.bnorm.num_batches_tracked"].item() == 7
    holder = torch.nn.DataParallel(ReferenceMODNet())
    holder.load_state_dict(sd, strict=True)  # what the official demo does
    assert convert_to_torch.main(["--checkpoint", str(root / "jax" / "7"),
                                  "--output", str(root / "plain.ckpt")]) == 0
    ReferenceMODNet().load_state_dict(torch.load(str(root / "plain.ckpt"), weights_only=True),
                                      strict=True)


@pytest.mark.parametrize("name", ["dp.ckpt", "plain.ckpt"])
def test_jax_torch_jax_is_bit_exact_through_the_clis(workdir, name, tmp_path):
    root, variables = workdir
    if not (root / name).exists():
        convert_to_torch.main(["--checkpoint", str(root / "jax"), "--output", str(root / name)])
    out = str(tmp_path / "back")
    assert convert_from_torch.main(["--input", str(root / name), "--output", out]) == 0
    assert _bit_equal(load_variables(out), variables)


def test_onnx_export_matches_torch_with_dynamic_shapes(workdir):
    """ONNX Runtime vs the torch model, at two sizes and batches unlike the export's dummy."""
    import onnxruntime as ort

    root, _ = workdir
    state = torch_io.load_state_dict_file(str(root / "dp.ckpt"))
    model = torch_io.torch_model(state)
    session = ort.InferenceSession(str(root / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    for shape in [(2, 3, 64, 96), (1, 3, 96, 64)]:
        x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
        got = session.run(None, {"input": x})[0]
        with torch.no_grad():
            t32 = model(torch.from_numpy(x), inference=True)[2].numpy()
            t64 = model.double()(torch.from_numpy(x).double(), inference=True)[2].numpy()
            model.float()
        fig = parity(got, t32, t64, f"onnx {shape}")
        print(f"\nonnx {shape}: " + ", ".join(f"{k.replace('jax', 'onnx')} {v:.2e}"
                                              for k, v in fig.items()), end="")


@pytest.mark.parametrize("payload,name", [(Evil, "Evil"), (Shell, "system")])
def test_refused_pickle_is_one_line(tmp_path, capsys, payload, name):
    path = str(tmp_path / "evil.ckpt")
    torch.save({"backbone.model.features.0.0.weight": torch.zeros(1), "x": payload()}, path)
    line = _fail(convert_from_torch.main, ["--input", path, "--output", str(tmp_path / "o")],
                 capsys)
    assert "refused" in line and "weights_only" in line and name in line, line


def test_truncated_file_is_one_line(workdir, tmp_path, capsys):
    root, _ = workdir
    data = (root / "plain.ckpt").read_bytes() if (root / "plain.ckpt").exists() else \
        (root / "dp.ckpt").read_bytes()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[: len(data) // 2])
    line = _fail(convert_from_torch.main, ["--input", str(path), "--output",
                                           str(tmp_path / "o")], capsys)
    assert "cannot read" in line and "truncated" in line, line


def test_missing_and_misshapen_keys_are_named(workdir, tmp_path, capsys):
    root, _ = workdir
    sd = torch.load(str(root / "dp.ckpt"), weights_only=True)
    del sd["module.hr_branch.conv_hr.0.layers.0.weight"]
    sd["module.f_branch.conv_f.1.layers.0.bias"] = torch.zeros(2)
    path = str(tmp_path / "bad.ckpt")
    torch.save(sd, path)
    line = _fail(convert_from_torch.main, ["--input", path, "--output", str(tmp_path / "o")],
                 capsys)
    assert "1 missing: hr_branch.conv_hr.0.layers.0.weight" in line, line
    assert "f_branch.conv_f.1.layers.0.bias (2,) != (1,)" in line, line


def test_other_user_errors_are_one_line(workdir, tmp_path, capsys):
    root, _ = workdir
    _fail(convert_from_torch.main, ["--input", str(tmp_path / "nope.ckpt"), "--output",
                                    str(tmp_path / "o")], capsys)
    torch.save([torch.zeros(2)], str(tmp_path / "list.ckpt"))
    assert "not a state_dict" in _fail(convert_from_torch.main, [
        "--input", str(tmp_path / "list.ckpt"), "--output", str(tmp_path / "o")], capsys)
    _fail(convert_to_torch.main, ["--checkpoint", str(tmp_path / "none"), "--output",
                                  str(tmp_path / "x.ckpt")], capsys)
    assert "already holds step 7" in _fail(convert_from_torch.main, [
        "--input", str(root / "dp.ckpt"), "--output", str(root / "jax"), "--step", "7"], capsys)
    save_variables(str(tmp_path / "easpp"), random_flax_variables(3, {"lr_branch": "easpp"}))
    assert "lr_branch='se'" in _fail(convert_to_torch.main, [
        "--checkpoint", str(tmp_path / "easpp"), "--output", str(tmp_path / "e.ckpt")], capsys)


def test_error_exit_of_a_real_process(tmp_path):
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(b"not a checkpoint at all")
    proc = subprocess.run([sys.executable, "-m", "modnet_jax.convert_from_torch", "--input",
                           str(path), "--output", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: cannot read"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def _backbone_file(tmp_path) -> tuple:
    net = randomize_(ReferenceMODNet(), seed=8)
    sd = state_dict_numpy(net)
    bare = {k[len(keys.BACKBONE):]: v for k, v in sd.items() if k.startswith(keys.BACKBONE)}
    path = str(tmp_path / "mobilenetv2_human_seg.ckpt")
    torch_io.save_state_dict_file(bare, path)
    return path, keys.torch_to_flax(sd)[0]


def test_backbone_only_file_initialises_only_the_backbone(tmp_path, monkeypatch):
    """The CLI wiring, with the (slow to compile) release init replaced by random numbers."""
    base = random_flax_variables(seed=4)
    monkeypatch.setattr("modnet_jax.models.create_model", lambda cfg, rng: (None, base))
    path, want = _backbone_file(tmp_path)
    assert convert_from_torch.main(["--input", path, "--output", str(tmp_path / "o")]) == 0
    got = load_variables(str(tmp_path / "o"))
    for c in ("params", "batch_stats"):
        assert _bit_equal(got[c]["backbone"], want[c]["backbone"])
        rest = {k: v for k, v in got[c].items() if k != "backbone"}
        assert _bit_equal(rest, {k: v for k, v in base[c].items() if k != "backbone"})


@pytest.mark.slow
def test_backbone_only_file_with_the_real_init(tmp_path):
    path, want = _backbone_file(tmp_path)
    assert convert_from_torch.main(["--input", path, "--output", str(tmp_path / "o")]) == 0
    got = load_variables(str(tmp_path / "o"))
    assert _bit_equal(got["params"]["backbone"], want["params"]["backbone"])
    assert set(got["params"]) == {"backbone", "lr_branch", "hr_branch", "f_branch"}


def test_package_imports_and_clis_explain_without_torch(tmp_path):
    """torch is an optional extra: nothing but the interop commands needs it."""
    code = f"""
import importlib, pkgutil, sys
sys.modules["torch"] = None  # any "import torch" now raises ImportError
import modnet_jax
bad = []
for info in pkgutil.walk_packages(modnet_jax.__path__, "modnet_jax."):
    if info.name == "modnet_jax.interop.torch_modnet":
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        if "torch" in str(exc):
            bad.append(info.name)
    except Exception:
        pass  # not this test's business
assert not bad, bad
from modnet_jax import convert_to_torch, convert_from_torch
rc1 = convert_to_torch.main(["--checkpoint", {str(tmp_path)!r}, "--output", "x.ckpt"])
rc2 = convert_from_torch.main(["--input", "x.ckpt", "--output", {str(tmp_path / 'o')!r}])
sys.exit(10 * rc1 + rc2)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 11, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all(INSTALL_HINT in line and line.startswith("error: ")
                                   for line in lines), proc.stderr


def test_predict_takes_release_files_directly(workdir, tmp_path, capsys):
    """--checkpoint may name a release PyTorch file: the mattes equal those of the project
    checkpoint it was converted from, and a line says the file was imported. (Our own ONNX
    export is not the official one's folded graph; that import has its own tests.)"""
    import cv2

    from modnet_jax import predict

    root, _ = workdir
    photo = np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "p.png"), photo)
    mattes = {}
    for name, ckpt in [("jax", root / "jax"), ("torch", root / "dp.ckpt")]:
        out = tmp_path / name
        assert predict.main(["--checkpoint", str(ckpt), str(tmp_path / "p.png"), "--output",
                             str(out), "--ref-size", "64", "--quiet"]) == 0
        err = capsys.readouterr().err
        assert ("imported on the fly" in err) == (name != "jax"), err
        mattes[name] = cv2.imread(str(out / "p_matte.png"), cv2.IMREAD_UNCHANGED).astype(int)
    assert mattes["jax"].shape == (40, 56) and mattes["jax"].std() > 0
    assert np.array_equal(mattes["torch"], mattes["jax"])
    assert predict.cli(["--checkpoint", str(root / "dp.ckpt"), str(tmp_path / "p.png"),
                        "--output", str(tmp_path / "x"), "--hr-channels", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "hr_channels=32" in err[-1], err
    assert not (tmp_path / "x").exists()
