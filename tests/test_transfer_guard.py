"""The inference engine moves data between host and device only explicitly: photo batches
and a video run under ``jax.transfer_guard("disallow")`` (any implicit transfer raises), with
results equal to an unguarded run. (The training loop's guarded runs are in test_train.py.)

On the CPU backend JAX polices host->device transfers only (device->host reads are
zero-copy there); the engine's reads are explicit ``jax.device_get`` calls, which a GPU run of
this file checks too.
"""

import jax
import numpy as np
import pytest

from modnet_jax.inference.engine import MattingEngine
from modnet_jax.models import create_model

H, W = 64, 96


@pytest.fixture(scope="module")
def engine():
    model, variables = create_model()
    return MattingEngine(model, jax.device_get(variables), ref_size=H, batch_size=2)


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def test_video_and_photos_run_without_implicit_transfers(engine):
    frames = _frames(5)
    free = [m.matte for m in engine.video(frames, ofd=True, background=(0, 255, 0))]
    photos = list(enumerate(frames[:3]))
    free_photos = dict(engine.images(photos, cutout=True))
    with jax.transfer_guard("disallow"):
        guarded = [m.matte for m in engine.video(frames, ofd=True, background=(0, 255, 0))]
        guarded_photos = dict(engine.images(photos, cutout=True))
    assert len(guarded) == len(free) == 5
    for a, b in zip(guarded, free):
        np.testing.assert_array_equal(a, b)
    assert sorted(guarded_photos) == [0, 1, 2]
    for k, res in guarded_photos.items():
        np.testing.assert_array_equal(res.matte, free_photos[k].matte)
        np.testing.assert_array_equal(res.cutout, free_photos[k].cutout)


def test_guard_catches_a_numpy_argument(engine, monkeypatch):
    """The control: with ``jax.device_put`` made a no-op, the engine hands numpy arrays to its
    compiled programs (implicit transfers, as its video path did before) and the guarded run
    raises."""
    monkeypatch.setattr(jax, "device_put", lambda x, *args, **kwargs: x)
    with jax.transfer_guard("disallow"):
        with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
            list(engine.video(_frames(3, seed=1), ofd=True))
