"""Every op in the registry: gradients against central finite differences in float64, dtype kept in float32."""

import numpy as np
import pytest
from conftest import autograd_gradients, numerical_gradients, relative_error

from tinygrad_sm import Tensor
from tinygrad_sm.cases import OP_CASES


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_gradient_matches_finite_differences(case):
    arrays = case.inputs(seed=1)
    output_shape = case.fn(*[Tensor(a) for a in arrays]).shape
    weights = np.random.default_rng(2).standard_normal(output_shape)
    analytic = autograd_gradients(case.fn, arrays, weights)
    numeric = numerical_gradients(case.fn, arrays, weights)
    for index, (a, n) in enumerate(zip(analytic, numeric)):
        assert a.shape == arrays[index].shape
        assert relative_error(a, n) < 1e-6, f"{case.name}, input {index}"


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_float32_stays_float32(case):
    tensors = [Tensor(a, requires_grad=True) for a in case.inputs(seed=3, dtype=np.float32)]
    out = case.fn(*tensors)
    assert out.dtype == np.float32
    out.backward(np.ones(out.shape, dtype=np.float32))
    for tensor in tensors:
        assert tensor.grad.dtype == np.float32


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_each_case_builds_the_op_it_names(case):
    tensors = [Tensor(a, requires_grad=True) for a in case.inputs()]
    assert case.fn(*tensors).grad_fn.op_name == case.op


def test_max_ties_share_the_gradient_equally():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_repeated_indices_accumulate():
    x = Tensor(np.arange(4.0), requires_grad=True)
    x[np.array([1, 1, 3, 1])].sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 3, 0, 1])


def test_boolean_mask_and_slice_gradients_land_in_place():
    x = Tensor(np.array([[-1.0, 2.0], [3.0, -4.0]]), requires_grad=True)
    (x[x > 0] * 10).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0, 10], [10, 0]])
    y = Tensor(np.zeros((3, 4)), requires_grad=True)
    y[1:, ::2].sum().backward()
    np.testing.assert_array_equal(y.grad.data, [[0, 0, 0, 0], [1, 0, 1, 0], [1, 0, 1, 0]])


def test_tensor_exponent_gradient_is_a_to_the_b_log_a():
    a = Tensor(np.array([2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([3.0, 0.5]), requires_grad=True)
    (a**b).sum().backward()
    np.testing.assert_allclose(a.grad.data, [3 * 2.0**2, 0.5 * 3.0**-0.5])
    np.testing.assert_allclose(b.grad.data, [8 * np.log(2.0), 3.0**0.5 * np.log(3.0)])


def test_comparisons_give_boolean_tensors_outside_the_graph():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    for mask in (x > 0, x >= 1, x < 0, x <= -2, x == 3, x != 3):
        assert mask.dtype == np.bool_
        assert not mask.requires_grad and mask.grad_fn is None
    np.testing.assert_array_equal((x > 0).data, [True, False, True])


def test_pow_gradient_at_zero_with_exponent_zero_is_zero_not_nan():
    """d/dx x⁰ = 0 everywhere, also at x = 0 (where b x^(b-1) would be 0 * inf)."""
    x = Tensor(np.array([0.0, 2.0]), requires_grad=True)
    (x**0 + x ** Tensor(np.array([0.0, 1.0]))).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 1.0])


def test_max_with_a_nan_sends_the_gradient_to_the_nan():
    x = Tensor(np.array([1.0, np.nan, 3.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 1.0, 0.0])


def test_sigmoid_of_integers_is_a_float_sigmoid():
    np.testing.assert_allclose(Tensor(np.array([-2, 0, 3])).sigmoid().data, 1 / (1 + np.exp(-np.array([-2, 0, 3]))))


def test_axis_errors_name_the_op_and_what_was_expected():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"Sum: axis 5 is out of range .* expected -2 <= axis < 2"):
        x.sum(axis=5)
    with pytest.raises(ValueError, match=r"Max: axis \(0, 0\) names an axis twice"):
        x.max(axis=(0, 0))
    with pytest.raises(ValueError, match=r"transpose: axis 3 is out of range"):
        x.transpose(3, 0)
    with pytest.raises(ValueError, match=r"transpose: axis \(0, 0\) names an axis twice"):
        x.transpose(0, 0)
    with pytest.raises(ValueError, match=r"transpose: axes \(1,\) are not a permutation of the 2 axes"):
        x.transpose(1)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64, np.bool_])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, True), ((0, 2), False), (-1, False)])
def test_mean_is_ndarray_mean_bitwise_in_value_dtype_and_shape(dtype, axis, keepdims):
    values = np.random.default_rng(0).standard_normal((7, 5, 3)) * 10
    x = values.astype(dtype) if dtype is not np.bool_ else values > 0
    got = Tensor(x).mean(axis=axis, keepdims=keepdims).data
    expected = np.asarray(x.mean(axis=axis, keepdims=keepdims))
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected)
