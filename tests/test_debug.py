"""The step-through debugger, anomaly detection, hooks and TINYGRAD_SM_DEBUG, against backward() itself,
central finite differences in float64 and the hand-derived softmax Jacobian."""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import WrongSquare, numerical_gradients, relative_error

from tinygrad_sm import Tensor, autograd, nn
from tinygrad_sm import functional as F
from tinygrad_sm.cases import OP_CASES
from tinygrad_sm.debug import AnomalyError, BackwardStepper, detect_anomaly
from tinygrad_sm.gradcheck import numerical_jacobian
from tinygrad_sm.watch import watching


def named_graph(rng):
    """A value used twice, a diamond, a broadcast and a softmax; every intermediate tensor named."""
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True, name="x")
    w = Tensor(rng.standard_normal((4, 4)), requires_grad=True, name="w")
    b = Tensor(rng.standard_normal(4), requires_grad=True, name="b")
    tensors = {}
    tensors["h"] = x @ w
    tensors["z"] = tensors["h"] + b
    tensors["twice"] = tensors["z"] + tensors["z"]
    tensors["a"] = tensors["twice"].softmax(axis=-1)
    tensors["shifted"] = tensors["a"] + x
    tensors["diamond"] = tensors["shifted"] * tensors["a"]
    tensors["t"] = tensors["diamond"].tanh()
    tensors["loss"] = tensors["t"].sum()
    for name, tensor in tensors.items():
        tensor.name = name
    return tensors["loss"], tensors, (x, w, b)


def test_stepping_order_is_backward_order():
    loss, tensors, _ = named_graph(np.random.default_rng(0))
    order = []  # a tensor's hook runs when its gradient is complete, just before its node's backward
    for tensor in tensors.values():
        tensor.register_hook(lambda grad, tensor=tensor: order.append(tensor.name))
    loss.backward()

    loss, _, _ = named_graph(np.random.default_rng(0))
    stepped = [step.output.name for step in BackwardStepper(loss)]
    assert stepped == order
    assert stepped[0] == "loss" and stepped.index("a") < stepped.index("twice") < stepped.index("z")
    assert len(stepped) == len(tensors)


def test_nothing_runs_until_the_first_step():
    loss, tensors, leaves = named_graph(np.random.default_rng(1))
    seen = []
    tensors["loss"].register_hook(seen.append)
    stepper = BackwardStepper(loss)
    assert seen == [] and all(leaf.grad is None for leaf in leaves)
    assert stepper.current is None and len(stepper.pending) == len(tensors)
    assert not any(node.released for node in stepper.pending)
    first = stepper.step()
    assert len(seen) == 1 and first.index == 0 and stepper.current is first
    assert [node.op_name for node in stepper.pending][:2] == ["Tanh", "Mul"]


def test_stepping_to_the_end_leaves_exactly_backwards_grads():
    def grads_after(run):
        model = nn.MLP([5, 7, 3], rng=np.random.default_rng(3))  # float32, so rounding order would show
        data = np.random.default_rng(4).standard_normal((6, 5)).astype(np.float32)
        loss = F.softmax_cross_entropy(model(Tensor(data)), np.array([0, 2, 1, 1, 0, 2]))
        run(loss)
        return [(name, p.grad.data) for name, p in model.named_parameters()]

    steppers = []

    def step_in_threes(loss):
        steppers.append(BackwardStepper(loss))
        while steppers[-1].step(3) is not None:
            pass

    expected = grads_after(lambda loss: loss.backward())
    runs = {
        "finish": lambda loss: BackwardStepper(loss).finish(),
        "iterate": lambda loss: list(BackwardStepper(loss)),
        "step(3)": step_in_threes,
    }
    for label, run in runs.items():
        for (name, want), (_, have) in zip(expected, grads_after(run)):
            assert have.dtype == want.dtype == np.float32
            assert np.array_equal(have, want), f"{label}: {name}"
    assert steppers[0].finished and steppers[0].pending == [] and steppers[0].step() is None


def test_last_step_writes_the_last_leaves():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    stepper = BackwardStepper((x * x).sum())
    stepper.step(2)  # the Mul node is the last: its leaf gets .grad without a further step
    assert stepper.finished
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0])


