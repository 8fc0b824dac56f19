"""gradcheck, fast mode and check_nodes: they pass on every op of the registry, and fail, naming the op, when its
backward is broken on purpose."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import Cube, DetachedCube, numerical_gradients

from tinygrad_sm import Function, Tensor, nn, ops
from tinygrad_sm import functional as F
from tinygrad_sm.cases import MODEL_CASES, OP_CASES
from tinygrad_sm.gradcheck import (
    check_node,
    check_nodes,
    gradcheck,
    gradgradcheck,
    gradient_fn,
    hessian,
    localize,
    model_fn,
    numerical_jacobian,
)


def _tensors(case, seed=0):
    return [Tensor(array, requires_grad=True) for array in case.inputs(seed=seed)]


def _scaled(original, factor):
    """A backward that calls the right one and scales what it returns: a dropped (or doubled) factor."""

    def backward(ctx, grad_output):
        grads = original(ctx, grad_output)
        if isinstance(grads, tuple):
            return tuple(None if grad is None else grad * factor for grad in grads)
        return grads * factor

    return staticmethod(backward)


def _failing_ops(report):
    return {node.op_name for node in report.nodes if not node.ok}


# ---- every registered op passes ----


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_every_case_passes_full_fast_and_per_node(case):
    report = gradcheck(case.fn, case.inputs())
    assert report.ok, str(report)
    assert report.max_abs_error < 1e-7
    assert gradcheck(case.fn, case.inputs(), fast=True).ok
    nodes = check_nodes(case.fn(*_tensors(case)))
    assert nodes.ok and nodes.first_failure is None, str(nodes)
    assert [node.op_name for node in nodes.nodes] == [case.op]


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.name)
def test_models_pass_in_fast_mode_and_per_node(case):
    model, loss_fn = case.build()
    fn, params = model_fn(model, loss_fn)
    report = gradcheck(fn, params, fast=True, seed=3)
    assert report.ok, str(report)
    assert len(report.inputs) == len(model.parameters())
    assert localize(fn, params, fast=True).ok


# ---- every registered op, broken on purpose, fails: full, fast, and the localiser names it ----


@pytest.mark.parametrize("factor", [0.5, 2.0], ids=["dropped factor", "doubled"])
@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_breaking_an_op_is_caught_and_localised(case, factor, monkeypatch):
    op = getattr(ops, case.op)
    monkeypatch.setattr(op, "backward", _scaled(op.backward, factor))
    full = gradcheck(case.fn, case.inputs())
    assert not full.ok
    assert full.worst() is not None and full.worst().mismatches > 0
    for seed in (0, 1, 2):
        assert not gradcheck(case.fn, case.inputs(), fast=True, seed=seed).ok, f"fast mode, seed {seed}"
    for fast in (False, True):
        nodes = check_nodes(case.fn(*_tensors(case)), fast=fast)
        assert nodes.first_failure.op_name == case.op
        assert _failing_ops(nodes) == {case.op}


def _first_slice_unbroadcast(grad, shape):
    """The classic slip: reduce broadcast axes by taking one slice instead of summing."""
    while grad.ndim > len(shape):
        grad = grad[0]
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = np.take(grad, [0], axis=axis)
    return grad


def test_forgotten_unbroadcast_sum_in_add_is_caught(monkeypatch):
    def backward(ctx, grad_output):
        a_shape, b_shape = ctx.saved_tensors
        return _first_slice_unbroadcast(grad_output, a_shape), _first_slice_unbroadcast(grad_output, b_shape)

    monkeypatch.setattr(ops.Add, "backward", staticmethod(backward))
    a, b = np.random.default_rng(0).standard_normal((3, 1, 4)), np.random.default_rng(1).standard_normal((2, 4))
    report = gradcheck(lambda x, y: (x + y).tanh(), [a, b])
    assert not report.inputs[0].ok and not report.inputs[1].ok
    assert gradcheck(lambda x, y: (x + y).tanh(), [a, b], fast=True).ok is False
    nodes = localize(lambda x, y: (x + y).tanh(), [a, b])
    assert nodes.first_failure.op_name == "Add" and _failing_ops(nodes) == {"Add"}


def test_missing_transpose_in_matmul_is_caught(monkeypatch):
    original = ops.MatMul.backward

    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        return grad_output @ b, original(ctx, grad_output)[1]  # should be grad_output @ b.T

    monkeypatch.setattr(ops.MatMul, "backward", staticmethod(backward))
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((3, 4)), rng.standard_normal((4, 4))]
    report = gradcheck(lambda a, b: (a @ b).sum(), inputs)
    assert not report.inputs[0].ok and report.inputs[1].ok
    assert not gradcheck(lambda a, b: (a @ b).sum(), inputs, fast=True).ok
    assert localize(lambda a, b: (a @ b).relu().sum(), inputs).first_failure.op_name == "MatMul"


def test_softmax_backward_without_the_outer_product_term_is_caught(monkeypatch):
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        return out * grad_output  # only diag(a) of the Jacobian diag(a) - a aᵀ

    monkeypatch.setattr(ops.Softmax, "backward", staticmethod(backward))
    z = np.random.default_rng(0).standard_normal((2, 4))
    report = gradcheck(lambda t: t.softmax(axis=-1), [z])
    assert not report.ok and report.inputs[0].compared == 8 * 8
    assert localize(lambda t: (t * 2).softmax(axis=-1).log().sum(), [z]).first_failure.op_name == "Softmax"


# ---- what the report holds ----


class WrongCube(Cube):
    """The factor 3 dropped."""

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * x**2


def test_users_own_function_right_and_wrong():
    x = np.array([0.5, -1.5, 2.0])
    assert gradcheck(lambda t: Cube.apply(t).sum(), [x]).ok
    report = gradcheck(lambda t: WrongCube.apply(t).sum(), [x])
    worst = report.inputs[0]
    assert not report.ok and worst.mismatches == 3
    assert worst.worst_index == (2,)
    assert worst.analytical == pytest.approx(2.0**2) and worst.numerical == pytest.approx(3 * 2.0**2, rel=1e-8)
    output = (WrongCube.apply(Tensor(x, requires_grad=True)) * 2).sum()
    line = _line_of("output = (WrongCube.apply")
    nodes = check_nodes(output)
    assert nodes.first_failure.op_name == "WrongCube"
    assert nodes.first_failure.location.endswith(f"test_gradcheck.py:{line}")
    assert [node.op_name for node in nodes.nodes] == ["Sum", "Mul", "WrongCube"]
    assert "WrongCube" in nodes.summary() and "WrongCube" in str(nodes)


def test_check_node_feeds_the_given_upstream_gradient():
    x = np.array([0.5, -1.5, 2.0])
    upstream = np.array([2.0, -1.0, 0.25])
    node = WrongCube.apply(Tensor(x, requires_grad=True)).grad_fn
    result = check_node(node, upstream, position=4)
    check = result.inputs[0]
    analytical, numerical = upstream * x**2, upstream * 3 * x**2  # the wrong backward, and d/dx Σ g x³ by hand
    assert not result.ok and check.mismatches == 3 and result.output_shape == (3,)
    assert check.analytical == pytest.approx(analytical[check.worst_index], rel=1e-12)
    assert check.numerical == pytest.approx(numerical[check.worst_index], rel=1e-8)
    assert check.max_abs_error == pytest.approx(np.abs(analytical - numerical).max(), rel=1e-8)
    assert str(result).startswith("#4 WrongCube: input 0: max abs err") and str(result).endswith("FAIL")
    right = check_node(Cube.apply(Tensor(x, requires_grad=True)).grad_fn, upstream)
    assert right.ok and str(right).endswith("0/3 mismatches  pass")
    with pytest.raises(ValueError, match=r"upstream has shape \(2,\), but #0 Cube's output has shape \(3,\)"):
        check_node(Cube.apply(Tensor(x, requires_grad=True)).grad_fn, np.ones(2))


def _line_of(text):
    with open(__file__) as source:
        return next(number for number, line in enumerate(source, 1) if text in line and "_line_of" not in line)


def test_worst_values_agree_with_an_independent_jacobian():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((3, 2)), rng.standard_normal(2)
    report = gradcheck(lambda a, b: WrongCube.apply(a * b).sum(), [x, w])
    check = report.inputs[0]
    numerical = numerical_gradients(lambda a, b: (a * b) ** 3, [x, w], np.ones((3, 2)))[0]
    analytical = (x * w) ** 2 * w
    assert check.numerical == pytest.approx(numerical[check.worst_index], rel=1e-6)
    assert check.analytical == pytest.approx(analytical[check.worst_index], rel=1e-12)
    assert check.max_abs_error == pytest.approx(np.abs(analytical - numerical).max(), rel=1e-6)
    assert check.worst_index == np.unravel_index(np.argmax(np.abs(analytical - numerical)), x.shape)


class ScaleWrongAtTwo(Function):
    """y = c * x elementwise with c = (1, 2, 3); the backward gets c[2] wrong."""

    @staticmethod
    def forward(ctx, x):
        return x * np.array([1.0, 2.0, 3.0])

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * np.array([1.0, 2.0, 3.5])


def test_non_scalar_output_checks_the_whole_jacobian():
    report = gradcheck(lambda t: ScaleWrongAtTwo.apply(t), [np.array([0.3, -0.2, 0.9])])
    check = report.inputs[0]
    assert report.output_shape == (3,) and check.compared == 9 and check.mismatches == 1
    assert check.worst_output_index == (2,) and check.worst_index == (2,)
    assert check.analytical == 3.5 and check.numerical == pytest.approx(3.0)
    assert "out (2,) in (2,)" in str(report)


def test_float32_inputs_are_checked_in_float64_copies_and_left_untouched():
    x32 = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    tensor = Tensor(x32.copy(), requires_grad=True)
    report = gradcheck(lambda t: t.tanh().sum(), [tensor])
    assert report.ok and report.upcast == [0]
    assert "checked in float64 copies" in str(report)
    assert tensor.dtype == np.float32 and np.array_equal(tensor.data, x32) and tensor.grad is None
    naive = numerical_jacobian(lambda t: Tensor(t.data.astype(np.float32)).tanh().sum(), x32)
    assert np.abs(naive - (1 - np.tanh(x32.astype(np.float64)) ** 2).reshape(1, -1)).max() > 1e-3


def test_relu_at_zero_and_tied_max_are_non_differentiable_points_not_failures():
    relu = gradcheck(lambda t: t.relu().sum(), [np.array([-1.0, 0.0, 2.0])])
    assert relu.ok and relu.inputs[0].nondifferentiable == 1 and relu.inputs[0].nondifferentiable_at == [(1,)]
    assert "non-differentiable" in str(relu)
    tied = gradcheck(lambda t: t.max(), [np.array([1.0, 3.0, 3.0])])
    assert tied.ok and tied.inputs[0].nondifferentiable_at == [(1,), (2,)]
    assert gradcheck(lambda t: t.max(), [np.array([1.0, 3.0, 3.0])], fast=True, seed=1).ok


class BadKinkRelu(Function):
    """relu whose backward sends 5 at exactly 0: outside the one-sided range [0, 1], so a failure."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * np.where(x == 0, 5.0, x > 0)


