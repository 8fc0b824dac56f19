"""The softmax family and the fused losses, with the checks that give bad targets a clear error."""

import numpy as np

from tinygrad_sm import ops
from tinygrad_sm.tensor import Tensor

REDUCTIONS = ("mean", "sum", "none")


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
    logits = _tensor(logits)
    _check_reduction("softmax_cross_entropy", reduction)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be 2-D (N, K), got shape {logits.shape}")
    n, k = logits.shape
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    values = target.data
    if values.ndim == 1:
        if values.dtype.kind not in "iu":
            raise ValueError(
                f"softmax_cross_entropy: a 1-D target must hold integer class labels, got dtype {values.dtype}; "
                f"pass probabilities as an (N, K) array"
            )
        if values.shape[0] != n:
            raise ValueError(f"softmax_cross_entropy: {values.shape[0]} labels for {n} rows of logits")
        if values.size and (values.min() < 0 or values.max() >= k):
            bad = values[(values < 0) | (values >= k)][0]
            raise ValueError(f"softmax_cross_entropy: label {bad} is outside [0, {k}) for logits with {k} classes")
    elif values.ndim == 2:
        if values.shape != (n, k):
            raise ValueError(
                f"softmax_cross_entropy: target probabilities have shape {values.shape}, "
                f"expected {(n, k)} like the logits"
            )
        if values.dtype.kind != "f":
            raise ValueError(f"softmax_cross_entropy: target probabilities must be floating point, got {values.dtype}")
        if (values < 0).any():
            raise ValueError("softmax_cross_entropy: target probabilities must be non-negative")
        row_sums = values.sum(axis=1, dtype=np.float64)
        worst = int(np.argmax(np.abs(row_sums - 1))) if n else 0
        if n and abs(row_sums[worst] - 1) > 1e-6:
            raise ValueError(
                f"softmax_cross_entropy: target row {worst} sums to {row_sums[worst]:.8g}; each row must sum to 1"
            )
        if values.dtype != logits.dtype:
            target = Tensor(values.astype(logits.dtype), requires_grad=target.requires_grad)
    else:
        raise ValueError(
            f"softmax_cross_entropy: target must be labels (N,) or probabilities (N, K), got shape {values.shape}"
        )
    return ops.SoftmaxCrossEntropy.apply(logits, target, reduction=reduction)


def binary_cross_entropy_with_logits(z, y, reduction="mean"):
    """-[y log σ(z) + (1 - y) log(1 - σ(z))], one fused node: its backward is σ(z) - y (over N for the mean)."""
    z = _tensor(z)
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    y = y if isinstance(y, Tensor) else Tensor(np.asarray(y, dtype=z.dtype))
    if y.shape != z.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: targets have shape {y.shape}, logits {z.shape}; they must match"
        )
    if y.dtype != z.dtype:
        y = Tensor(y.data.astype(z.dtype), requires_grad=y.requires_grad)
    if ((y.data < 0) | (y.data > 1)).any():
        raise ValueError("binary_cross_entropy_with_logits: targets must lie in [0, 1]")
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


def _check_reduction(name, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
