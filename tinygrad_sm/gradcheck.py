"""Calculus by two independent routes: finite differences of forward, and autograd."""

import numpy as np

from tinygrad_sm.tensor import Tensor, backward_steps, no_grad


def _float64_copy(x):
    return np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64)


def numerical_jacobian(fn, x, eps=1e-6):
    """J[i, j] ≈ (f(x + eps e_j) - f(x - eps e_j))_i / 2 eps, in float64; shape (output size, input size)."""
    point = _float64_copy(x)
    flat = point.reshape(-1)
    columns = []
    with no_grad():
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = np.array(fn(Tensor(point)).data, dtype=np.float64).reshape(-1)
            flat[j] = original - eps
            minus = np.array(fn(Tensor(point)).data, dtype=np.float64).reshape(-1)
            flat[j] = original
            columns.append((plus - minus) / (2 * eps))
    return np.stack(columns, axis=1)


def jacobian(fn, x):
    """J[i, :] = d f_i / dx by autograd: one vector-Jacobian product (a backward with e_i) per output element."""
    point = Tensor(_float64_copy(x), requires_grad=True)
    output = fn(point)
    rows = []
    for i in range(output.size):
        seed = np.zeros(output.shape)
        seed.flat[i] = 1.0
        point.grad = None
        for _ in backward_steps(output, seed, retain_graph=True):
            pass
        rows.append(np.zeros(point.size) if point.grad is None else point.grad.data.reshape(-1))
    return np.stack(rows)


def hessian(fn, x, eps=1e-5):
    """H ≈ (∇f(x + eps e_j) - ∇f(x - eps e_j)) / 2 eps, autograd gradients of a scalar f, symmetrised."""
    point = _float64_copy(x)
    flat = point.reshape(-1)
    columns = []
    for j in range(flat.size):
        original = flat[j]
        flat[j] = original + eps
        plus = jacobian(fn, point)
        flat[j] = original - eps
        minus = jacobian(fn, point)
        flat[j] = original
        if plus.shape[0] != 1:
            raise ValueError(f"hessian: fn must return one element, got {plus.shape[0]}")
        columns.append((plus[0] - minus[0]) / (2 * eps))
    matrix = np.stack(columns, axis=1)
    return (matrix + matrix.T) / 2