def test_a_gradient_outside_the_one_sided_range_at_a_kink_still_fails():
    report = gradcheck(lambda t: BadKinkRelu.apply(t).sum(), [np.array([-1.0, 0.0, 2.0])])
    assert not report.ok and report.inputs[0].worst_index == (1,) and report.inputs[0].nondifferentiable == 0


def test_fast_mode_costs_two_forward_passes_per_input():
    calls = []

    def fn(a, b):
        calls.append(1)
        return (a * b).sum()

    inputs = [np.ones((10, 10)), np.full(10, 2.0)]
    gradcheck(fn, inputs, fast=True)
    assert len(calls) == 1 + 2 * 2
    calls.clear()
    gradcheck(fn, inputs)
    assert len(calls) == 1 + 2 * (100 + 10)


def test_report_to_dict_is_json():
    report = gradcheck(lambda t: WrongCube.apply(t).sum(), [np.array([1.0, 2.0])], eps=1e-5, atol=1e-6)
    parsed = json.loads(json.dumps(report.to_dict()))
    assert parsed["ok"] is False and parsed["eps"] == 1e-5 and parsed["atol"] == 1e-6 and parsed["mode"] == "full"
    assert parsed["inputs"][0]["worst_index"] == [1] and parsed["inputs"][0]["analytical"] == pytest.approx(4.0)
    nodes = localize(lambda t: WrongCube.apply(t).sum(), [np.array([1.0, 2.0])])
    assert json.loads(json.dumps(nodes.to_dict()))["first_failure"]["op"] == "WrongCube"