def test_first_grad_output_is_one_for_a_scalar_loss():
    loss, _, _ = named_graph(np.random.default_rng(2))
    first = BackwardStepper(loss).step()
    assert first.op_name == "Sum" and first.shape == () and first.grad_output.shape == ()
    assert first.grad_output == 1.0


def test_a_step_describes_its_node():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    line = inspect.currentframe().f_lineno + 1
    y = x.exp()
    step = BackwardStepper(y.sum()).step(2)
    assert step.op_name == "Exp" and step.index == 1 and step.shape == (2, 3)
    assert step.location == (__file__, line)
    assert step.parents == (x,) and step.output is y
    np.testing.assert_allclose(step.grad_inputs[0], np.exp(1.0) * np.ones((2, 3)))


@pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
def test_grad_inputs_equal_finite_differences(case):
    arrays = case.inputs(seed=5)
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    output = case.fn(*tensors)
    weights = np.random.default_rng(6).standard_normal(output.shape)
    step = BackwardStepper(output, grad=weights).run_until(op=case.op)
    np.testing.assert_array_equal(step.grad_output, weights)
    numeric = numerical_gradients(case.fn, arrays, weights)
    for tensor, expected in zip(tensors, numeric):
        index = next(i for i, parent in enumerate(step.parents) if parent is tensor)
        assert step.grad_inputs[index].shape == tensor.shape
        assert relative_error(step.grad_inputs[index], expected) < 1e-6, f"{case.name}, input {index}"
    assert step.check().ok


def test_check_finds_the_wrong_node_only():
    x = Tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    loss = (WrongSquare.apply(x.tanh()) * 3.0).sum()
    results = {step.op_name: step.check() for step in BackwardStepper(loss)}
    assert not results["WrongSquare"].ok
    (wrong,) = results["WrongSquare"].inputs
    assert wrong.index == 0 and wrong.mismatches == 3 and wrong.nondifferentiable == 0
    assert wrong.max_abs_error == pytest.approx(3.0 * np.abs(np.tanh([0.5, -1.5, 2.0])).max())
    assert all(result.ok for name, result in results.items() if name != "WrongSquare")
    assert str(results["WrongSquare"]).startswith("#2 WrongSquare: input 0:")
    assert str(results["WrongSquare"]).endswith("FAIL") and str(results["Tanh"]).endswith("pass")


def test_check_of_float32_node_runs_in_float64():
    x = Tensor(np.random.default_rng(7).standard_normal((3, 5)).astype(np.float32), requires_grad=True)
    step = BackwardStepper(x.T.softmax(axis=0).log().sum()).run_until(op="Softmax")  # a transposed input
    result = step.check()
    assert result.ok and [check.index for check in result.inputs] == [0] and result.inputs[0].max_abs_error < 1e-8


class SlightlyWrongSquare(WrongSquare):
    """x² with 2x + 1e-4 as derivative: inside gradcheck's tolerances, outside the debugger's stricter ones."""

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (2 * x + 1e-4)


def test_check_keeps_the_debuggers_tolerances_and_its_real_upstream_gradient():
    x = Tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    weights = np.array([1.0, -2.0, 0.5])
    step = BackwardStepper((SlightlyWrongSquare.apply(x) * weights).sum()).run_until(op="SlightlyWrongSquare")
    np.testing.assert_array_equal(step.grad_output, weights)
    strict = step.check()  # atol 1e-7, rtol 1e-5: |error| = 1e-4 |w| fails
    assert not strict.ok and strict.inputs[0].mismatches == 3
    assert strict.inputs[0].max_abs_error == pytest.approx(1e-4 * np.abs(weights).max(), rel=1e-4)
    expected = 2 * x.data * weights  # d/dx Σ w x², by hand
    worst = strict.inputs[0].worst_index
    assert strict.inputs[0].numerical == pytest.approx(expected[worst], rel=1e-8)
    assert step.check(atol=1e-5, rtol=1e-3).ok  # gradcheck's defaults let it through


def test_check_reports_a_kink_as_non_differentiable_not_as_a_failure():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    result = BackwardStepper(x.relu().sum()).run_until(op="Relu").check()
    assert result.ok and result.inputs[0].nondifferentiable == 1
    assert result.inputs[0].nondifferentiable_at == [(1,)]
    assert "1 non-differentiable" in str(result)


