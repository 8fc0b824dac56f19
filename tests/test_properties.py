"""hypothesis: random broadcastable shapes for every binary op, random axes for every reduction.

Each example checks that the gradient has its input's shape and matches central finite differences.
"""

import numpy as np
from conftest import autograd_gradients, numerical_gradients, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from tinygrad_sm import Tensor
from tinygrad_sm.cases import draw_values

BINARY_OPS = {
    "add": (lambda a, b: a + b, "real"),
    "sub": (lambda a, b: a - b, "real"),
    "mul": (lambda a, b: a * b, "real"),
    "div": (lambda a, b: a / b, "nonzero"),
    "pow": (lambda a, b: a**b, "positive"),
}

REDUCTIONS = {
    "sum": lambda x, axis, keepdims: x.sum(axis=axis, keepdims=keepdims),
    "mean": lambda x, axis, keepdims: x.mean(axis=axis, keepdims=keepdims),
    "max": lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims),
    "logsumexp": lambda x, axis, keepdims: x.logsumexp(axis=axis, keepdims=keepdims),
}


def _check(fn, arrays, seed):
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(fn(*[Tensor(a) for a in arrays]).shape)
    analytic = autograd_gradients(fn, arrays, weights)
    numeric = numerical_gradients(fn, arrays, weights)
    for array, a, n in zip(arrays, analytic, numeric):
        assert a.shape == array.shape
        assert relative_error(a, n) < 1e-6


@settings(max_examples=60, deadline=None)
@given(
    op=st.sampled_from(sorted(BINARY_OPS)),
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3),
    seed=st.integers(0, 2**16),
)
def test_binary_ops_broadcast_and_unbroadcast(op, shapes, seed):
    fn, base_domain = BINARY_OPS[op]
    rng = np.random.default_rng(seed)
    first_domain = base_domain if op == "pow" else "real"
    second_domain = base_domain if op == "div" else "real"
    a = draw_values(rng, shapes.input_shapes[0], first_domain)
    b = draw_values(rng, shapes.input_shapes[1], second_domain)
    _check(fn, [a, b], seed)


@st.composite
def shape_and_axis(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    axes = draw(st.one_of(
        st.none(),
        st.integers(-len(shape), len(shape) - 1),
        st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True).map(tuple),
    ))
    return shape, axes


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(sorted(REDUCTIONS)), case=shape_and_axis(), keepdims=st.booleans(),
       seed=st.integers(0, 2**16))
def test_reductions_over_random_axes(op, case, keepdims, seed):
    shape, axis = case
    rng = np.random.default_rng(seed)
    values = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.3 + rng.uniform(0, 0.01, shape)
    _check(lambda x: REDUCTIONS[op](x, axis, keepdims), [values], seed)


@settings(max_examples=40, deadline=None)
@given(case=shape_and_axis(), seed=st.integers(0, 2**16), log=st.booleans())
def test_softmax_over_a_random_axis(case, seed, log):
    shape, axis = case
    axis = axis if isinstance(axis, int) else -1
    values = np.random.default_rng(seed).standard_normal(shape)
    _check(lambda x: x.log_softmax(axis=axis) if log else x.softmax(axis=axis), [values], seed)


@settings(max_examples=40, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), n=st.integers(1, 4), k=st.integers(1, 4),
       m=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_matmul_batched_shapes(batch, n, k, m, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((*batch, n, k))
    b = rng.standard_normal((k, m)) if seed % 2 else rng.standard_normal((*[1] * len(batch), k, m))
    _check(lambda x, y: x @ y, [a, b], seed)
