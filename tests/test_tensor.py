"""The engine: graph bookkeeping, accumulation, release, dtype rules and the errors users meet."""

import numpy as np
import pytest
from conftest import Cube

from tinygrad_sm import Function, Tensor, enable_grad, no_grad, set_grad_enabled
from tinygrad_sm.tensor import backward_steps, seed_gradient


def test_value_used_twice_accumulates_every_path():
    """b = a + a; c = b + b: dc/da = 4."""
    a = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    b = a + a
    c = b + b
    c.sum().backward()
    np.testing.assert_array_equal(a.grad.data, [4.0, 4.0])


def test_diamond_sums_both_paths():
    """d/da (a + b) a = 2a + b, d/db = a."""
    a = Tensor(np.array([3.0]), requires_grad=True)
    b = Tensor(np.array([5.0]), requires_grad=True)
    ((a + b) * a).sum().backward()
    assert a.grad.item() == 2 * 3 + 5
    assert b.grad.item() == 3


def test_chain_deeper_than_the_recursion_limit():
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad.item() == 1.0


def test_grad_accumulates_across_backward_calls_and_none_clears_it():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [4.0, 8.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])


def test_second_backward_through_a_released_graph_raises_and_does_not_double_count():
    x = Tensor(np.array([2.0]), requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="saved arrays of Sum .*test_tensor.py.*retain_graph=True"):
        loss.backward()
    assert x.grad.item() == 4.0


def test_a_released_node_deep_in_a_new_graph_raises_before_any_grad_changes():
    x = Tensor(np.array([2.0]), requires_grad=True)
    w = Tensor(np.array([5.0]), requires_grad=True)
    square = x * x
    square.sum().backward()
    with pytest.raises(RuntimeError, match="saved arrays of Mul .*test_tensor.py"):
        (square * w).sum().backward()  # its Sum and the new Mul run first, then the released x * x stops it
    assert x.grad.item() == 4.0 and w.grad is None


def test_retain_graph_allows_a_second_backward():
    x = Tensor(np.array([2.0]), requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    assert x.grad.item() == 8.0


def test_backward_frees_saved_arrays_and_intermediate_gradients():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    hidden = x.exp()
    loss = hidden.sum()
    loss.backward()
    assert hidden.grad is None
    assert hidden.grad_fn.released and hidden.grad_fn.saved_tensors == ()


def test_no_grad_records_nothing_and_detach_cuts_the_graph():
    x = Tensor(np.array([1.0]), requires_grad=True)
    with no_grad():
        y = x * 2
    assert y.grad_fn is None and not y.requires_grad
    z = x.detach()
    assert z.grad_fn is None and not z.requires_grad and np.shares_memory(z.data, x.data)


def test_one_no_grad_object_can_be_entered_twice_nested():
    from tinygrad_sm.grad_mode import settings

    context = no_grad()
    with context:
        with context:
            pass
        assert not settings.grad_enabled
    assert settings.grad_enabled


def test_enable_grad_records_inside_no_grad_and_set_grad_enabled_takes_the_mode():
    x = Tensor(np.array([3.0]), requires_grad=True)
    with no_grad():
        with enable_grad():
            y = x * x
        z = x * x
    assert y.grad_fn is not None and z.grad_fn is None
    y.backward()
    assert x.grad.data.tolist() == [6.0]  # d(x²) = 2x
    with set_grad_enabled(False):
        assert (x * 2).grad_fn is None
        with set_grad_enabled(True):
            assert (x * 2).grad_fn is not None
    assert (x * 2).grad_fn is not None


def test_constants_and_inputs_without_grad_get_none():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    c = Tensor(np.array([3.0, 4.0]))
    (x * c + 1).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad.data, [3.0, 4.0])


def test_dtype_rules():
    assert Tensor([1, 2, 3]).dtype == np.float32
    assert Tensor(2.5).dtype == np.float32
    assert Tensor(np.zeros(2)).dtype == np.float64
    assert Tensor(np.float64(0.1)).dtype == np.float64 and Tensor(np.float64(0.1)).item() == 0.1
    x32 = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    assert (x32 * 2.5 + 1).dtype == np.float32
    assert (2.5 / x32 - 1).dtype == np.float32
    assert (x32**2).dtype == np.float32
    x64 = Tensor(np.ones(3), requires_grad=True)
    assert (x64 * 2.5).dtype == np.float64


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point.*int64"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_matmul_shape_mismatch_names_both_shapes():
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) are not aligned"):
        a @ b


def test_non_broadcastable_shapes_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) do not broadcast"):
        Tensor(np.ones((2, 3))) + Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"mul: shapes"):
        Tensor(np.ones((2, 3))) * np.ones((3, 2))


def test_backward_on_a_non_scalar_needs_grad():
    y = Tensor(np.ones((4, 3)), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"shape \(4, 3\) needs grad="):
        y.backward()


