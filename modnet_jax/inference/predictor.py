"""``Predictor``: a MODNet plus its variables, run at the release's input sizes with a jit cache.

Each distinct model input shape (batch, rh, rw) is compiled once, ahead of time, and kept;
``compile_count`` / ``compiled_shapes`` say how often that happened, so callers (and tests)
can check that a folder of mixed sizes compiles once per size bucket. The batch axis is padded
to a power of two no larger than ``batch_size`` (a full batch is ``batch_size`` itself), so
tails of a bucket reuse a few shapes instead of compiling one per tail length.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from modnet_jax.checkpointing import load_variables
from modnet_jax.inference.preprocess import REF_SIZE, model_input_size, postprocess, preprocess
from modnet_jax.models import model_from_config


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model: one-line message."""


def _flat_shapes(tree: Any) -> Dict[str, Tuple[int, ...]]:
    flat = traverse_util.flatten_dict(dict(tree), sep="/")
    return {k: tuple(np.shape(v)) for k, v in flat.items()}


def expected_shapes(model) -> Dict[str, Tuple[int, ...]]:
    """{"params/...": shape, "batch_stats/...": shape} of ``model`` (abstract init, no compute)."""
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    abstract = jax.eval_shape(lambda r, img: model.init(r, img, train=False),
                              jax.random.key(0), x)
    return _flat_shapes({k: abstract[k] for k in ("params", "batch_stats") if k in abstract})


def _collapse(keys: List[str], universe: Dict[str, Any]) -> List[str]:
    """Name whole absent subtrees once: the shortest prefix all of whose keys are in ``keys``."""
    chosen: List[str] = []
    absent = set(keys)
    for key in keys:
        parts = key.split("/")
        for n in range(1, len(parts) + 1):
            prefix = "/".join(parts[:n])
            under = [k for k in universe if k == prefix or k.startswith(prefix + "/")]
            if all(k in absent for k in under):
                if prefix not in chosen:
                    chosen.append(prefix)
                break
    return chosen


def check_variables(model, variables: Dict[str, Any], source: str = "checkpoint") -> None:
    """Raise ``CheckpointError`` (one line, first differences) if shapes do not fit ``model``."""
    want = expected_shapes(model)
    have = _flat_shapes({k: variables.get(k, {}) for k in ("params", "batch_stats")})
    problems = [f"{k} is {have[k]} but the model needs {want[k]}"
                for k in want if k in have and have[k] != want[k]]
    problems += [f"missing {k}" for k in _collapse([k for k in want if k not in have], want)]
    problems += [f"unexpected {k}" for k in _collapse([k for k in have if k not in want], have)]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{source}: does not fit this model (lr_branch={model.lr_branch!r}, "
            f"hr_channels={model.hr_channels}): {'; '.join(problems[:3])}{more}; "
            f"was it trained with other --lr-branch / --hr-channels?")


def load_checked_variables(model, checkpoint: str, step: Optional[int] = None) -> Dict[str, Any]:
    """Variables of ``checkpoint`` after ``check_variables``; every failure is a CheckpointError."""
    try:
        variables = load_variables(checkpoint, step)
    except (FileNotFoundError, ValueError) as exc:
        raise CheckpointError(str(exc)) from None
    except Exception as exc:  # orbax / tensorstore errors on damaged directories
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{checkpoint}: cannot read checkpoint ({type(exc).__name__}: "
                              f"{first})") from None
    check_variables(model, variables, source=checkpoint)
    return variables


def padded_batch(n: int, batch_size: int) -> int:
    """The compiled batch size for ``n`` <= ``batch_size`` inputs (next power of two, capped)."""
    b = 1
    while b < n:
        b *= 2
    return min(b, batch_size)


