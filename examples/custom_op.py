"""A user-defined op checked by `tinygrad-sm gradcheck`: x³ as a Function, once with a slip in its backward.

    tinygrad-sm gradcheck examples/custom_op.py:wrong_cube   # exit 1: names WrongCube, input 0, the worst element
    tinygrad-sm gradcheck examples/custom_op.py:cube         # exit 0
    tinygrad-sm gradcheck examples/custom_op.py:detached_cube --second-order   # exit 1: d²/dx² reads 0

Each factory takes no arguments and returns (fn, inputs): fn(*inputs) is a Tensor, and the inputs that
require a gradient (or are float arrays) are the ones checked.

Cube and WrongCube are twice differentiable as written: their backward uses only `*` and `**`, which Tensors
have too, and saves only the input, so under `create_graph` (autograd.hessian, gradgradcheck) the same lines
run on Tensors and record the gradient as a graph; DetachedCube, which detaches its input there, is the
counter-example. Softplus shows the rest of the recipe: a numpy function in
backward goes through the `ops` helper that also takes a Tensor (`ops.sigmoid`), and a value the forward
computed on the way (here σ(x)) is recomputed from the input rather than saved (a saved float array that is
neither an input nor the output comes to a create_graph backward as None).
"""

import numpy as np

from tinygrad_sm import Function, Tensor, ops


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


class DetachedCube(Cube):
    """Cube whose backward gives 3x² but, on Tensors, detaches x first: right at first order (gradcheck passes),
    and its second derivative reads 0 (gradgradcheck fails)."""

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        if isinstance(x, Tensor):
            x = x.detach()  # right values, but the gradient no longer depends on x
        return grad_output * 3 * x**2


class Softplus(Function):
    """d/dx log(1 + eˣ) = σ(x)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.logaddexp(0, x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * ops.sigmoid(x)


def _inputs():
    rng = np.random.default_rng(0)
    return [Tensor(rng.standard_normal((4, 3)), requires_grad=True), Tensor(rng.standard_normal(3), requires_grad=True)]


def cube():
    """(fn, inputs) whose cube op is right: mean((x * w)³ + x)."""
    return lambda x, w: (Cube.apply(x * w) + x).mean(), _inputs()


def wrong_cube():
    """The same function through WrongCube: gradcheck fails and the per-node check names WrongCube."""
    return lambda x, w: (WrongCube.apply(x * w) + x).mean(), _inputs()


def detached_cube():
    """The same function through DetachedCube: gradcheck passes, gradgradcheck fails (its d/dx of 3x² reads 0)."""
    return lambda x, w: (DetachedCube.apply(x * w) + x).mean(), _inputs()


def softplus():
    """(fn, inputs) through Softplus: passes gradcheck and, as it is twice differentiable, gradgradcheck."""
    return lambda x, w: Softplus.apply(x * w).sum(), _inputs()