def test_backward_grad_of_the_wrong_shape():
    y = Tensor(np.ones((4, 3)), requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"grad has shape \(3, 4\) but the tensor has shape \(4, 3\)"):
        y.backward(np.ones((3, 4)))


def test_backward_on_a_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        Tensor(np.ones(1)).backward()


def test_non_scalar_backward_with_grad():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (x * x).backward(np.array([1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(x.grad.data, [2.0, 0.0, 12.0])


class WrongShape(Function):
    @staticmethod
    def forward(ctx, x):
        return x.sum()

    @staticmethod
    def backward(ctx, grad_output):
        return np.ones(3)


def test_user_defined_function_records_a_named_node():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = Cube.apply(x)
    assert y.grad_fn.op_name == "Cube" and y.grad_fn.parents == (x,)
    assert y.grad_fn.location[0] == __file__
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 12.0])


class Scale(Function):
    """d(c x) = c g"""

    @staticmethod
    def forward(ctx, x):
        return x * ctx.factor

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.factor


def test_op_attributes_are_attributes_of_the_node_and_may_not_shadow_its_own():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = Scale.apply(x, factor=3.0)
    assert y.grad_fn.factor == 3.0 and y.grad_fn.attrs == {"factor": 3.0}
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])
    for taken in ("parents", "saved_tensors", "sequence_number", "release", "location"):
        with pytest.raises(TypeError, match=f"Scale: an op attribute cannot be named '{taken}'"):
            Scale.apply(x, **{taken: 3.0})


def test_engine_checks_each_backward_returns_gradients_of_the_input_shapes():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    y = WrongShape.apply(x)
    for _ in range(2):  # the node is not released by a backward that failed at it: the same error again
        with pytest.raises(RuntimeError, match=r"WrongShape.backward returned a gradient of shape \(3,\).*\(2, 2\)"):
            y.backward()


class Pair(Function):
    """d(x + c) = g, and for c a gradient of the wrong shape: c never needs one, so the engine never looks at it."""

    @staticmethod
    def forward(ctx, x, c):
        return x + c

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, np.ones(7)


class OneTooMany(Function):
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, grad_output


def test_engine_checks_the_gradients_that_flow_on_and_the_count_of_gradients():
    x = Tensor(np.ones(2), requires_grad=True)
    Pair.apply(x, Tensor(np.ones(2))).sum().backward()  # as PyTorch's engine: an input without a gradient is skipped
    np.testing.assert_array_equal(x.grad.data, [1.0, 1.0])
    with pytest.raises(RuntimeError, match=r"OneTooMany.backward returned 2 gradient\(s\) for 1 input\(s\)"):
        OneTooMany.apply(x).sum().backward()


