"""The Flax <-> release state_dict table and its two directions (numpy only, no torch)."""

import hashlib

import jax
import numpy as np
import pytest
from interop_utils import random_flax_variables

from modnet_jax.interop import keys

# sha256 of "key shape\n" for the 751 keys, in state_dict order (docs/architecture.md).
PINNED_SHA256 = "05c11caf3be4ecc05140725afc3d8b29154b1ebbfb20903178598deea278e6df"


def _listing(entries):
    return "".join(f"{e.torch_key} {tuple(e.torch_shape)}\n" for e in entries)


@pytest.fixture(scope="module")
def variables():
    return random_flax_variables(seed=1)


def test_release_key_table_is_pinned():
    entries = keys.modnet_entries()
    distinct = [e for e in entries if not e.alias]
    assert len(entries) == 751 and len({e.torch_key for e in entries}) == 751
    assert len(distinct) == 439
    assert sum(e.collection == "params" for e in distinct) == 232
    assert sum(e.collection != "params" for e in distinct) == 207
    assert sum(e.layout == "counter" for e in distinct) == 69
    params = sum(int(np.prod(e.torch_shape)) for e in distinct if e.collection == "params")
    assert params == 6_487_075
    spot = {e.torch_key: e.torch_shape for e in entries}
    assert spot["backbone.model.features.0.0.weight"] == (32, 3, 3, 3)
    assert spot["lr_branch.backbone.model.features.3.conv.3.weight"] == (144, 1, 3, 3)
    assert spot["backbone.model.features.18.1.num_batches_tracked"] == ()
    assert spot["lr_branch.se_block.fc.0.weight"] == (320, 1280)
    assert spot["lr_branch.se_block.fc.2.weight"] == (1280, 320)
    assert spot["lr_branch.conv_lr16x.layers.1.bnorm.running_var"] == (48,)
    assert spot["hr_branch.conv_hr4x.0.layers.0.weight"] == (64, 99, 3, 3)
    assert spot["f_branch.conv_f.1.layers.0.bias"] == (1,)
    assert entries[0].torch_key == "backbone.model.features.0.0.weight"
    assert entries[312].torch_key == "lr_branch.backbone.model.features.0.0.weight"
    assert entries[-1].torch_key == "f_branch.conv_f.1.layers.0.bias"
    assert not any("inorm" in e.torch_key for e in entries)
    assert hashlib.sha256(_listing(entries).encode()).hexdigest() == PINNED_SHA256


def test_backbone_only_table():
    entries = keys.backbone_entries()
    assert len(entries) == 312
    assert all(e.torch_key.startswith("features.") for e in entries)
    full = [e for e in keys.modnet_entries() if e.torch_key.startswith(keys.BACKBONE)]
    assert [keys.BACKBONE + e.torch_key for e in entries] == [e.torch_key for e in full]


def test_flax_paths_follow_the_naming_rule():
    assert keys.flax_module_path("backbone.model.features.0.0") == ("backbone", "features_0_0")
    assert keys.flax_module_path("backbone.model.features.3.conv.0") == (
        "backbone", "features_3", "conv_0")
    assert keys.flax_module_path("hr_branch.conv_hr4x.0.layers.1.bnorm") == (
        "hr_branch", "conv_hr4x_0", "layers_1", "bnorm")


def test_table_covers_the_flax_model_exactly(variables):
    """Every Flax leaf has one (non-alias) entry of the right shape, and vice versa."""
    leaves = jax.tree_util.tree_flatten_with_path(variables)[0]
    found = {tuple(p.key for p in path): tuple(np.shape(v)) for path, v in leaves}
    expected = {(e.collection,) + e.flax_path: e.flax_shape
                for e in keys.modnet_entries() if e.flax_path and not e.alias}
    assert found == expected


