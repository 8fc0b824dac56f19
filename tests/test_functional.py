"""The softmax family, the fused losses and their target checks, softmax_jacobian, and the calculus tools."""

import re
import tracemalloc
import warnings

import numpy as np
import pytest

from tinygrad_sm import Tensor, nn
from tinygrad_sm import functional as F
from tinygrad_sm.gradcheck import hessian, jacobian, numerical_jacobian
from tinygrad_sm.tensor import backward_steps, seed_gradient

DTYPES = [np.float32, np.float64]


def softmax_reference(z, axis):
    """exp(z - max z) / Σ exp(z - max z) in float64 numpy."""
    z = np.asarray(z, dtype=np.float64)
    exps = np.exp(z - z.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def logsumexp_reference(z, axis, keepdims=False):
    """max z + log Σ exp(z - max z) in float64 numpy."""
    z = np.asarray(z, dtype=np.float64)
    top = z.max(axis=axis, keepdims=True)
    out = top + np.log(np.exp(z - top).sum(axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def huge_logits(dtype, shape=(3, 4, 5), seed=0):
    """Logits of magnitude up to 1e4, with exact ties and the extremes ±1e4 in every slice."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1e4, 1e4, shape)
    z.flat[0], z.flat[1], z.flat[-1] = 1e4, -1e4, 1e4
    return z.astype(dtype)


# ---- the softmax family: stable at |z| = 1e4, any axis, dtype kept ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_is_stable_at_huge_logits(dtype, axis):
    """Rows of a = softmax(z) sum to 1 (within 1e-6 in float32) and the gradient aᵀ(g - Σ g a) stays finite."""
    z = Tensor(huge_logits(dtype), requires_grad=True)
    a = F.softmax(z, axis=axis)
    assert a.dtype == dtype and a.shape == z.shape
    assert np.isfinite(a.data).all() and (a.data >= 0).all()
    np.testing.assert_allclose(a.data.sum(axis=axis, dtype=np.float64), 1, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.data, softmax_reference(z.data, axis), rtol=0, atol=1e-6)
    upstream = np.random.default_rng(1).standard_normal(z.shape).astype(dtype)
    a.backward(upstream)
    assert z.grad.dtype == dtype and np.isfinite(z.grad.data).all()
    reference = softmax_reference(z.data, axis)
    expected = reference * (upstream - (upstream * reference).sum(axis=axis, keepdims=True))
    np.testing.assert_allclose(z.grad.data, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_log_softmax_is_stable_at_huge_logits(dtype, axis):
    """log a = z - logsumexp(z): finite (no log 0) even where a underflows to 0; gradient g - a Σ g finite."""
    z = Tensor(huge_logits(dtype), requires_grad=True)
    log_a = F.log_softmax(z, axis=axis)
    assert log_a.dtype == dtype and np.isfinite(log_a.data).all()
    expected = z.data.astype(np.float64) - logsumexp_reference(z.data, axis, keepdims=True)
    np.testing.assert_allclose(log_a.data, expected, rtol=1e-6, atol=1e-6 * 1e4)
    assert log_a.data.min() < -1e3  # probabilities far below the smallest float: only the log form holds them
    upstream = np.random.default_rng(2).standard_normal(z.shape).astype(dtype)
    log_a.backward(upstream)
    assert z.grad.dtype == dtype and np.isfinite(z.grad.data).all()
    reference = softmax_reference(z.data, axis)
    np.testing.assert_allclose(z.grad.data, upstream - reference * upstream.sum(axis=axis, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, (0, 2), None])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_is_stable_at_huge_logits(dtype, axis, keepdims):
    """log Σ exp(z) = max z + log Σ exp(z - max z): finite at 1e4 (exp(1e4) overflows); gradient g softmax(z)."""
    z = Tensor(huge_logits(dtype), requires_grad=True)
    out = F.logsumexp(z, axis=axis, keepdims=keepdims)
    expected = logsumexp_reference(z.data, axis, keepdims)
    assert out.dtype == dtype and out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)
    out.sum().backward()
    assert z.grad.dtype == dtype and np.isfinite(z.grad.data).all()
    np.testing.assert_allclose(z.grad.data, softmax_reference(z.data, axis), rtol=0, atol=1e-6)


def test_logsumexp_of_a_row_of_minus_infinity_is_minus_infinity_without_a_warning():
    """log Σ exp(-inf) = log 0 = -inf (scipy's answer); the gradient there is 0/0, NaN, as in PyTorch."""
    z = Tensor(np.array([[-np.inf, -np.inf], [0.0, np.log(3.0)]]), requires_grad=True)
    out = F.logsumexp(z, axis=1)  # pytest turns RuntimeWarnings into errors for this project
    np.testing.assert_array_equal(out.data, [-np.inf, np.log(4.0)])
    out.sum().backward()
    assert np.isnan(z.grad.data[0]).all()
    np.testing.assert_allclose(z.grad.data[1], [0.25, 0.75])


def test_softmax_family_values_match_numpy_over_axis_tuples_and_lists():
    z = np.random.default_rng(3).standard_normal((4, 6, 2))
    np.testing.assert_allclose(F.softmax(z, axis=(0, 2)).data, softmax_reference(z, (0, 2)), atol=1e-12)
    np.testing.assert_allclose(F.log_softmax(z, axis=[1]).data, np.log(softmax_reference(z, 1)), atol=1e-12)
    np.testing.assert_allclose(
        F.logsumexp(z, axis=[0, 1], keepdims=True).data, logsumexp_reference(z, (0, 1), keepdims=True), atol=1e-12
    )


@pytest.mark.parametrize("loss", [F.softmax_cross_entropy, F.binary_cross_entropy_with_logits])
def test_integer_logits_are_refused(loss):
    logits, target = (np.array([[1, 2], [3, 4]]), np.array([0, 1])) if loss is F.softmax_cross_entropy else (
        np.array([1, -2]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="logits must be floating point.*got int64"):
        loss(logits, target)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_family_gradients_match_finite_differences(name, axis):
    """Every output's gradient (the whole Jacobian) by autograd equals central differences in float64."""
    fn = getattr(F, name)
    z = np.random.default_rng(4).standard_normal((3, 4)) * 3
    np.testing.assert_allclose(
        jacobian(lambda t: fn(t, axis=axis), z), numerical_jacobian(lambda t: fn(t, axis=axis), z), atol=1e-8
    )


def test_float32_softmax_rows_sum_to_one_for_many_classes():
    z = np.random.default_rng(5).standard_normal((16, 1000)).astype(np.float32) * 50
    np.testing.assert_allclose(F.softmax(z).data.sum(axis=1, dtype=np.float64), 1, rtol=0, atol=1e-6)


def test_softmax_bad_axis_is_a_clear_error():
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        F.softmax(Tensor(np.zeros((3, 4))), axis=2)


# ---- the fused softmax cross-entropy ----

def _problem(dtype=np.float64, n=5, k=4, seed=6):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, k)) * 2).astype(dtype)
    labels = rng.integers(0, k, n)
    soft = softmax_reference(rng.standard_normal((n, k)), axis=1)
    return z, labels, soft


def test_fused_loss_is_one_node_whose_parents_are_logits_and_target():
    z, labels, soft = _problem()
    logits = Tensor(z, requires_grad=True)
    loss = F.softmax_cross_entropy(logits, labels)
    assert loss.grad_fn.op_name == "SoftmaxCrossEntropy"
    assert loss.grad_fn.parents[0] is logits
    np.testing.assert_array_equal(loss.grad_fn.parents[1].data, labels)
    steps = list(backward_steps([loss], [seed_gradient(loss)]))
    assert [node.op_name for node, _, _ in steps] == ["SoftmaxCrossEntropy"]  # the whole graph: one node

    target = Tensor(soft)
    loss = F.softmax_cross_entropy(logits, target)
    assert loss.grad_fn.op_name == "SoftmaxCrossEntropy"
    assert loss.grad_fn.parents[0] is logits and loss.grad_fn.parents[1] is target


def test_fused_backward_never_builds_the_jacobian():
    """N K² floats for the Jacobians would be 512 MB here; the backward allocates a few N K arrays."""
    n, k = 4, 4096
    rng = np.random.default_rng(7)
    logits = Tensor(rng.standard_normal((n, k)), requires_grad=True)
    loss = F.softmax_cross_entropy(logits, rng.integers(0, k, n))
    tracemalloc.start()
    loss.backward()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * n * k * 8  # under 8 arrays of (N, K) float64; one Jacobian alone is N K² · 8 bytes
    np.testing.assert_allclose(logits.grad.data.sum(axis=1), 0, atol=1e-12)  # rows of (a - y)/N sum to 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target_kind", ["labels", "soft"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_loss_values_gradients_and_dtype(dtype, target_kind, reduction):
    """CEᵢ = -Σₖ yᵢₖ log aᵢₖ reduced; ∂/∂z = (a - y) times the reduction's factor (1/N, 1, or gᵢ)."""
    z, labels, soft = _problem(dtype)
    n, k = z.shape
    Y = np.eye(k)[labels] if target_kind == "labels" else soft
    target = labels if target_kind == "labels" else soft
    per_row = -(Y * np.log(softmax_reference(z, axis=1))).sum(axis=1)
    expected_loss = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    logits = Tensor(z, requires_grad=True)
    loss = F.softmax_cross_entropy(logits, target, reduction=reduction)
    assert loss.dtype == dtype and loss.shape == np.shape(expected_loss)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss.data, expected_loss, rtol=tolerance)

    upstream = np.random.default_rng(8).uniform(0.5, 2, n) if reduction == "none" else np.float64(1.7)
    loss.backward(upstream.astype(dtype))
    factor = upstream[:, None] if reduction == "none" else upstream / n if reduction == "mean" else upstream
    assert logits.grad.dtype == dtype
    np.testing.assert_allclose(
        logits.grad.data, (softmax_reference(z, axis=1) - Y) * factor, rtol=0, atol=10 * tolerance
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_loss_is_finite_at_huge_logits(dtype):
    """With the label on the smallest logit, CE = max z - z_y ≈ 2e4 exactly; the naive log(softmax) is log 0."""
    z = huge_logits(dtype, shape=(6, 5))
    labels = z.argmin(axis=1)
    logits = Tensor(z, requires_grad=True)
    loss = F.softmax_cross_entropy(logits, labels, reduction="none")
    expected = logsumexp_reference(z, axis=1) - z.astype(np.float64)[np.arange(6), labels]
    assert np.isfinite(loss.data).all()
    np.testing.assert_allclose(loss.data, expected, rtol=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(logits.grad.data, softmax_reference(z, 1) - np.eye(5)[labels], rtol=0, atol=1e-6)


def test_soft_one_hot_targets_equal_int_labels():
    z, labels, _ = _problem()
    hard = F.softmax_cross_entropy(z, labels, reduction="none")
    soft = F.softmax_cross_entropy(z, np.eye(z.shape[1])[labels], reduction="none")
    np.testing.assert_allclose(soft.data, hard.data, rtol=1e-15)


def test_soft_target_gradient_is_minus_log_softmax():
    """∂/∂y (-Σ y log a) = -log a (the target as a free variable), over N for the mean."""
    z, _, soft = _problem()
    target = Tensor(soft, requires_grad=True)
    F.softmax_cross_entropy(z, target).backward()
    np.testing.assert_allclose(target.grad.data, -np.log(softmax_reference(z, axis=1)) / len(z), rtol=1e-12)


def test_float32_logits_with_float64_soft_targets_stay_float32():
    z, _, soft = _problem(np.float32)
    logits = Tensor(z, requires_grad=True)
    loss = F.softmax_cross_entropy(logits, soft)
    loss.backward()
    assert loss.dtype == np.float32 and logits.grad.dtype == np.float32


def test_works_on_the_logits_of_a_softmax_regression():
    model = nn.SoftmaxRegression(3, 4, rng=0)
    x = np.random.default_rng(9).standard_normal((5, 3)).astype(np.float32)
    loss = F.softmax_cross_entropy(model(Tensor(x)), np.array([0, 1, 2, 3, 0]))
    loss.backward()
    assert loss.dtype == np.float32 and model.weight.grad.shape == (4, 3) and model.bias.grad.shape == (4,)


LOGITS = np.zeros((3, 4))
BAD_TARGETS = [
    ("label too large", np.array([0, 4, 1]), r"label 4 is outside \[0, 4\) for logits with 4 classes"),
    ("negative label", np.array([0, -1, 1]), r"label -1 is outside \[0, 4\)"),
    ("float labels", np.array([0.0, 1.0, 2.0]), r"1-D target must hold integer class labels.*float64.*\(N, K\)"),
    ("bool labels", np.array([True, False, True]), r"integer class labels, got dtype bool"),
    ("too few labels", np.array([0, 1]), r"got 2 labels for 3 rows of logits; expected one label per row"),
    ("probabilities of the wrong N", np.full((2, 4), 0.25), r"shape \(2, 4\), expected \(3, 4\) like the logits"),
    ("probabilities of the wrong K", np.full((3, 5), 0.2), r"shape \(3, 5\), expected \(3, 4\)"),
    ("negative probability", np.array([[1.5, -0.5, 0, 0]] * 3), r"must be non-negative, got -0.5"),
    ("rows not summing to 1", np.array([[0.25] * 4, [0.25] * 4, [0.3] * 4]), r"row 2 sums to 1.2.*must sum to 1"),
    ("row sum off by 1e-5", np.array([[0.25] * 4] * 2 + [[0.25, 0.25, 0.25, 0.25 + 1e-5]]), r"row 2 sums to 1.00001"),
    ("NaN probability", np.array([[np.nan, 0.5, 0.5, 0]] * 3), r"must be finite"),
    ("int probabilities", np.array([[1, 0, 0, 0]] * 3), r"must be floating point, got int64"),
    ("3-D target", np.zeros((3, 4, 1)), r"int labels of shape \(3,\) or probabilities of shape \(3, 4\)"),
]


@pytest.mark.parametrize("case", BAD_TARGETS, ids=[case[0] for case in BAD_TARGETS])
def test_bad_targets_say_what_was_expected(case):
    _, target, message = case
    with pytest.raises(ValueError, match=message):
        F.softmax_cross_entropy(Tensor(LOGITS), target)


def test_row_sums_within_1e_minus_6_are_accepted():
    target = np.full((3, 4), 0.25)
    target[0, 0] += 5e-7
    assert np.isfinite(F.softmax_cross_entropy(LOGITS, target).item())


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), ()])
def test_logits_must_be_2d(shape):
    with pytest.raises(ValueError, match=r"logits must be 2-D \(N, K\), got shape " + re.escape(str(shape))):
        F.softmax_cross_entropy(Tensor(np.zeros(shape)), np.array([0]))


