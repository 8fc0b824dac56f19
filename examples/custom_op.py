"""A user-defined op checked by `tinygrad-sm gradcheck`: x³ as a Function, once with a slip in its backward.

    tinygrad-sm gradcheck examples/custom_op.py:wrong_cube   # exit 1: names WrongCube, input 0, the worst element
    tinygrad-sm gradcheck examples/custom_op.py:cube         # exit 0

Each factory takes no arguments and returns (fn, inputs): fn(*inputs) is a Tensor, and the inputs that
require a gradient (or are float arrays) are the ones checked.
"""

import numpy as np

from tinygrad_sm import Function, Tensor


class Cube(Function):
    """d/dx x³ = 3x²"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 3 * x**2


class WrongCube(Function):
    """x³ with the classic slip in its backward: the factor 3 of 3x² dropped."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * x**2


def _inputs():
    rng = np.random.default_rng(0)
    return [Tensor(rng.standard_normal((4, 3)), requires_grad=True), Tensor(rng.standard_normal(3), requires_grad=True)]


def cube():
    """(fn, inputs) whose cube op is right: mean((x * w)³ + x)."""
    return lambda x, w: (Cube.apply(x * w) + x).mean(), _inputs()


def wrong_cube():
    """The same function through WrongCube: gradcheck fails and the per-node check names WrongCube."""
    return lambda x, w: (WrongCube.apply(x * w) + x).mean(), _inputs()
