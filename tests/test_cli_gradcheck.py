"""`tinygrad-sm gradcheck` through a subprocess: exit codes 0, 1 and 2, the JSON report, the text naming the op."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinygrad_sm import Tensor, nn, ops
from tinygrad_sm.cases import MODEL_CASES, OP_CASES
from tinygrad_sm.cli import demo_gradcheck, main
from tinygrad_sm.data import load_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "custom_op.py")


def run(*arguments, cwd=ROOT, env=None):
    return subprocess.run(
        [sys.executable, "-m", "tinygrad_sm", *arguments], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=120,
    )


def passed_suite_lines(result, mode=""):
    """The suite's output lines, once it has exited 0 with every check passed (the summary's mode starting with
    `mode`) and a passing row for every op and model case."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    expected = len(OP_CASES) + 3 + len(MODEL_CASES)
    assert lines[-1].startswith(f"{expected} checks: {expected} passed, 0 failed{mode}")
    for name in [case.name for case in OP_CASES] + [case.name for case in MODEL_CASES]:
        assert any(line.startswith(name) and line.endswith("pass") for line in lines), name
    return lines


def test_builtin_suite_passes_with_one_row_per_check():
    lines = passed_suite_lines(run("gradcheck"))
    assert sum("softmax Jacobian" in line for line in lines) == 3