def test_local_jacobian_of_softmax_is_the_hand_derived_formula():
    z = Tensor(np.random.default_rng(8).standard_normal((3, 4)), requires_grad=True)
    a = z.softmax(axis=-1)
    step = BackwardStepper((a * np.arange(12.0).reshape(3, 4)).sum()).run_until(op="Softmax")
    jacobian = step.local_jacobian()
    assert jacobian.shape == (12, 12)
    by_row = F.softmax_jacobian(a.data)
    for i in range(3):
        for j in range(3):
            block = jacobian[4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
            np.testing.assert_allclose(block, by_row[i] if i == j else np.zeros((4, 4)), atol=1e-15)


def test_local_jacobian_of_a_two_input_node_matches_finite_differences():
    rng = np.random.default_rng(9)
    a = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    step = BackwardStepper((a @ b).sum()).run_until(op="MatMul")
    jacobian_a, jacobian_b = step.local_jacobian()
    np.testing.assert_allclose(jacobian_a, numerical_jacobian(lambda t: t @ b.detach(), a.data), atol=1e-8)
    np.testing.assert_allclose(jacobian_b, numerical_jacobian(lambda t: a.detach() @ t, b.data), atol=1e-8)


def test_local_jacobian_refuses_big_nodes_and_skips_constants():
    big = Tensor(np.ones((65, 64)), requires_grad=True)
    with pytest.raises(ValueError, match="output of 4160 entries and inputs of 4160; the limit is 4096"):
        BackwardStepper(big.tanh().sum()).run_until(op="Tanh").local_jacobian()
    with pytest.raises(ValueError, match="output of 1 entries and inputs of 4160"):
        BackwardStepper(big.mean()).step().local_jacobian()
    mean = BackwardStepper(big[:64].mean()).step().local_jacobian()  # an input of 4096 entries: allowed
    np.testing.assert_array_equal(mean, np.full((1, 4096), 1 / 4096))
    logits = Tensor(np.random.default_rng(10).standard_normal((2, 3)), requires_grad=True)
    step = BackwardStepper(F.softmax_cross_entropy(logits, np.array([2, 0]))).step()
    jacobian, labels = step.local_jacobian()
    assert labels is None
    expected = (F.softmax(logits).data - np.eye(3)[[2, 0]]) / 2  # d mean CE / dz = (a - y) / N
    np.testing.assert_allclose(jacobian.reshape(2, 3), expected)


def test_run_until_predicate_and_errors():
    loss, _, _ = named_graph(np.random.default_rng(11))
    stepper = BackwardStepper(loss)
    step = stepper.run_until(lambda s: s.shape == (3, 4) and s.op_name == "Add")
    assert step.op_name == "Add" and step.output.name == "shifted"
    with pytest.raises(ValueError, match="pending ops"):
        stepper.run_until(op="Sofmax")
    with pytest.raises(TypeError, match="exactly one"):
        stepper.run_until()
    with pytest.raises(ValueError, match="positive integer"):
        stepper.step(0)
    assert stepper.run_until(lambda s: False) is None and stepper.finished


def test_stepper_refuses_a_tensor_without_a_graph():
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        BackwardStepper(Tensor(np.ones(3)).sum())
    with pytest.raises(RuntimeError, match="needs grad="):
        BackwardStepper(Tensor(np.ones(3), requires_grad=True) * 2)
    loss = (Tensor(np.ones(3), requires_grad=True) * 2).sum()
    loss.backward()
    stepper = BackwardStepper(loss)
    with pytest.raises(RuntimeError, match="released graph"):
        stepper.step()
    assert stepper.finished and stepper.step() is None


# ---- anomaly detection ----

def test_detect_anomaly_names_log_of_a_negative_number_and_its_line():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    shifted = x * 1.0
    with detect_anomaly(), pytest.raises(AnomalyError) as caught:
        line = inspect.currentframe().f_lineno + 1
        shifted.log()
    message = str(caught.value)
    assert "Log" in message and f"{os.path.relpath(__file__)}:{line}" in message
    assert watching.detect_anomaly is False


def test_detect_anomaly_names_zero_over_zero():
    zero = Tensor(np.zeros(2, dtype=np.float32), requires_grad=True)
    with detect_anomaly(), pytest.raises(AnomalyError) as caught:
        line = inspect.currentframe().f_lineno + 1
        zero / zero
    assert str(caught.value).startswith("Div ") and f"{os.path.relpath(__file__)}:{line}" in str(caught.value)


def test_detect_anomaly_names_the_node_and_input_whose_gradient_went_bad():
    x = Tensor(np.array([0.0, 4.0]), requires_grad=True)
    with detect_anomaly():
        line = inspect.currentframe().f_lineno + 1
        root = x**0.5  # finite forward (0 and 2), infinite derivative at 0
        loss = (root * 3.0).sum()
        with pytest.raises(AnomalyError) as caught:
            loss.backward()
    message = str(caught.value)
    assert "Pow.backward" in message and "input 0" in message and f"{os.path.relpath(__file__)}:{line}" in message


def test_detect_anomaly_sees_the_gradient_that_flows_on_after_its_cast():
    """A float32 input times a float64 1e300: the float64 gradient 1e300 is finite, in float32 it is inf."""
    x = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    with detect_anomaly(), pytest.raises(AnomalyError, match="Mul.backward sent a NaN or Inf gradient to input 0"):
        (x * Tensor(np.array([1e300, 1e300]))).sum().backward()
    assert x.grad is None


def test_detect_anomaly_blames_the_origin_not_the_nodes_passing_nan_on():
    with detect_anomaly():
        x = Tensor(np.array([np.nan, 1.0]), requires_grad=True)  # NaN from the data, not from an op
        passed_on = ((x * 2.0).exp() + 1.0).sum()
        assert np.isnan(passed_on.item())
        y = Tensor(np.array([-1.0, 1.0]), requires_grad=True)
        with pytest.raises(AnomalyError, match="Log"):
            ((y + 0.0).log() * 2.0).sum()


# ---- hooks ----

def test_register_hook_sees_and_replaces_a_gradient_until_removed():
    def run(hook=None):
        x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
        y = x * 3.0
        handle = y.register_hook(hook) if hook else None
        (y * y).sum().backward()
        return x, y, handle

    seen = []
    x, y, handle = run(lambda grad: seen.append(grad.data.copy()))
    np.testing.assert_allclose(seen[0], 2 * y.data)  # d(Σ y²)/dy = 2y
    np.testing.assert_allclose(x.grad.data, 3 * 2 * y.data)

    x, y, _ = run(lambda grad: grad * 0.5)
    np.testing.assert_allclose(x.grad.data, 3 * y.data)

    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    calls = []
    handle = x.register_hook(lambda grad: calls.append(1) or grad * 10.0)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [20.0, 40.0])
    handle.remove()
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0])
    assert len(calls) == 1
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        Tensor(np.ones(2)).register_hook(print)