def test_bad_reduction_names_the_choices():
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"):
        F.softmax_cross_entropy(LOGITS, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(3), reduction="max")


def test_a_target_needing_a_gradient_must_match_the_logits_dtype():
    """Casting it would make a copy outside the graph and silently drop its gradient."""
    target = Tensor(np.full((3, 4), 0.25, dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="must have the logits' dtype float64, got float32"):
        F.softmax_cross_entropy(Tensor(LOGITS), target)


# ---- binary cross-entropy with logits ----

EXTREME_Z = [-1e4, -800.0, -100.0, -20.0, -1.0, 0.0, 1.0, 20.0, 100.0, 800.0, 1e4]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("y_value", [0.0, 1.0, 0.3])
def test_bce_with_logits_is_stable_up_to_1e4(dtype, y_value):
    """BCE = log(1 + e^z) - y z = max(z, 0) - y z + log(1 + e^-|z|); ∂/∂z = σ(z) - y with σ = (1 + tanh(z/2))/2."""
    z_values = np.array(EXTREME_Z, dtype=dtype)
    y = np.full(z_values.shape, y_value, dtype=dtype)
    z = Tensor(z_values, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no divide by zero, no invalid value, of any kind
        loss = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        loss.sum().backward()
    z64 = z_values.astype(np.float64)
    assert loss.dtype == dtype and z.grad.dtype == dtype
    assert np.isfinite(loss.data).all() and np.isfinite(z.grad.data).all()
    np.testing.assert_allclose(loss.data, np.logaddexp(0, z64) - y_value * z64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z.grad.data, (1 + np.tanh(z64 / 2)) / 2 - y_value, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_is_one_node_with_reductions(reduction):
    rng = np.random.default_rng(10)
    z_values, y = rng.standard_normal(7) * 3, rng.uniform(0, 1, 7)
    z = Tensor(z_values, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(z, y, reduction=reduction)
    assert loss.grad_fn.op_name == "BinaryCrossEntropyWithLogits" and loss.grad_fn.parents[0] is z
    per_element = np.logaddexp(0, z_values) - y * z_values
    expected = {"mean": per_element.mean(), "sum": per_element.sum(), "none": per_element}[reduction]
    np.testing.assert_allclose(loss.data, expected, rtol=1e-13)

    def fn(t):
        return F.binary_cross_entropy_with_logits(t, y, reduction=reduction)

    np.testing.assert_allclose(jacobian(fn, z_values), numerical_jacobian(fn, z_values), atol=1e-8)
    scale = 1 / 7 if reduction == "mean" else 1.0
    if reduction != "none":
        loss.backward()
        np.testing.assert_allclose(z.grad.data, ((1 + np.tanh(z_values / 2)) / 2 - y) * scale, atol=1e-15)


@pytest.mark.parametrize(
    "y, message",
    [
        (np.zeros(2), r"targets have shape \(2,\), logits \(3,\); they must match"),
        (np.array([0.0, 1.5, 0.0]), r"targets must be probabilities in \[0, 1\]"),
        (np.array([0.0, -0.1, 0.0]), r"targets must be probabilities in \[0, 1\]"),
        (np.array([0.0, np.nan, 0.0]), r"in \[0, 1\] \(no NaN\)"),
    ],
)
def test_bce_bad_targets(y, message):
    with pytest.raises(ValueError, match=message):
        F.binary_cross_entropy_with_logits(Tensor(np.zeros(3)), y)


def test_bce_int_targets_take_the_logits_dtype():
    loss = F.binary_cross_entropy_with_logits(Tensor(np.zeros(3, dtype=np.float32)), np.array([0, 1, 1]))
    assert loss.dtype == np.float32 and loss.grad_fn is None
    assert loss.item() == pytest.approx(np.log(2), rel=1e-6)


# ---- softmax_jacobian ----

def test_softmax_jacobian_shapes_and_entries():
    """Jᵢⱼ = aᵢ(δᵢⱼ - aⱼ); a batch (N, K) gives one (K, K) matrix per row."""
    a = softmax_reference(np.random.default_rng(11).standard_normal((3, 5)), axis=1)
    single = F.softmax_jacobian(a[0])
    batch = F.softmax_jacobian(a)
    assert single.shape == (5, 5) and batch.shape == (3, 5, 5)
    for i in range(5):
        for j in range(5):
            assert single[i, j] == pytest.approx(a[0, i] * ((i == j) - a[0, j]), abs=1e-16)
    for row in range(3):
        np.testing.assert_array_equal(batch[row], F.softmax_jacobian(a[row]))
    np.testing.assert_array_equal(F.softmax_jacobian(Tensor(a)), batch)
    assert F.softmax_jacobian(a.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("shape", [(), (2, 3, 4)])
def test_softmax_jacobian_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match=r"a must have shape \(K,\) or \(N, K\)"):
        F.softmax_jacobian(np.ones(shape))


# ---- numerical_jacobian, jacobian, hessian against hand-derived formulas ----

def test_jacobian_of_a_linear_map_is_its_matrix():
    """f(x) = A x has J = A exactly; a (2, 3) input is flattened, so J is (output size, 6)."""
    A = np.random.default_rng(12).standard_normal((4, 6))
    x = np.random.default_rng(13).standard_normal((2, 3))

    def fn(t):
        return t.reshape(6) @ A.T

    assert jacobian(fn, x).shape == numerical_jacobian(fn, x).shape == (4, 6)
    np.testing.assert_allclose(jacobian(fn, x), A, rtol=0, atol=1e-15)
    np.testing.assert_allclose(numerical_jacobian(fn, x), A, rtol=0, atol=1e-9)


def test_jacobian_of_a_nonlinear_map_by_hand():
    """f(x) = tanh(x) Σx has ∂fᵢ/∂xⱼ = δᵢⱼ (1 - tanh²xᵢ) Σx + tanh xᵢ."""
    x = np.random.default_rng(14).standard_normal(5)
    by_hand = np.diag(1 - np.tanh(x) ** 2) * x.sum() + np.tanh(x)[:, None]

    def fn(t):
        return t.tanh() * t.sum()

    np.testing.assert_allclose(jacobian(fn, x), by_hand, rtol=0, atol=1e-14)
    np.testing.assert_allclose(numerical_jacobian(fn, x), by_hand, rtol=0, atol=1e-9)


def test_numerical_jacobian_works_in_float64_and_leaves_the_input_alone():
    """d/dx x³ = 3x²; a float32 input is copied to float64 first, so 1e-6 steps are not lost to rounding."""
    x = np.random.default_rng(15).standard_normal(4).astype(np.float32)
    kept = x.copy()
    result = numerical_jacobian(lambda t: t * t * t, x)
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, np.diag(3 * x.astype(np.float64) ** 2), rtol=0, atol=1e-8)
    np.testing.assert_array_equal(x, kept)


def test_jacobian_of_a_constant_is_zero():
    np.testing.assert_array_equal(jacobian(lambda t: Tensor(np.ones(3)), np.ones(2)), np.zeros((3, 2)))
    np.testing.assert_array_equal(jacobian(lambda t: t[0:1] * 0 + t[0:1], np.ones(2)), [[1.0, 0.0]])


def test_jacobian_keeps_other_leaves_gradients():
    """A function of a model's parameters: jacobian must not leave its own backward passes in their .grad."""
    model = nn.Linear(3, 2, rng=0, dtype=np.float64)
    x = np.random.default_rng(16).standard_normal(3)
    model.weight.grad = Tensor(np.full((2, 3), 7.0))
    result = jacobian(lambda t: model(t), x)
    np.testing.assert_allclose(result, model.weight.data, atol=1e-15)
    np.testing.assert_array_equal(model.weight.grad.data, np.full((2, 3), 7.0))
    assert model.bias.grad is None


def test_hessian_of_a_quadratic_is_a_plus_a_transpose():
    """f(x) = xᵀAx has ∇f = (A + Aᵀ)x and ∇²f = A + Aᵀ, for any (non-symmetric) A."""
    A = np.random.default_rng(17).standard_normal((5, 5))
    x = np.random.default_rng(18).standard_normal(5)
    result = hessian(lambda t: t @ (Tensor(A) @ t), x)
    assert result.shape == (5, 5)
    np.testing.assert_allclose(result, A + A.T, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(result, result.T)


def test_hessian_of_logsumexp_is_the_softmax_jacobian():
    """∇ logsumexp(z) = softmax(z), so ∇² logsumexp(z) = diag(a) - a aᵀ."""
    z = np.random.default_rng(19).standard_normal(6)
    np.testing.assert_allclose(
        hessian(F.logsumexp, z), F.softmax_jacobian(softmax_reference(z, axis=0)), rtol=0, atol=1e-9
    )


def test_hessian_of_a_matrix_input_is_over_its_flattened_elements():
    """f(X) = Σ X³ over a (2, 2) X: ∇²f = diag(6 X.ravel())."""
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(hessian(lambda t: (t * t * t).sum(), x), np.diag(6 * x.ravel()), atol=1e-8)


def test_hessian_needs_a_scalar_function():
    with pytest.raises(ValueError, match="hessian: fn must return a scalar .one element., got 3 elements"):
        hessian(lambda t: t * t, np.ones(3))


def test_empty_logits_are_refused():
    with pytest.raises(ValueError, match=r"logits of shape \(0, 3\) are empty"):
        F.softmax_cross_entropy(Tensor(np.zeros((0, 3))), np.zeros(0, dtype=np.int64))
