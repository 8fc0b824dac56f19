"""Shared helpers: central finite differences in float64, the independent reference for every gradient."""

import pathlib
import runpy

import numpy as np
import pytest

from tinygrad_sm import Tensor
from tinygrad_sm.function import Function


def numerical_gradients(fn, arrays, weights, eps=1e-6):
    """d/dx_k Σ weights * fn(*x) for every input by central differences, in float64."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]

    def objective():
        return float((np.asarray(fn(*[Tensor(a) for a in arrays]).data, dtype=np.float64) * weights).sum())

    gradients = []
    for array in arrays:
        gradient = np.zeros_like(array)
        flat, flat_gradient = array.reshape(-1), gradient.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            plus = objective()
            flat[i] = original - eps
            minus = objective()
            flat[i] = original
            flat_gradient[i] = (plus - minus) / (2 * eps)
        gradients.append(gradient)
    return gradients


def autograd_gradients(fn, arrays, weights):
    """The same gradients by backward() with upstream gradient `weights`."""
    tensors = [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(np.broadcast_to(weights, out.shape))
    return [t.grad.data for t in tensors]


def relative_error(analytic, numeric):
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric), 1e-12)
    return np.linalg.norm(analytic - numeric) / scale


@pytest.fixture
def rng():
    return np.random.default_rng(0)


EXAMPLE_OPS = runpy.run_path(str(pathlib.Path(__file__).parent.parent / "examples" / "custom_op.py"))
Cube, DetachedCube = EXAMPLE_OPS["Cube"], EXAMPLE_OPS["DetachedCube"]


class WrongSquare(Function):
    """x² with a wrong derivative (x instead of 2x): the per-node check must catch it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * x