def test_check_nodes_works_after_backward_released_the_graph():
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    loss = F.softmax_cross_entropy(x.tanh() * 3, np.array([0, 1, 2, 1]))
    loss.backward()
    nodes = check_nodes(loss)
    assert nodes.ok and [node.op_name for node in nodes.nodes] == ["SoftmaxCrossEntropy", "Mul", "Tanh"]


def test_check_nodes_on_float32_graph_uses_float64_copies():
    x = Tensor(np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32), requires_grad=True)
    nodes = check_nodes((x @ x).sigmoid().mean())
    assert nodes.ok, str(nodes)
    assert max(node.max_abs_error for node in nodes.nodes) < 1e-8  # eps = 1e-6 is below float32's resolution


class WrongShape(Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.sum(axis=0)


def test_check_nodes_reports_a_backward_of_the_wrong_shape_on_its_row():
    nodes = check_nodes(WrongShape.apply(Tensor(np.ones((2, 3)), requires_grad=True)).exp().sum())
    assert nodes.first_failure.op_name == "WrongShape"
    assert "shape (3,)" in nodes.first_failure.error and "(2, 3)" in nodes.first_failure.error


def test_model_fn_restores_the_parameters():
    model, loss_fn = MODEL_CASES[0].build()
    before = model.parameters()
    fn, params = model_fn(model, loss_fn)
    assert gradcheck(fn, params, fast=True).ok
    assert all(after is original for after, original in zip(model.parameters(), before))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda t: 1.0, [np.ones(2)])
    with pytest.raises(ValueError, match="no input requires a gradient"):
        gradcheck(lambda t: t.sum(), [Tensor(np.ones(2))])
    with pytest.raises(TypeError, match="list or tuple"):
        gradcheck(lambda t: t.sum(), {"x": np.ones(2)})
    with pytest.raises(ValueError, match="not made by a recorded op"):
        check_nodes(Tensor(np.ones(2), requires_grad=True))


