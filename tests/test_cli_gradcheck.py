"""`tinygrad-sm gradcheck` through a subprocess: exit codes 0, 1 and 2, the JSON report, the text naming the op."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinygrad_sm import nn, ops
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


def test_builtin_suite_passes_with_one_row_per_check():
    result = run("gradcheck")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    expected = len(OP_CASES) + 3 + len(MODEL_CASES)
    assert lines[-1].startswith(f"{expected} checks: {expected} passed, 0 failed")
    for name in [case.name for case in OP_CASES] + [case.name for case in MODEL_CASES]:
        assert any(line.startswith(name) and line.endswith("pass") for line in lines), name
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