def test_builtin_suite_json_in_fast_mode():
    result = run("gradcheck", "--fast", "--json", "--seed", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert len(report["checks"]) == len(OP_CASES) + 3 + len(MODEL_CASES)
    assert all(check["max_abs_error"] < 1e-6 for check in report["checks"])


def test_builtin_suite_fails_and_names_the_broken_op(monkeypatch, capsys):
    original = ops.Exp.backward
    monkeypatch.setattr(ops.Exp, "backward", staticmethod(lambda ctx, grad_output: original(ctx, grad_output) * 0.9))
    assert main(["gradcheck", "--fast"]) == 1
    lines = capsys.readouterr().out.splitlines()
    failing = [line for line in lines if "FAIL" in line]
    assert len(failing) == 1 and failing[0].startswith("exp") and "faulty op: Exp" in failing[0]
    assert " 1 failed" in lines[-1]


def test_wrong_backward_in_a_target_file_exits_1_and_names_op_input_and_values():
    text = run("gradcheck", f"{EXAMPLE}:wrong_cube")
    report = json.loads(run("gradcheck", f"{EXAMPLE}:wrong_cube", "--json").stdout)
    assert text.returncode == 1
    worst = max((check for check in report["gradcheck"]["inputs"] if not check["ok"]),
                key=lambda check: check["max_abs_error"])
    assert "WrongCube" in text.stdout
    assert f"worst mismatch: input {worst['index']}, element {tuple(worst['worst_index'])}" in text.stdout
    assert f"analytical {worst['analytical']:+.8g}, numerical {worst['numerical']:+.8g}" in text.stdout
    assert report["ok"] is False and report["nodes"]["first_failure"]["op"] == "WrongCube"
    offset = 1 / 12 if worst["index"] == 0 else 0.0  # d/dx of mean(... + x) over 12 elements
    assert worst["numerical"] - offset == pytest.approx(3 * (worst["analytical"] - offset), rel=1e-6)  # factor 3


def test_fixed_backward_exits_0_and_localize_lists_every_node():
    result = run("gradcheck", f"{EXAMPLE}:cube", "--localize")
    assert result.returncode == 0, result.stdout + result.stderr
    for op_name in ("Mean", "Add", "Cube", "Mul"):
        assert any(line.split()[1:2] == [op_name] and "pass" in line for line in result.stdout.splitlines())
    assert "every node's backward matches its forward (4 nodes)" in result.stdout


def test_fast_localize_json_carries_the_options():
    result = run("gradcheck", f"{EXAMPLE}:wrong_cube", "--fast", "--localize", "--json",
                 "--eps", "1e-5", "--atol", "1e-6", "--rtol", "1e-4", "--seed", "7")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    check = report["gradcheck"]
    assert (check["mode"], check["eps"], check["atol"], check["rtol"]) == ("fast", 1e-5, 1e-6, 1e-4)
    assert [node["op"] for node in report["nodes"]["nodes"]] == ["Mean", "Add", "WrongCube", "Mul"]
    assert [node["ok"] for node in report["nodes"]["nodes"]] == [True, True, False, True]


def test_package_module_target(tmp_path):
    (tmp_path / "my_target.py").write_text(
        "import numpy as np\n"
        "def tanh_case():\n"
        "    return (lambda x: x.tanh().sum()), [np.linspace(-1, 1, 5).astype(np.float32)]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = run("gradcheck", "my_target:tanh_case", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "checked in float64 copies" in result.stdout


BAD_FILE = """
import numpy as np
def raises():
    raise RuntimeError("no data here")
def not_a_pair():
    return 42
def fn_raises():
    return (lambda x: x.no_such_method()), [np.ones(3)]
VALUE = 3
"""


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing_file.py:cube", "does not exist"),
        ("{example}:no_such_name", "has no name 'no_such_name'"),
        ("{bad}:raises", "raised RuntimeError: no data here"),
        ("{bad}:not_a_pair", "must return (fn, inputs)"),
        ("{bad}:fn_raises", "raised AttributeError"),
        ("{bad}:VALUE", "expected a function taking no arguments"),
        ("no_colon_here", "must look like path/to/file.py:name"),
        ("no_such_package.module:name", "cannot import module"),
    ],
)
def test_bad_targets_exit_2_with_one_line(tmp_path, target, message):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_FILE)
    result = run("gradcheck", target.format(example=EXAMPLE, bad=bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_FILE)
    result = run("--debug", "gradcheck", f"{bad}:raises")
    assert result.returncode != 0 and "Traceback" in result.stderr and "no data here" in result.stderr


def test_demo_gradcheck_on_a_trained_model(capsys):
    X, _, y, _ = load_digits()
    model = nn.SoftmaxRegression(64, 10, rng=np.random.default_rng(0))
    from tinygrad_sm import functional as F
    from tinygrad_sm import optim
    from tinygrad_sm.tensor import Tensor

    optimizer = optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        optimizer.zero_grad()
        F.softmax_cross_entropy(model(Tensor(X)), y).backward()
        optimizer.step()
    assert demo_gradcheck(model, X, y) is True
    out = capsys.readouterr().out
    assert "weight" in out and "bias" in out and "every node's backward matches its forward" in out
    assert len(out.splitlines()) <= 6


@pytest.mark.parametrize("unbuffered", [False, True], ids=["block-buffered", "-u"])
def test_a_reader_that_stops_early_ends_the_command_quietly(unbuffered):
    """`tinygrad-sm gradcheck | head -1`: no traceback and no error line, the status of a SIGPIPE. The reader is
    gone before the first write (to the writer the same as a `head` that has its line), so no race decides: a
    reader closing after one line could find the whole 4 KB report already in the pipe, and the command done."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    command = [sys.executable, *(["-u"] if unbuffered else []), "-m", "tinygrad_sm", "gradcheck"]
    try:
        child = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, timeout=120)
    finally:
        os.close(write_end)
    assert child.returncode == 141 and child.stderr == b""


# ---- --second-order: gradgradcheck, the gradient's own gradient against its finite differences ----

SECOND_ORDER_FILE = f"""
import runpy

import numpy as np
from tinygrad_sm import Function
from tinygrad_sm import functional as F

DetachedCube = runpy.run_path({EXAMPLE!r})["DetachedCube"]  # right values; the gradient no longer depends on x


class SavedExp(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(np.exp(x) * 1.0)  # neither input nor output: None under create_graph
        return np.exp(x)

    @staticmethod
    def backward(ctx, grad_output):
        (e,) = ctx.saved_tensors
        return grad_output * e


def detached():
    return (lambda x: DetachedCube.apply(x).sum()), [np.array([0.5, -1.0, 2.0])]


def saved_exp():
    return (lambda x: SavedExp.apply(x).sum()), [np.array([0.5, -1.0, 2.0])]


def with_labels():
    z = np.random.default_rng(0).standard_normal((3, 4))
    return (lambda z, labels: F.softmax_cross_entropy(z, labels)), [z, np.array([0, 3, 1])]
"""


@pytest.fixture
def second_order_file(tmp_path):
    path = tmp_path / "second_order.py"
    path.write_text(SECOND_ORDER_FILE)
    return path


def test_second_order_suite_checks_every_case_and_the_logsumexp_hessian():
    result = run("gradcheck", "--second-order")
    lines = passed_suite_lines(result, " (second order (gradgradcheck)")
    assert sum("logsumexp Hessian" in line for line in lines) == 3 and "softmax Jacobian" not in result.stdout


def test_second_order_suite_json_in_fast_mode():
    result = run("gradcheck", "--second-order", "--fast", "--json", "--seed", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["second_order"] is True
    assert len(report["checks"]) == len(OP_CASES) + 3 + len(MODEL_CASES)
    assert all(check["max_abs_error"] < 1e-6 for check in report["checks"])
    assert json.loads(run("gradcheck", "--fast", "--json").stdout)["second_order"] is False


def test_second_order_suite_fails_where_only_the_second_derivative_is_wrong(monkeypatch, capsys):
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        out = out.detach() if isinstance(out, Tensor) else out
        return grad_output * (1 - out * out)

    monkeypatch.setattr(ops.Tanh, "backward", staticmethod(backward))
    assert main(["gradcheck", "--fast"]) == 0
    capsys.readouterr()
    assert main(["gradcheck", "--second-order", "--fast"]) == 1
    lines = capsys.readouterr().out.splitlines()
    failing = [line for line in lines if "FAIL" in line]
    assert len(failing) == 1 and failing[0].startswith("tanh")
    assert " 1 failed" in lines[-1]


def test_second_order_target_with_a_detached_backward_exits_1(second_order_file):
    assert run("gradcheck", f"{second_order_file}:detached").returncode == 0
    text = run("gradcheck", f"{second_order_file}:detached", "--second-order")
    assert text.returncode == 1, text.stdout + text.stderr
    assert "gradgradcheck FAILED" in text.stdout and "worst mismatch: input 0" in text.stdout
    assert "a backward is not differentiable as written" in text.stdout
    report = json.loads(run("gradcheck", f"{second_order_file}:detached", "--second-order", "--json").stdout)
    assert report["ok"] is False and report["second_order"] is True and report["gradcheck"]["order"] == 2
    wrong, upstream = report["gradcheck"]["inputs"]
    assert (wrong["index"], wrong["ok"], upstream["index"], upstream["ok"]) == (0, False, 1, True)
    x, v = np.array([0.5, -1.0, 2.0]), np.random.default_rng(0).standard_normal(())  # v: one number, from --seed
    element = wrong["worst_index"][0]
    assert wrong["analytical"] == 0.0 and wrong["numerical"] == pytest.approx(6 * x[element] * v, rel=1e-6)


def test_second_order_target_numbers_inputs_as_given_with_constants_held_fixed(second_order_file):
    result = run("gradcheck", f"{second_order_file}:with_labels", "--second-order", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads(result.stdout)["gradcheck"]["inputs"]
    assert [(check["index"], check["shape"]) for check in checks] == [(0, [3, 4]), (2, [])]  # labels 1 held, v last


def test_the_detached_cube_example_passes_at_first_order_and_fails_at_second():
    assert run("gradcheck", f"{EXAMPLE}:detached_cube").returncode == 0
    result = run("gradcheck", f"{EXAMPLE}:detached_cube", "--second-order")
    assert result.returncode == 1 and "gradgradcheck FAILED" in result.stdout, result.stdout + result.stderr


def test_second_order_examples_pass_and_localize_in_the_gradients_graph():
    assert run("gradcheck", f"{EXAMPLE}:softplus", "--second-order").returncode == 0
    result = run("gradcheck", f"{EXAMPLE}:cube", "--second-order", "--localize")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gradgradcheck passed" in result.stdout
    with open(EXAMPLE) as source:  # Cube.backward's line: its ops are nodes of the gradient's graph
        line = 1 + next(i for i, text in enumerate(source) if text.strip() == "return grad_output * 3 * x**2")
    backward_line = f"{os.path.relpath(EXAMPLE, ROOT)}:{line}"
    assert sum(line.endswith(backward_line) and "pass" in line for line in result.stdout.splitlines()) == 3
    assert "<frozen" not in result.stdout  # a built-in backward's nodes: no user line, not Python's machinery


def test_second_order_target_whose_backward_cannot_run_on_tensors_exits_2(second_order_file):
    result = run("gradcheck", f"{second_order_file}:saved_exp", "--second-order")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "gradgradcheck of" in result.stderr and "SavedExp.backward does not run on Tensors" in result.stderr
    assert run("gradcheck", f"{second_order_file}:saved_exp").returncode == 0


def test_second_order_usage_errors_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_FILE)
    for arguments, message in [((f"{bad}:fn_raises",), "raised AttributeError"), (("--eps", "0"), "eps must be > 0")]:
        result = run("gradcheck", "--second-order", *arguments)
        assert result.returncode == 2, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert message in result.stderr