def test_hooks_run_while_stepping():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x.exp()
    y.register_hook(lambda grad: grad * 0.0)
    stepper = BackwardStepper((y * 2.0).sum())
    stepper.step(2)
    step = stepper.current
    assert step.op_name == "Mul" and np.all(step.grad_inputs[0] == 2.0)
    assert stepper.step().op_name == "Exp" and np.all(stepper.current.grad_output == 0.0)


# ---- TINYGRAD_SM_DEBUG ----

def test_debug_variable_prints_one_line_per_op_forward_and_backward():
    script = (
        "import numpy as np\n"
        "from tinygrad_sm import Tensor\n"
        "x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)\n"
        "(x.exp() * 2.0).sum().backward()\n"
    )
    environment = dict(os.environ, TINYGRAD_SM_DEBUG="1")
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    forward = [line.split()[1] for line in lines if line.startswith("forward")]
    backward = [line.split()[1] for line in lines if line.startswith("backward")]
    assert forward == ["Exp", "Mul", "Sum"] and backward == ["Sum", "Mul", "Exp"]
    exp_line = next(line for line in lines if line.startswith("forward") and "Exp" in line)
    assert "(2, 3) float32 -> (2, 3) float32" in exp_line and exp_line.endswith("us")
    mixed = script.replace("* 2.0", "* np.full(3, 2.0)")  # float32 * float64: Mul's backward line shows the cast
    lines = subprocess.run([sys.executable, "-c", mixed], env=environment, capture_output=True, text=True,
                           timeout=60).stderr.splitlines()
    mul_line = next(line for line in lines if line.startswith("backward") and "Mul" in line)
    assert "(2, 3) float64 -> (2, 3) float32" in mul_line
    quiet = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k != "TINYGRAD_SM_DEBUG"})
    assert quiet.stderr == ""