def test_transposed_inputs_are_perturbed_not_copies_of_them():
    weight = np.random.default_rng(0).standard_normal((4, 3)).T  # F-ordered: reshape(-1) would copy
    assert gradcheck(lambda w: (w * w).sum(), [weight]).ok
    x = Tensor(np.random.default_rng(1).standard_normal((5, 4)), requires_grad=True)
    w = Tensor(np.random.default_rng(2).standard_normal((3, 4)), requires_grad=True)
    nodes = check_nodes((x @ w.T).sum())
    assert nodes.ok, str(nodes)
    assert numerical_jacobian(lambda t: (t * t).sum(), weight) == pytest.approx(2 * weight.reshape(1, -1), rel=1e-6)


# ---- kinks are confirmed at a smaller step; captured leaves; model_fn's containers; bad steps ----


class SteepSquare(Function):
    """y = 1000 x²: d/dx = 2000 x, exact; smooth, but its one-sided differences differ by 2000 eps."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 1000 * x * x

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 2000 * x


class SteepSquareOff(SteepSquare):
    """The same, its backward off by 4e-4 (40 times atol)."""

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (2000 * x + 4e-4)


def test_a_wrong_gradient_near_the_minimum_of_a_steep_smooth_function_fails():
    x = np.array([1e-5, -2e-5, 3e-5])  # one-sided differences 2000 x ± 1000 eps: their gap 2e-3 is 200 times atol
    wrong = gradcheck(lambda t: SteepSquareOff.apply(t), [x])
    check = wrong.inputs[0]
    assert not wrong.ok and check.nondifferentiable == 0 and check.mismatches == 3
    assert check.max_abs_error == pytest.approx(4e-4, rel=1e-6)
    assert not gradcheck(lambda t: SteepSquareOff.apply(t).sum(), [x], fast=True).ok
    right = gradcheck(lambda t: SteepSquare.apply(t), [x])
    assert right.ok and right.inputs[0].nondifferentiable == 0, str(right)
    assert gradcheck(lambda t: SteepSquare.apply(t).sum(), [x], fast=True).ok
    node = SteepSquareOff.apply(Tensor(x, requires_grad=True)).grad_fn
    for fast in (False, True):
        assert not check_node(node, np.ones(3), fast=fast).ok


def test_a_kink_just_inside_the_step_is_neither_a_failure_nor_non_differentiable():
    """relu at ±3e-7 is differentiable (slope 1 and 0), but a kink lies within ±eps = 1e-6 of it."""
    report = gradcheck(lambda t: t.relu().sum(), [np.array([3e-7, -3e-7, 0.0])])
    check = report.inputs[0]
    assert report.ok and check.nondifferentiable_at == [(2,)] and check.max_abs_error < 1e-8


def test_numerical_jacobian_of_functions_returning_a_view_of_their_input():
    """f(x) = x has J = I: the output may share memory with the perturbed point, and must be read before it moves."""
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert numerical_jacobian(lambda t: t, x) == pytest.approx(np.eye(4), abs=1e-9)
    assert numerical_jacobian(lambda t: t.T, x) == pytest.approx(np.eye(4)[[0, 2, 1, 3]], abs=1e-9)


def test_gradcheck_leaves_the_grad_of_captured_tensors_alone():
    w = Tensor(np.array([1.0, -2.0, 0.5]), requires_grad=True)
    kept = Tensor(np.full(3, 7.0))
    b = Tensor(np.array([0.1, 0.2, 0.3]), requires_grad=True)
    b.grad = kept
    x = np.arange(3.0)
    for fast in (False, True):
        report = gradcheck(lambda t: (t * w + b).tanh(), [x], fast=fast)
        assert report.ok and w.grad is None and b.grad is kept, f"fast={fast}"
    model, loss_fn = MODEL_CASES[0].build()
    before = [param.grad for param in model.parameters()]
    assert gradcheck(lambda t: loss_fn(model) * t, [np.array([2.0])]).ok
    assert all(param.grad is grad for param, grad in zip(model.parameters(), before))


class Scaled(nn.Module):
    """x * weight * scales[0] * pair[1] + pair[0]: parameters in an attribute, a list and a tuple."""

    def __init__(self):
        self.weight = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
        self.scales = [Tensor(np.array([0.5, -1.0]), requires_grad=True)]
        self.pair = (Tensor(np.array([0.1, 0.2]), requires_grad=True), Tensor(np.array([3.0, 4.0]), requires_grad=True))

    def forward(self, x):
        return x * self.weight * self.scales[0] * self.pair[1] + self.pair[0]


def _loss(model):
    return (model(Tensor(np.array([3.0, -4.0]))) ** 2).sum()


def test_model_fn_swaps_parameters_held_in_lists_and_tuples():
    model = Scaled()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["weight", "scales.0", "pair.0", "pair.1"]
    before, pair = model.parameters(), model.pair
    fn, params = model_fn(model, _loss)
    values = [np.array([2.0, 1.0]), np.array([1.0, 3.0]), np.array([0.0, 1.0]), np.array([1.0, 0.5])]
    by_hand = np.sum((np.array([3.0, -4.0]) * values[0] * values[1] * values[3] + values[2]) ** 2)
    assert fn(*[Tensor(value) for value in values]).item() == pytest.approx(by_hand, rel=1e-12)
    report = gradcheck(fn, params)
    assert report.ok and len(report.inputs) == 4 and report.upcast == [0]
    assert all(after is original for after, original in zip(model.parameters(), before)) and model.pair is pair


class Frozen(nn.Module):
    """A module whose attributes cannot be set after __init__."""

    def __init__(self):
        object.__setattr__(self, "bias", Tensor(np.array([1.0]), requires_grad=True))

    def __setattr__(self, name, value):
        raise AttributeError(f"Frozen: cannot set {name}")


class Outer(nn.Module):
    def __init__(self):
        self.weight = Tensor(np.array([2.0]), requires_grad=True)
        self.blocks = [Frozen()]


def test_model_fn_restores_the_model_when_a_swap_or_the_loss_fails():
    model = Outer()
    weight, bias = model.weight, model.blocks[0].bias
    fn, params = model_fn(model, lambda m: (m.weight * m.blocks[0].bias).sum())
    with pytest.raises(AttributeError, match="cannot set bias"):
        fn(*[Tensor(param.data * 3) for param in params])
    assert model.weight is weight and model.blocks[0].bias is bias

    def broken(m):
        raise RuntimeError("loss failed")

    model = Scaled()
    before = model.parameters()
    fn, params = model_fn(model, broken)
    with pytest.raises(RuntimeError, match="loss failed"):
        fn(*[Tensor(param.data) for param in params])
    assert all(after is original for after, original in zip(model.parameters(), before))


@pytest.mark.parametrize("options, wrong", [
    ({"eps": 0.0}, "eps must be > 0"), ({"eps": -1e-6}, "eps must be > 0"), ({"eps": np.nan}, "eps must be > 0"),
    ({"atol": -1e-5}, "atol must be >= 0"), ({"rtol": -0.1}, "rtol must be >= 0"), ({"atol": np.inf}, "atol must be"),
])
def test_a_bad_step_or_tolerance_is_refused_by_every_checker(options, wrong):
    x = np.array([0.5, 1.5])
    node = Cube.apply(Tensor(x, requires_grad=True)).grad_fn
    checks = {
        "gradcheck": lambda: gradcheck(lambda t: t.tanh(), [x], **options),
        "check_nodes": lambda: check_nodes(Cube.apply(Tensor(x, requires_grad=True)), **options),
        "check_node": lambda: check_node(node, None, **options),
        "localize": lambda: localize(lambda t: t.tanh(), [x], **options),
        "gradgradcheck": lambda: gradgradcheck(lambda t: t.tanh(), [Tensor(x, requires_grad=True)], **options),
    }
    if set(options) == {"eps"}:
        checks["numerical_jacobian"] = lambda: numerical_jacobian(lambda t: t.tanh(), x, **options)
        checks["hessian"] = lambda: hessian(lambda t: t.tanh().sum(), x, **options)
    for name, check in checks.items():
        with pytest.raises(ValueError, match=f"^{name}: {wrong}"):
            check()


def test_cli_gradcheck_with_eps_zero_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "tinygrad_sm", "gradcheck", "--eps", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "eps must be > 0" in done.stderr and "Traceback" not in done.stderr


# ---- gradgradcheck: second derivatives against finite differences of the first ----


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_gradgradcheck_passes_on_every_case_full_and_fast(case):
    for fast in (False, True):
        report = gradgradcheck(case.fn, _tensors(case), fast=fast)
        assert report.ok and report.second_order, f"{case.name}, fast={fast}\n{report}"
        assert [check.index for check in report.inputs] == list(range(len(case.shapes) + 1))  # the inputs, then v


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.name)
def test_gradgradcheck_passes_on_the_models_in_fast_mode(case):
    model, loss_fn = case.build()
    assert gradgradcheck(*model_fn(model, loss_fn), fast=True).ok


def test_gradgradcheck_catches_a_wrong_second_derivative_the_first_order_check_misses():
    x = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    v = np.array([1.0, 2.0, -0.5])
    assert gradcheck(lambda t: DetachedCube.apply(t), [x]).ok
    assert gradgradcheck(lambda t: Cube.apply(t), [x], [v]).ok
    report = gradgradcheck(lambda t: DetachedCube.apply(t), [x], [v])
    assert not report.ok and str(report).startswith("gradgradcheck FAILED")
    wrong, upstream = report.inputs
    assert not wrong.ok and upstream.ok  # d/dv (v 3x²) is right; d/dx is 0 instead of 6xv
    assert wrong.mismatches == 3 and wrong.worst_index == wrong.worst_output_index
    (element,) = wrong.worst_index
    assert wrong.analytical == 0.0
    assert wrong.numerical == pytest.approx(6 * x.data[element] * v[element], rel=1e-6)
    assert not gradgradcheck(lambda t: DetachedCube.apply(t), [x], fast=True).ok


def test_gradgradcheck_of_several_inputs_concatenates_their_gradients():
    rng = np.random.default_rng(0)
    x, w = Tensor(rng.standard_normal((2, 3)), requires_grad=True), Tensor(rng.standard_normal(3), requires_grad=True)
    scale = Tensor(np.array(2.0))  # a constant: not differentiated, not checked
    fn = lambda x, w, scale: ((x * w).tanh() * scale).sum()  # noqa: E731
    report = gradgradcheck(fn, [x, w, scale])
    assert report.ok and report.output_shape == (9,)
    assert [(check.index, check.shape) for check in report.inputs] == [(0, (2, 3)), (1, (3,)), (3, ())]
    gradient, inputs = gradient_fn(fn, [x, w, scale], [np.array(0.5)])
    t = np.tanh(x.data * w.data)
    expected = np.concatenate([(0.5 * 2 * (1 - t**2) * w.data).reshape(-1), (0.5 * 2 * (1 - t**2) * x.data).sum(0)])
    np.testing.assert_allclose(gradient(*inputs).data, expected, rtol=1e-12)
    assert report.to_dict()["order"] == 2 and gradcheck(fn, [x, w, scale]).to_dict()["order"] == 1


def test_gradgradcheck_grad_outputs_without_requires_grad_are_constants():
    x = Tensor(np.array([0.3, -0.7]), requires_grad=True)
    report = gradgradcheck(lambda t: t.exp(), [x], Tensor(np.array([1.0, -2.0])))
    assert report.ok and [check.index for check in report.inputs] == [0]
    checked = gradgradcheck(lambda t: t.exp(), [x], Tensor(np.array([1.0, -2.0]), requires_grad=True))
    assert [check.index for check in checked.inputs] == [0, 1]


def test_gradgradcheck_leaves_the_inputs_untouched():
    x = Tensor(np.array([0.3, -0.7], dtype=np.float32), requires_grad=True)
    before = x.data.copy()
    report = gradgradcheck(lambda t: (t * t).tanh(), [x])
    assert report.ok and report.upcast == [0] and x.grad is None
    np.testing.assert_array_equal(x.data, before)


@pytest.mark.parametrize(("inputs", "grad_outputs", "error", "message"), [
    ([np.ones(3)], None, TypeError, "input 0 is a ndarray; expected a Tensor"),
    ((Tensor(np.ones(3), requires_grad=True), [0, 1, 2]), None, TypeError, "input 1 is a list; expected a Tensor"),
    ([Tensor(np.ones(3), requires_grad=True), Tensor(np.array([0, 1, 2]))], None, TypeError,
     "input 1 has dtype int64; expected a floating-point Tensor"),
    ("x", None, TypeError, "inputs must be a Tensor or a list or tuple of Tensors, got str"),
    ([Tensor(np.ones(3))], None, ValueError, "no input requires a gradient"),
    ([Tensor(np.ones(3), requires_grad=True)], np.ones(4), ValueError,
     r"grad_outputs has shape \(4,\); expected fn's output shape \(3,\)"),
    ([Tensor(np.ones(3), requires_grad=True)], [np.ones(3), np.ones(3)], ValueError,
     r"fn has one output, so grad_outputs needs one Tensor \(of shape \(3,\)\), got 2"),
    ([Tensor(np.ones(3), requires_grad=True)], np.arange(3), TypeError,
     r"grad_outputs must be a floating-point Tensor or array of fn's output shape \(3,\)"),
])
def test_gradgradcheck_bad_input_names_what_was_expected(inputs, grad_outputs, error, message):
    with pytest.raises(error, match=f"^gradgradcheck: {message}"):
        gradgradcheck(lambda *ts: ts[0].tanh(), inputs, grad_outputs)


def test_gradgradcheck_of_an_output_that_does_not_depend_on_the_inputs_is_refused():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="fn's output does not depend on any input that requires a gradient"):
        gradgradcheck(lambda t: Tensor(np.ones(3)), [x])