def test_round_trip_is_bit_exact_and_layouts_are_right(variables):
    sd = keys.flax_to_torch(variables, num_batches_tracked=7)
    assert list(sd) == [e.torch_key for e in keys.modnet_entries()]
    for e in keys.modnet_entries():
        assert sd[e.torch_key].shape == e.torch_shape, e.torch_key
    assert sd["backbone.model.features.5.conv.1.num_batches_tracked"].dtype == np.int64
    assert int(sd["backbone.model.features.5.conv.1.num_batches_tracked"]) == 7
    assert all(v.dtype == np.float32 and v.flags.c_contiguous
               for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    p = variables["params"]
    k = p["hr_branch"]["conv_hr4x_0"]["layers_0"]["kernel"]  # HWIO
    np.testing.assert_array_equal(sd["hr_branch.conv_hr4x.0.layers.0.weight"][5, 7, 1, 2],
                                  k[1, 2, 7, 5])
    dw = p["backbone"]["features_3"]["conv_3"]["kernel"]  # (3, 3, 1, C)
    np.testing.assert_array_equal(sd["backbone.model.features.3.conv.3.weight"][11, 0, 2, 1],
                                  dw[2, 1, 0, 11])
    fc = p["lr_branch"]["se_block"]["fc_0"]["kernel"]  # (in, out)
    np.testing.assert_array_equal(sd["lr_branch.se_block.fc.0.weight"], fc.T)
    np.testing.assert_array_equal(
        sd["lr_branch.backbone.model.features.9.conv.4.running_var"],
        variables["batch_stats"]["backbone"]["features_9"]["conv_4"]["var"])

    back, kind = keys.torch_to_flax(sd)
    assert kind == "modnet"
    same = jax.tree_util.tree_map(
        lambda a, b: a.dtype == b.dtype and np.array_equal(a, b), variables, back)
    assert all(jax.tree_util.tree_leaves(same))


def test_dataparallel_prefix_both_ways(variables):
    sd = keys.flax_to_torch(variables, dataparallel=True)
    assert all(k.startswith("module.") for k in sd) and len(sd) == 751
    back, _ = keys.torch_to_flax(sd)
    np.testing.assert_array_equal(back["params"]["f_branch"]["conv_f_1"]["layers_0"]["bias"],
                                  variables["params"]["f_branch"]["conv_f_1"]["layers_0"]["bias"])


def test_num_batches_tracked_is_optional_on_import(variables):
    sd = {k: v for k, v in keys.flax_to_torch(variables).items()
          if not k.endswith("num_batches_tracked")}
    keys.torch_to_flax(sd)


def test_every_problem_is_named_in_one_line(variables):
    sd = keys.flax_to_torch(variables)
    del sd["hr_branch.conv_hr2x.1.layers.0.bias"]
    del sd["lr_branch.backbone.model.features.2.conv.0.weight"]
    sd["hr_branch.extra.weight"] = np.zeros(3, np.float32)
    sd["f_branch.conv_f2x.layers.0.weight"] = np.zeros((32, 63, 3, 3), np.float32)
    with pytest.raises(keys.StateDictMismatch) as info:
        keys.torch_to_flax(sd)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in ("2 missing", "hr_branch.conv_hr2x.1.layers.0.bias",
                   "lr_branch.backbone.model.features.2.conv.0.weight", "1 unexpected",
                   "hr_branch.extra.weight", "f_branch.conv_f2x.layers.0.weight (32, 63, 3, 3)"
                   " != (32, 64, 3, 3)"):
        assert needle in msg, msg


def test_differing_alias_copies_are_refused(variables):
    sd = keys.flax_to_torch(variables)
    sd["lr_branch.backbone.model.features.4.conv.7.bias"] += 1.0
    with pytest.raises(keys.StateDictMismatch, match="features.4.conv.7.bias"):
        keys.torch_to_flax(sd)


def test_backbone_only_state_dict(variables):
    full = keys.flax_to_torch(variables)
    bare = {k[len(keys.BACKBONE):]: v for k, v in full.items() if k.startswith(keys.BACKBONE)}
    assert len(bare) == 312
    got, kind = keys.torch_to_flax(bare)
    assert kind == "backbone"
    assert set(got["params"]) == {"backbone"} and set(got["batch_stats"]) == {"backbone"}
    np.testing.assert_array_equal(got["params"]["backbone"]["features_18_0"]["kernel"],
                                  variables["params"]["backbone"]["features_18_0"]["kernel"])
    bare["classifier.1.weight"] = np.zeros((1000, 1280), np.float32)
    with pytest.raises(keys.StateDictMismatch, match="classifier.1.weight"):
        keys.torch_to_flax(bare)


def test_easpp_variant_is_refused_clearly():
    v = random_flax_variables(seed=2, cfg={"lr_branch": "easpp"})
    with pytest.raises(keys.UnsupportedVariant, match="lr_branch='se'"):
        keys.flax_to_torch(v)


def test_other_hr_channels_are_refused_clearly():
    v = random_flax_variables(seed=3, cfg={"hr_channels": 16})
    with pytest.raises(keys.UnsupportedVariant, match="hr_channels=16"):
        keys.flax_to_torch(v)