# ---- the picture ----

def test_graph_gets_current_pending_and_finished_gradients(monkeypatch):
    from tinygrad_sm import viz

    calls = []
    monkeypatch.setattr(viz, "draw_graph", lambda output, **options: calls.append((output, options)))
    loss, tensors, (x, w, b) = named_graph(np.random.default_rng(12))
    stepper = BackwardStepper(loss)
    stepper.step(3)
    stepper.graph()
    output, options = calls[0]
    assert output is loss and options["highlight"] == (stepper.current.node,)
    assert list(options["faded"]) == stepper.pending and len(stepper.pending) == len(tensors) - 3
    for step in stepper.steps:
        np.testing.assert_array_equal(options["grads"][id(step.output)], step.grad_output)
    assert id(x) not in options["grads"]  # no finished node has sent x a gradient yet


def test_graph_renders_and_shows_inline():
    graphviz = pytest.importorskip("graphviz")
    loss, tensors, _ = named_graph(np.random.default_rng(13))
    stepper = BackwardStepper(loss)
    stepper.step(2)
    picture = stepper.graph()
    assert isinstance(picture, graphviz.Digraph)
    assert "Softmax" in picture.source and "Tanh" in picture.source
    bundle = stepper._repr_mimebundle_()
    assert "image/svg+xml" in bundle and "<svg" in bundle["image/svg+xml"]


def test_a_chain_deeper_than_the_recursion_limit():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(3 * sys.getrecursionlimit()):
        y = y * 1.0
    steps = BackwardStepper(y.sum()).finish()
    assert len(steps) == 3 * sys.getrecursionlimit() + 1 and [s.index for s in steps] == list(range(len(steps)))
    np.testing.assert_array_equal(x.grad.data, [1.0, 1.0])


def test_ctrl_c_inside_backward_says_it_cannot_go_on():
    import io

    from tinygrad_sm.shell import DebuggerShell

    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    middle = x.tanh()
    loss = (middle * 2).sum()

    def interrupt(grad):  # as Ctrl-C does when it lands while the engine runs a node
        raise KeyboardInterrupt

    middle.register_hook(interrupt)
    output = io.StringIO()
    shell = DebuggerShell(BackwardStepper(loss), stdin=io.StringIO("continue\nstep\ncontinue\nquit\n"), stdout=output)
    shell.use_rawinput = False
    shell.cmdloop()
    said = output.getvalue()
    stopped = "backward was stopped after 2 of 3 nodes and cannot go on; `quit` and start again"
    assert f"--KeyboardInterrupt-- {stopped}" in said and said.count(stopped) == 3  # and for `step`, `continue`
    assert x.grad is None


def test_stepping_a_second_backward_matches_autograd_and_finite_differences():
    rng = np.random.default_rng(0)
    inputs = Tensor(rng.standard_normal((4, 3)))
    start = rng.standard_normal(3)

    def first_gradient(weight):
        loss = ((inputs @ weight).tanh() ** 2).sum()
        return autograd.grad(loss, [weight], create_graph=True)[0]

    def squared_norm(values):
        with_grad = Tensor(values, requires_grad=True)
        return float((first_gradient(with_grad).data ** 2).sum())

    weight = Tensor(start.copy(), requires_grad=True)
    stepper = BackwardStepper((first_gradient(weight) ** 2).sum())
    assert len(list(stepper)) > 0
    other = Tensor(start.copy(), requires_grad=True)
    (expected,) = autograd.grad((first_gradient(other) ** 2).sum(), [other])
    assert np.array_equal(weight.grad.data, expected.data)
    eps = 1e-6
    numerical = [
        (squared_norm(start + eps * unit) - squared_norm(start - eps * unit)) / (2 * eps) for unit in np.eye(3)
    ]
    np.testing.assert_allclose(weight.grad.data, numerical, rtol=1e-6, atol=1e-8)
