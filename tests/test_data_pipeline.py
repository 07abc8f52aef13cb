"""Grain pipelines on synthetic data: batch contract, determinism, resume, epochs, shards."""

import pathlib
import re

import ml_collections
import numpy as np
import pytest

from modnet_jax.data import (
    DatasetError,
    composite,
    default_data_config,
    make_eval_iterator,
    make_train_iterator,
    make_unlabelled_iterator,
    validate_dataset,
)

SIZE = 64
SMALL = dict(synthetic_size=24, val_fraction=0.25)


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_batch_contract_and_composite_invariant():
    batch = next(make_train_iterator(SMALL, batch_size=4, seed=0, image_size=SIZE))
    assert set(batch) == {"image", "alpha", "trimap", "fg", "bg"}
    for key, channels in (("image", 3), ("fg", 3), ("bg", 3), ("alpha", 1), ("trimap", 1)):
        assert batch[key].shape == (4, SIZE, SIZE, channels) and batch[key].dtype == np.uint8
    assert set(np.unique(batch["trimap"])) <= {0, 128, 255}
    assert set(np.unique(batch["trimap"])) == {0, 128, 255}
    for i in range(4):
        # The image is exactly the composite of the fg and bg the batch carries.
        np.testing.assert_array_equal(batch["image"][i],
                                      composite(batch["fg"][i], batch["bg"][i], batch["alpha"][i]))
        alpha, trimap = batch["alpha"][i], batch["trimap"][i]
        assert np.all(alpha[trimap == 0] == 0) and np.all(alpha[trimap == 255] >= 230)
        assert np.all(trimap[(alpha > 0) & (alpha < 230)] == 128)
        assert 0 < (alpha > 0).mean() < 1  # the crop keeps part of the subject


def test_same_seed_same_batches_and_different_seed_differs():
    a = _take(make_train_iterator(SMALL, batch_size=4, seed=7, image_size=SIZE), 3)
    b = _take(make_train_iterator(SMALL, batch_size=4, seed=7, image_size=SIZE), 3)
    _assert_same(a, b)
    c = next(make_train_iterator(SMALL, batch_size=4, seed=8, image_size=SIZE))
    assert not np.array_equal(a[0]["image"], c["image"])


def test_get_state_set_state_resumes_the_identical_stream():
    iterator = make_train_iterator(SMALL, batch_size=4, seed=3, image_size=SIZE)
    _take(iterator, 2)
    state = iterator.get_state()
    expected = _take(iterator, 6)  # crosses an epoch boundary (18 train samples)
    resumed = make_train_iterator(SMALL, batch_size=4, seed=3, image_size=SIZE)
    resumed.set_state(state)
    _assert_same(_take(resumed, 6), expected)


def test_each_epoch_visits_every_sample_once_in_a_new_order():
    cfg = dict(synthetic_size=8, val_fraction=0.0, augment=False)
    batches = _take(make_train_iterator(cfg, batch_size=4, seed=0, image_size=SIZE, num_epochs=2), 4)
    # Without augmentation a sample's alpha is fixed, so its checksum identifies it.
    ids = [int(a.astype(np.int64).sum() * 1000 + a[:, SIZE // 2].sum())
           for b in batches for a in b["alpha"]]
    first, second = ids[:8], ids[8:]
    assert len(set(first)) == 8 and set(first) == set(second)
    assert first != second
    finite = make_train_iterator(cfg, batch_size=4, seed=0, image_size=SIZE, num_epochs=2)
    assert len(list(finite)) == 4


def test_host_shards_are_disjoint_and_equal():
    cfg = dict(synthetic_size=9, val_fraction=0.0, augment=False)
    shards = []
    for index in range(2):
        batches = _take(make_train_iterator(cfg, batch_size=4, seed=0, image_size=SIZE, shard_index=index,
                                            shard_count=2, num_epochs=1), 1)
        shards.append({a.tobytes() for a in batches[0]["alpha"]})
    assert len(shards[0]) == len(shards[1]) == 4 and not shards[0] & shards[1]
    with pytest.raises(ValueError, match="shard_index"):
        make_train_iterator(cfg, batch_size=2, seed=0, image_size=SIZE, shard_index=2, shard_count=2)


def test_eval_iterator_is_finite_deterministic_and_unaugmented():
    cfg = dict(synthetic_size=40, val_fraction=0.25)  # 10 held-out samples
    first = list(make_eval_iterator(cfg, batch_size=4, image_size=SIZE))
    second = list(make_eval_iterator(cfg, batch_size=4, image_size=SIZE))
    assert len(first) == 2  # floor(10 / 4): the remainder is dropped
    _assert_same(first, second)
    from modnet_jax.data import generate_portrait

    # Held-out samples are the last indices of the synthetic stream, shown whole (no crop).
    np.testing.assert_array_equal(first[0]["alpha"][0, :, :, 0], generate_portrait(0, 30, SIZE)["alpha"])
    train_alphas = {a.tobytes() for b in _take(make_train_iterator(
        dict(cfg, augment=False), batch_size=30, seed=0, image_size=SIZE, num_epochs=1), 1)
        for a in b["alpha"]}
    assert not train_alphas & {a.tobytes() for b in first for a in b["alpha"]}
    with pytest.raises(DatasetError, match="less than one batch"):
        make_eval_iterator(cfg, batch_size=11, image_size=SIZE)
    with pytest.raises(DatasetError, match="no usable samples.*val_fraction"):
        make_eval_iterator(dict(cfg, val_fraction=0.0), batch_size=2, image_size=SIZE)


def test_unlabelled_iterator_from_synthetic_images():
    batch = next(make_unlabelled_iterator(SMALL, batch_size=3, seed=0, image_size=SIZE))
    assert set(batch) == {"image"} and batch["image"].shape == (3, SIZE, SIZE, 3)


def test_workers_give_the_same_stream_and_resume():
    reference = _take(make_train_iterator(SMALL, batch_size=2, seed=1, image_size=SIZE), 3)
    iterator = make_train_iterator(dict(SMALL, num_workers=1), batch_size=2, seed=1, image_size=SIZE)
    _assert_same(_take(iterator, 2), reference[:2])
    state = iterator.get_state()
    resumed = make_train_iterator(dict(SMALL, num_workers=1), batch_size=2, seed=1, image_size=SIZE)
    resumed.set_state(state)
    _assert_same(_take(resumed, 1), reference[2:])
    for it in (iterator, resumed):
        it.close()


def test_config_accepts_dict_configdict_and_rejects_unknowns():
    cfg = default_data_config()
    assert cfg.layout == "synthetic" and cfg.num_workers == 0 and cfg.synthetic_size == 2048
    cfg.synthetic_size = 16
    summary = validate_dataset(cfg, image_size=SIZE)
    assert summary.num_samples == 16 - round(16 * 0.05)
    assert summary.keys == ("image", "alpha", "trimap", "fg", "bg")
    assert validate_dataset(ml_collections.ConfigDict({"synthetic_size": 10}), image_size=SIZE).num_samples == 10
    with pytest.raises(ValueError, match=r"unknown data layout 'coco'; known layouts: synthetic, fg_alpha"):
        validate_dataset({"layout": "coco"})
    with pytest.raises(ValueError, match="unknown data config field"):
        validate_dataset({"synthetic_sise": 3})


def test_data_package_never_imports_jax_model_or_torch():
    package = pathlib.Path(__file__).resolve().parents[1] / "modnet_jax" / "data"
    pattern = re.compile(r"^\s*(import|from)\s+(jax|flax|torch|modnet_jax\.models)\b", re.M)
    files = sorted(package.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        assert not pattern.search(path.read_text()), path.name
