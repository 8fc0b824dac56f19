"""The softmax family and the fused losses, with the checks that give bad targets a clear error."""

import numpy as np

from tinygrad_sm import ops
from tinygrad_sm.tensor import Tensor

REDUCTIONS = ("mean", "sum", "none")


def linear(x, weight, bias=None):
    """x Wᵀ + b (W of shape (out_features, in_features)) as one node, as PyTorch's F.linear; backward g W, gᵀ x, Σ g."""
    return ops.Linear.apply(x, weight) if bias is None else ops.Linear.apply(x, weight, bias)


def softmax(z, axis=-1):
    """a = exp(z - max z) / Σ exp(z - max z): stable for any magnitude."""
    return _tensor(z).softmax(axis=axis)


def log_softmax(z, axis=-1):
    """log a = z - logsumexp(z)."""
    return _tensor(z).log_softmax(axis=axis)


def logsumexp(z, axis=-1, keepdims=False):
    """log Σ exp(z) = max z + log Σ exp(z - max z)."""
    return _tensor(z).logsumexp(axis=axis, keepdims=keepdims)


def softmax_cross_entropy(logits, target, reduction="mean"):
    """-Σ y log softmax(z), one fused node: its backward is (softmax(z) - y), divided by N for the mean.

    `target`: int labels of shape (N,) in [0, K), or probabilities of shape (N, K), rows summing to 1.
    """
    logits = _float_tensor("softmax_cross_entropy", logits)
    _check_reduction("softmax_cross_entropy", reduction)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be 2-D (N, K), got shape {logits.shape}")
    n, k = logits.shape
    if n == 0 or k == 0:
        raise ValueError(f"softmax_cross_entropy: logits of shape {logits.shape} are empty; expected N, K >= 1")
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    values = target.data
    if values.ndim == 1:
        _check_labels(values, n, k)
    elif values.ndim == 2:
        _check_probabilities(values, n, k)
        target = _as_dtype("softmax_cross_entropy", target, logits.dtype)
    else:
        raise ValueError(
            f"softmax_cross_entropy: target must be int labels of shape ({n},) or probabilities of shape "
            f"({n}, {k}), got shape {values.shape}"
        )
    return ops.SoftmaxCrossEntropy.apply(logits, target, reduction=reduction)


def binary_cross_entropy_with_logits(z, y, reduction="mean"):
    """-[y log σ(z) + (1 - y) log(1 - σ(z))], one fused node: its backward is σ(z) - y (over N for the mean)."""
    z = _float_tensor("binary_cross_entropy_with_logits", z)
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    y = y if isinstance(y, Tensor) else Tensor(np.asarray(y, dtype=z.dtype))
    if y.shape != z.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: targets have shape {y.shape}, logits {z.shape}; they must match"
        )
    y = _as_dtype("binary_cross_entropy_with_logits", y, z.dtype)
    outside = ~((y.data >= 0) & (y.data <= 1))
    if outside.any():
        raise ValueError(
            f"binary_cross_entropy_with_logits: targets must be probabilities in [0, 1] (no NaN), "
            f"got {y.data[outside].flat[0]}"
        )
    return ops.BinaryCrossEntropyWithLogits.apply(z, y, reduction=reduction)


def softmax_jacobian(a):
    """The hand-derived Jacobian of the softmax at output a: diag(a) - a aᵀ; (K,) -> (K, K), (N, K) -> (N, K, K)."""
    a = np.asarray(a.data if isinstance(a, Tensor) else a)
    if a.ndim not in (1, 2):
        raise ValueError(f"softmax_jacobian: a must have shape (K,) or (N, K), got {a.shape}")
    eye = np.eye(a.shape[-1], dtype=a.dtype)
    return a[..., :, None] * eye - a[..., :, None] * a[..., None, :]


def _tensor(z):
    return z if isinstance(z, Tensor) else Tensor(z)


def _float_tensor(name, logits):
    logits = _tensor(logits)
    if logits.dtype.kind != "f":
        raise ValueError(f"{name}: logits must be floating point (float32 or float64), got {logits.dtype}")
    return logits


def _as_dtype(name, target, dtype):
    """The target in the logits' dtype; a target that needs a gradient must already have it (a copy has no graph)."""
    if target.dtype == dtype:
        return target
    if target.requires_grad:
        raise ValueError(
            f"{name}: the target requires a gradient, so it must have the logits' dtype {dtype}, got {target.dtype}"
        )
    return Tensor(target.data.astype(dtype))


def _check_reduction(name, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_labels(values, n, k):
    if values.dtype.kind not in "iu":
        raise ValueError(
            f"softmax_cross_entropy: a 1-D target must hold integer class labels, got dtype {values.dtype}; "
            f"pass probabilities as an (N, K) array"
        )
    if values.shape[0] != n:
        raise ValueError(
            f"softmax_cross_entropy: got {values.shape[0]} labels for {n} rows of logits; expected one label per row"
        )
    try:
        np.ravel_multi_index((values,), (k,))  # raises for a label outside [0, k): one pass, not min and max
    except ValueError:
        outside = (values < 0) | (values >= k)
        raise ValueError(
            f"softmax_cross_entropy: label {values[outside][0]} is outside [0, {k}) for logits with {k} classes"
        ) from None


def _check_probabilities(values, n, k):
    if values.shape != (n, k):
        raise ValueError(
            f"softmax_cross_entropy: target probabilities have shape {values.shape}, expected {(n, k)} like the logits"
        )
    if values.dtype.kind != "f":
        raise ValueError(f"softmax_cross_entropy: target probabilities must be floating point, got {values.dtype}")
    if not np.isfinite(values).all():
        raise ValueError("softmax_cross_entropy: target probabilities must be finite, got NaN or Inf")
    if (values < 0).any():
        raise ValueError(
            f"softmax_cross_entropy: target probabilities must be non-negative, got {values.min():.8g}"
        )
    row_sums = values.sum(axis=1, dtype=np.float64)
    if (np.abs(row_sums - 1) > 1e-6).any():
        worst = int(np.argmax(np.abs(row_sums - 1)))
        raise ValueError(
            f"softmax_cross_entropy: target row {worst} sums to {row_sums[worst]:.8g}; "
            f"each row of probabilities must sum to 1 (within 1e-6)"
        )