class Probe(Function):
    """d(x) = g; remembers the type and dtype of the gradient it was given."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad_output):
        Probe.got = (type(grad_output), grad_output.dtype)
        return grad_output


def test_engine_casts_a_gradient_to_its_inputs_dtype_and_makes_numpy_scalars_arrays():
    x32 = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    (Probe.apply(x32) * Tensor(np.array([3.0, 4.0]))).sum().backward()  # float32 * float64: Mul's gradients are float64
    assert Probe.got == (np.ndarray, np.float32) and x32.grad.dtype == np.float32
    out = (Probe.apply(x32) * Tensor(np.array([3.0, 4.0]))).sum()
    steps = list(backward_steps([out], [seed_gradient(out)]))
    assert steps[1][0].op_name == "Mul" and steps[1][2][0].dtype == np.float32  # the debugger sees the cast one

    scalar = Tensor(np.array(0.5), requires_grad=True)
    Probe.apply(scalar).exp().backward()  # on 0-d arrays numpy's g * exp(x) is a numpy scalar, not an array
    assert Probe.got == (np.ndarray, np.float64)
    np.testing.assert_allclose(scalar.grad.data, np.exp(0.5))


def test_reshape_transpose_and_T():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert x.reshape(3, 2).shape == (3, 2) and x.reshape((6,)).shape == (6,)
    assert x.T.shape == (3, 2) and x.transpose(1, 0).shape == (3, 2)
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) into \(4,\)"):
        x.reshape(4)


def test_item_numpy_and_properties():
    x = Tensor(np.array([[1.5]]), requires_grad=True)
    assert x.item() == 1.5 and x.numpy() is x.data
    assert (x.shape, x.ndim, x.size, x.is_leaf) == ((1, 1), 2, 1, True)
    with pytest.raises(ValueError, match="one element"):
        Tensor(np.ones(2)).item()


def test_nodes_run_in_reverse_creation_order_and_hooks_see_the_whole_gradient():
    """d = a + b is made before c = a * b but used after it; out = Σ c d. By hand: ∂out/∂c = d, ∂out/∂d = c,
    ∂out/∂a = b d + c, ∂out/∂b = a d + c."""
    a = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    b = Tensor(np.array([0.5, 3.0]), requires_grad=True)
    d = a + b
    c = a * b
    seen = {}
    d.register_hook(lambda grad: seen.setdefault("d", grad.data.copy()))
    c.register_hook(lambda grad: seen.setdefault("c", grad.data.copy()))
    out = (c * d).sum()
    order = [node for node, _, _ in backward_steps([out], [seed_gradient(out)])]
    assert order == [out.grad_fn, out.grad_fn.parents[0].grad_fn, c.grad_fn, d.grad_fn]
    np.testing.assert_allclose(seen["c"], d.data)
    np.testing.assert_allclose(seen["d"], c.data)
    np.testing.assert_allclose(a.grad.data, b.data * d.data + c.data)
    np.testing.assert_allclose(b.grad.data, a.data * d.data + c.data)


# ---- gradients are never shared: no op, hook or caller sees another's array change ----

def test_relu_never_overwrites_a_gradient_another_tensor_a_hook_or_the_caller_holds():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = Tensor(np.array([5.0, 5.0, 5.0]), requires_grad=True)
    (x.relu() + y).sum().backward()  # Add sends one array to both: y's share must not be masked
    np.testing.assert_array_equal(y.grad.data, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(x.grad.data, [1.0, 0.0, 1.0])

    seen = []
    hidden = x.relu()
    hidden.register_hook(seen.append)
    hidden.sum().backward()
    np.testing.assert_array_equal(seen[0].data, [1.0, 1.0, 1.0])

    seed = np.array([1.0, 1.0, 1.0])
    x.relu().backward(seed)
    np.testing.assert_array_equal(seed, [1.0, 1.0, 1.0])

    twice = x.relu().relu()  # the inner Relu gets the outer one's result: spare, and still right
    x.grad = None
    (twice * Tensor(np.array([2.0, 2.0, 2.0]))).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 0.0, 2.0])


def test_a_leafs_grad_is_an_array_of_its_own():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([3.0, 4.0]), requires_grad=True)
    ((a + b) * 1.0).sum().backward()  # Add sends one array of its own to both
    a.grad.data *= 10
    np.testing.assert_array_equal(b.grad.data, [1.0, 1.0])

    kept = []
    h = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    h.register_hook(kept.append)
    (h * 1.0).sum().backward()
    h.grad.data *= 10
    np.testing.assert_array_equal(kept[0].data, [1.0, 1.0])

    seed = np.array([1.0, 1.0])
    root = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    root.backward(seed)
    root.grad.data *= 10
    np.testing.assert_array_equal(seed, [1.0, 1.0])


# ---- what a Tensor may hold, and the one checked call of an op's backward ----

def test_the_constructor_refuses_none_and_non_numeric_arrays_and_warns_when_it_cuts_a_graph():
    with pytest.raises(TypeError, match="got NoneType"):
        Tensor(None)
    with pytest.raises(TypeError, match="dtype object is not numeric"):
        Tensor(np.array([object()]))
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.warns(UserWarning, match=r"Tensor\(t\) of a tensor that requires grad"):
        copy = Tensor(x)
    assert copy.data is x.data and not copy.requires_grad
    assert Tensor(np.float32(2.0)).shape == () and Tensor(True).dtype == np.float32


def test_call_backward_is_the_check_that_gradcheck_and_the_debugger_share():
    from tinygrad_sm.gradcheck import rerun_forward
    from tinygrad_sm.tensor import call_backward

    x = Tensor(np.ones((2, 2)), requires_grad=True)
    y = WrongShape.apply(x)
    ctx, _ = rerun_forward(y.grad_fn, [np.ones((2, 2))])
    with pytest.raises(RuntimeError, match=r"WrongShape.backward returned a gradient of shape \(3,\)"):
        call_backward(ctx, np.ones((2, 2)))
    z = x * Tensor(np.array([2.0, 3.0]))
    grad_x, grad_c = call_backward(z.grad_fn, np.ones((2, 2)))
    np.testing.assert_array_equal(grad_x, [[2.0, 3.0], [2.0, 3.0]])
    assert grad_c is None  # the constant needs none: not even computed (Mul checks needs_input_grad)


class SumAsFloat(Function):
    """Σ x returned as a Python float, as a custom op may: numpy's dtype for it (float64), not a list's float32."""

    @staticmethod
    def forward(ctx, x):
        return float(x.sum())

    @staticmethod
    def backward(ctx, grad_output):
        return np.ones(2) * grad_output


def test_an_op_returning_a_python_number_gives_numpys_dtype():
    out = SumAsFloat.apply(Tensor(np.array([1.0, 2.0]), requires_grad=True))
    assert out.dtype == np.float64 and out.item() == 3.0
