"""Gradients of gradients: autograd.grad and create_graph against finite differences of the first-order
backward (float64), hand-derived formulas, and the engine's own first-order values."""

import gc
import pathlib
import runpy
import weakref

import numpy as np
import pytest
from conftest import Cube, numerical_gradients

from tinygrad_sm import Function, Tensor, autograd, nn, no_grad, ops
from tinygrad_sm import functional as F
from tinygrad_sm.cases import OP_CASES


def _second_order_and_reference(case, seed=1):
    """d/dx ⟨∇ Σ w fn(x), u⟩ by double backward, and by central differences of the first-order backward."""
    arrays = case.inputs(seed=seed)
    rng = np.random.default_rng(seed + 10)
    weights = rng.standard_normal(case.fn(*[Tensor(a) for a in arrays]).shape)
    directions = [rng.standard_normal(a.shape) for a in arrays]

    def first_order_dot(*tensors):
        leaves = [Tensor(t.data, requires_grad=True) for t in tensors]
        case.fn(*leaves).backward(weights)
        return Tensor(np.array(sum((leaf.grad.data * u).sum() for leaf, u in zip(leaves, directions))))

    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    gradients = autograd.grad(case.fn(*leaves), leaves, Tensor(weights), create_graph=True)
    terms = [(g * u).sum() for g, u in zip(gradients, directions) if g.requires_grad]
    second = [np.zeros(a.shape) for a in arrays]
    if terms:
        second = [np.zeros(a.shape) if g is None else g.data
                  for g, a in zip(autograd.grad(sum(terms[1:], terms[0]), leaves, allow_unused=True), arrays)]
    return second, numerical_gradients(first_order_dot, arrays, 1.0)


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_second_derivative_matches_finite_differences_of_the_gradient(case):
    second, numeric = _second_order_and_reference(case)
    for index, (s, n) in enumerate(zip(second, numeric)):
        scale = max(np.abs(n).max(), 1.0)
        assert np.abs(s - n).max() < 1e-6 * scale, f"{case.name}, input {index}"


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_the_tensor_backward_gives_the_array_backwards_values(case):
    """One backward body serves both: the gradients create_graph records equal the first-order ones."""
    arrays = case.inputs(seed=4)
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    out = case.fn(*leaves)
    weights = np.random.default_rng(5).standard_normal(out.shape)
    on_tensors = autograd.grad(out, leaves, Tensor(weights), create_graph=True)
    on_arrays = autograd.grad(case.fn(*leaves), leaves, weights)
    for t, a in zip(on_tensors, on_arrays):
        np.testing.assert_allclose(t.data, a.data, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_float32_gradients_stay_float32_under_create_graph(case):
    leaves = [Tensor(a, requires_grad=True) for a in case.inputs(seed=3, dtype=np.float32)]
    out = case.fn(*leaves)
    for gradient in autograd.grad(out, leaves, np.ones(out.shape, np.float32), create_graph=True):
        assert gradient.dtype == np.float32


def test_grad_leaves_dot_grad_alone_and_returns_a_tuple():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (g,) = autograd.grad((x * x).sum(), x)
    np.testing.assert_array_equal(g.data, [2.0, 4.0])
    assert x.grad is None and g.grad_fn is None


def test_grad_of_an_intermediate_tensor_and_of_several_outputs():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    h = x * 2
    y = (h ** 2).sum()
    g_h, g_x = autograd.grad(y, [h, x])
    np.testing.assert_array_equal(g_h.data, 2 * h.data)
    np.testing.assert_array_equal(g_x.data, 8 * x.data)
    a, b = x.sum(), (x * x).sum()
    (g,) = autograd.grad([a, b], x, [Tensor(np.array(2.0)), Tensor(np.array(1.0))])
    np.testing.assert_array_equal(g.data, 2 + 2 * x.data)


def test_a_gradient_penalty_differentiates_through_backward():
    """d/dw Σ (dL/dw)² for L = Σ tanh(x w): dL/dw = xᵀ(1 - t²), so the penalty's gradient is by hand
    2 xᵀ diag(-2 t (1 - t²)) x (1 - t²) ... checked against finite differences of the penalty instead."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3))

    def penalty(w_array):
        w = Tensor(w_array, requires_grad=True)
        (g,) = autograd.grad((Tensor(x) @ w).tanh().sum(), w, create_graph=True)
        return (g ** 2).sum(), w

    w0 = rng.standard_normal(3)
    value, w = penalty(w0)
    value.backward()
    numeric = numerical_gradients(lambda t: penalty(t.data)[0], [w0], 1.0)[0]
    np.testing.assert_allclose(w.grad.data, numeric, rtol=1e-6, atol=1e-8)


def test_backward_with_create_graph_leaves_graph_gradients_and_retains():
    x = Tensor(np.array([0.5, 2.0]), requires_grad=True)
    y = (x ** 3).sum()
    y.backward(create_graph=True)
    assert x.grad.grad_fn is not None
    np.testing.assert_allclose(x.grad.data, 3 * x.data ** 2)
    y.backward(create_graph=True)  # retained: a second backward accumulates, as a graph too
    np.testing.assert_allclose(x.grad.data, 6 * x.data ** 2)
    second = x.grad
    x.grad = None
    second.sum().backward()
    np.testing.assert_allclose(x.grad.data, 12 * x.data)


def test_zero_grad_frees_the_cycle_create_graph_makes():
    model = nn.Linear(3, 2, rng=np.random.default_rng(0))
    F.softmax_cross_entropy(model(Tensor(np.ones((4, 3), np.float32))), np.array([0, 1, 0, 1])).backward(
        create_graph=True
    )
    node = weakref.ref(model.weight.grad.grad_fn)
    gc.disable()
    try:
        model.zero_grad()
        assert node() is None
    finally:
        gc.enable()


def test_hooks_see_and_replace_graph_gradients():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * x
    h.register_hook(lambda g: g * 3)
    (g,) = autograd.grad(h.sum(), x, create_graph=True)
    np.testing.assert_array_equal(g.data, 6 * x.data)
    (gg,) = autograd.grad(g.sum(), x)
    np.testing.assert_array_equal(gg.data, [6.0, 6.0])


def test_relu_second_derivative_is_zero_and_max_ties_share_it():
    x = Tensor(np.array([-1.0, 2.0]), requires_grad=True)
    (g,) = autograd.grad(x.relu().sum(), x, create_graph=True)
    assert not g.requires_grad  # the mask is a constant: no curvature to find
    y = Tensor(np.array([[1.0, 3.0, 3.0]]), requires_grad=True)
    (g,) = autograd.grad((y.max(axis=1) ** 2).sum(), y, create_graph=True)
    np.testing.assert_array_equal(g.data, [[0, 3, 3]])
    (gg,) = autograd.grad(g.sum(), y)
    np.testing.assert_array_equal(gg.data, [[0, 1, 1]])  # d/dy of 2 max · share: 2 · share · share summed


def test_jacobian_hessian_vjp_jvp_hvp_agree_with_hand_formulas():
    a = Tensor(np.array([0.3, -1.2, 2.0, 0.1]))
    s = a.softmax().data
    jac = autograd.jacobian(lambda z: z.softmax(), a)
    assert jac.shape == (4, 4) and not a.requires_grad
    np.testing.assert_allclose(jac.data, np.diag(s) - np.outer(s, s), atol=1e-15)
    v = np.array([1.0, 0.0, -2.0, 0.5])
    out, product = autograd.vjp(lambda z: z.softmax(), a, v)
    np.testing.assert_allclose(product.data, v @ jac.data, atol=1e-15)
    np.testing.assert_allclose(out.data, s)
    _, product = autograd.jvp(lambda z: z.softmax(), a, v)
    np.testing.assert_allclose(product.data, jac.data @ v, atol=1e-15)

    def f(x):
        return (x ** 3).sum() + x.tanh().sum()

    t = np.tanh(a.data)
    hand = np.diag(6 * a.data - 2 * t * (1 - t ** 2))
    np.testing.assert_allclose(autograd.hessian(f, a).data, hand, atol=1e-14)
    _, product = autograd.hvp(f, a, v)
    np.testing.assert_allclose(product.data, hand @ v, atol=1e-14)


def test_shapes_follow_torch_autograd_functional():
    x, w = Tensor(np.ones((2, 3))), Tensor(np.ones((3, 4)))
    jac_x, jac_w = autograd.jacobian(lambda x, w: x @ w, (x, w))
    assert jac_x.shape == (2, 4, 2, 3) and jac_w.shape == (2, 4, 3, 4)
    hessians = autograd.hessian(lambda x, w: ((x @ w) ** 2).sum(), (x, w))
    assert [[h.shape for h in row] for row in hessians] == [[(2, 3, 2, 3), (2, 3, 3, 4)], [(3, 4, 2, 3), (3, 4, 3, 4)]]
    np.testing.assert_allclose(hessians[0][1].data.reshape(6, 12), hessians[1][0].data.reshape(12, 6).T)
    _, (vx, vw) = autograd.hvp(lambda x, w: ((x @ w) ** 2).sum(), (x, w), (np.ones((2, 3)), np.zeros((3, 4))))
    assert vx.shape == (2, 3) and vw.shape == (3, 4)
    jac = autograd.jacobian(lambda x: x.sum() * 0 + 1.0, x)  # an output that does not depend on x: zeros
    np.testing.assert_array_equal(jac.data, np.zeros((2, 3)))


def test_jacobian_with_create_graph_is_differentiable():
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    jac = autograd.jacobian(lambda z: z ** 3, x, create_graph=True)
    (g,) = autograd.grad(jac.sum(), x)  # d/dx Σ diag(3x²) = 6x
    np.testing.assert_allclose(g.data, 6 * x.data)


def test_the_example_custom_ops_are_twice_differentiable():
    """Cube's backward uses only * and **, Softplus's ops.sigmoid: both run on Tensors (examples/custom_op.py)."""
    x = Tensor(np.array([0.5, -2.0]))
    np.testing.assert_allclose(autograd.hessian(lambda z: Cube.apply(z).sum(), x).data, np.diag(6 * x.data))
    softplus = runpy.run_path(str(pathlib.Path(__file__).parent.parent / "examples" / "custom_op.py"))["Softplus"]
    sigma = 1 / (1 + np.exp(-x.data))
    np.testing.assert_allclose(autograd.hessian(lambda z: softplus.apply(z).sum(), x).data,
                               np.diag(sigma * (1 - sigma)), rtol=1e-14)


class ArraysOnlySin(Function):
    """sin with a numpy-only backward: fine first-order, refused under create_graph."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * np.cos(x)


class SavesDerivedSin(Function):
    """sin that saves cos(x), an array that is neither its input nor its output."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(np.cos(x))
        return np.sin(x)

    @staticmethod
    def backward(ctx, grad_output):
        (cos,) = ctx.saved_tensors
        return grad_output * cos


class ReturnsArraySin(Function):
    """sin whose backward drops the Tensor for its array."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return np.asarray(getattr(grad_output, "data", grad_output)) * np.cos(getattr(x, "data", x))


@pytest.mark.parametrize("op", [ArraysOnlySin, SavesDerivedSin, ReturnsArraySin])
def test_an_op_that_cannot_be_differentiated_twice_says_so_by_name(op):
    x = Tensor(np.array([0.1, 0.2]), requires_grad=True)
    (g,) = autograd.grad(op.apply(x).sum(), x)
    np.testing.assert_allclose(g.data, np.cos(x.data))
    with pytest.raises(RuntimeError, match=op.__name__) as error:
        autograd.grad(op.apply(x).sum(), x, create_graph=True)
    assert "custom_op.py" in str(error.value)


def test_bad_requests_get_one_clear_error_each():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    unused = Tensor(np.array([3.0]), requires_grad=True)
    with pytest.raises(RuntimeError, match="input 1 .* not used"):
        autograd.grad((x * x).sum(), [x, unused])
    assert autograd.grad((x * x).sum(), [x, unused], allow_unused=True)[1] is None
    with pytest.raises(RuntimeError, match="needs grad_outputs"):
        autograd.grad(x * x, x)
    with pytest.raises(ValueError, match=r"grad_outputs\[0\] has shape \(3,\)"):
        autograd.grad(x * x, x, np.ones(3))
    with pytest.raises(TypeError, match="inputs must be a Tensor"):
        autograd.grad((x * x).sum(), [x.data])
    with pytest.raises(RuntimeError, match="input 0 .* does not require"):
        autograd.grad((x * x).sum(), Tensor(np.array([1.0])))
    with pytest.raises(TypeError, match="dtype int64"):
        autograd.hessian(lambda z: z.sum(), Tensor(np.array([1, 2])))
    with pytest.raises(ValueError, match="hessian: fn must return a scalar"):
        autograd.hessian(lambda z: z * z, Tensor(np.array([1.0, 2.0])))
    with pytest.raises(ValueError, match="hvp: v has shape"):
        autograd.hvp(lambda z: z.sum(), Tensor(np.array([1.0, 2.0])), np.ones(3))
    (g,) = autograd.grad(x.tanh().sum(), x, create_graph=True, retain_graph=False)  # g needs tanh's node
    with pytest.raises(RuntimeError, match="released graph"):
        autograd.grad(g.sum(), x)
    y = (x * x).sum()
    with no_grad(), pytest.raises(RuntimeError, match="inside no_grad"):
        autograd.grad(y, x, create_graph=True)


def test_new_ops_for_the_backward_graph_check_their_input():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"broadcast_to: shape \(2, 3\) does not broadcast to \(4,\)"):
        ops.BroadcastTo.apply(x, shape=(4,))
    with pytest.raises(ValueError, match="stack: every input must have the same shape"):
        ops.Stack.apply(x, Tensor(np.ones(3)))