class Predictor:
    """Alpha mattes from RGB images with the release's pre-processing.

    ``predict(image)`` -> [H, W] float32 matte; ``predict_stream((key, image), ...)`` batches
    images whose model input sizes agree and yields (key, matte) as buckets fill (not in input
    order). ``run_inputs(x)`` runs pre-processed inputs [N, rh, rw, 3] directly.
    """

    def __init__(self, model, variables: Dict[str, Any], ref_size: int = REF_SIZE,
                 batch_size: int = 4, resize_back: str = "area", max_pending: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.variables = jax.device_put({"params": variables["params"],
                                         "batch_stats": variables.get("batch_stats", {})})
        self.ref_size = int(ref_size)
        self.batch_size = int(batch_size)
        self.resize_back = resize_back
        self.max_pending = max(int(max_pending), self.batch_size)
        self._compiled: Dict[Tuple[int, int, int], Any] = {}
        self.compiled_shapes: List[Tuple[int, int, int]] = []

    @classmethod
    def from_checkpoint(cls, checkpoint: str, model_cfg: Optional[dict] = None,
                        step: Optional[int] = None, **kwargs) -> "Predictor":
        model = model_from_config(model_cfg)
        return cls(model, load_checked_variables(model, checkpoint, step), **kwargs)

    @property
    def compile_count(self) -> int:
        return len(self.compiled_shapes)

    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        return model_input_size(height, width, self.ref_size)

    def _executable(self, b: int, h: int, w: int):
        key = (b, h, w)
        if key not in self._compiled:
            model = self.model

            def forward(variables, x):
                return model.apply(variables, x, train=False, inference=True)[2][..., 0].astype(
                    jnp.float32)

            spec = jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32)
            self._compiled[key] = jax.jit(forward).lower(self.variables, spec).compile()
            self.compiled_shapes.append(key)
        return self._compiled[key]

    def run_inputs(self, x: np.ndarray) -> np.ndarray:
        """Mattes [N, rh, rw] float32 for pre-processed inputs [N, rh, rw, 3] in [-1, 1]."""
        x = np.asarray(x, np.float32)
        n, h, w = x.shape[:3]
        out = []
        for start in range(0, n, self.batch_size):
            chunk = x[start:start + self.batch_size]
            b = padded_batch(len(chunk), self.batch_size)
            if b > len(chunk):
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - len(chunk), 0)])
            out.append(np.asarray(self._executable(b, h, w)(self.variables, chunk)))
            out[-1] = out[-1][:min(self.batch_size, n - start)]
        return np.concatenate(out, axis=0)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """[H, W] float32 alpha in [0, 1] for one RGB uint8 image [H, W, 3]."""
        x = preprocess(image, self.ref_size)
        matte = self.run_inputs(x[None])[0]
        return postprocess(matte, image.shape[0], image.shape[1], self.resize_back)

    def predict_stream(self, items: Iterable[Tuple[Hashable, np.ndarray]]
                       ) -> Iterator[Tuple[Hashable, np.ndarray]]:
        """Yield (key, [H, W] matte) for (key, RGB image) pairs, batching equal input sizes.

        Only pre-processed inputs are held while a bucket fills (at most ``max_pending`` in
        all; past that the fullest bucket runs early).
        """
        pending: "OrderedDict[Tuple[int, int], list]" = OrderedDict()
        total = 0
        for key, image in items:
            x = preprocess(image, self.ref_size)
            bucket = pending.setdefault(x.shape[:2], [])
            bucket.append((key, x, image.shape[:2]))
            total += 1
            if len(bucket) >= self.batch_size:
                total -= len(bucket)
                yield from self._run_bucket(pending.pop(x.shape[:2]))
            elif total >= self.max_pending:
                fullest = max(pending, key=lambda k: len(pending[k]))
                total -= len(pending[fullest])
                yield from self._run_bucket(pending.pop(fullest))
        for bucket in list(pending.values()):
            yield from self._run_bucket(bucket)

    def _run_bucket(self, bucket: list) -> Iterator[Tuple[Hashable, np.ndarray]]:
        mattes = self.run_inputs(np.stack([x for _, x, _ in bucket]))
        for (key, _, (h, w)), matte in zip(bucket, mattes):
            yield key, postprocess(matte, h, w, self.resize_back)
