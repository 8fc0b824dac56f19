"""The CLI as a new user drives it: errors before the work and in the user's words, exit codes, Ctrl-C, warnings."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinygrad_sm import nn
from tinygrad_sm.cases import MODEL_CASES, OP_CASES
from tinygrad_sm.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TARGETS = """
import numpy as np
from tinygrad_sm import Tensor

def rewrap():
    return (lambda x: (Tensor(x) * 2).sum()), [np.ones(3)]

def constant_input():
    return (lambda x: (x * 2).sum()), [Tensor(np.ones(3))]

def one_constant_one_variable():
    return (lambda c, x: (c * x).sum()), [Tensor(np.full(3, 2.0)), Tensor(np.ones(3), requires_grad=True)]

def log_of_zero():
    return (lambda x: (x * 0).log().sum()), [np.ones(3)]
"""


def cli(*arguments, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, "-m", "tinygrad_sm", *map(str, arguments)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def assert_one_line_error(run, *fragments):
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def targets(tmp_path):
    path = tmp_path / "targets.py"
    path.write_text(TARGETS)
    return path


# ---- point 4: a target that rewraps its input gets a wrong gradient: exit 1 with the table ----

def test_a_rewrapping_target_fails_the_check_with_its_table_not_as_a_bad_target(targets):
    run = cli("gradcheck", f"{targets}:rewrap")
    assert run.returncode == 1, run.stderr
    assert "gradcheck FAILED" in run.stdout
    assert "analytical +0, numerical +2" in run.stdout  # the table's worst element: d/dx sum(2x) = 2, autograd 0
    assert "the per-node check could not run" in run.stdout
    assert run.stderr.startswith("tinygrad-sm gradcheck: warning: Tensor(t) of a tensor that requires grad")
    assert len(run.stderr.splitlines()) == 1  # the engine's warning, in the CLI's one line
    report = json.loads(cli("gradcheck", f"{targets}:rewrap", "--json").stdout)
    assert report["ok"] is False and report["nodes"] is None and "could not run" in report["nodes_error"]
    worst = report["gradcheck"]["inputs"][0]
    assert (worst["analytical"], worst["numerical"]) == (0, pytest.approx(2))


# ---- point 5: --localize on the built-in suite shows the per-node tables ----

def test_localize_on_the_suite_shows_every_checks_nodes(capsys):
    assert main(["gradcheck", "--fast", "--localize"]) == 0
    out = capsys.readouterr().out
    assert out != (main(["gradcheck", "--fast"]), capsys.readouterr().out)[1]
    for case in (*OP_CASES, *MODEL_CASES):
        assert f"\n{case.name}:\n#   op" in out, case.name
    assert out.count("every node's backward matches its forward") == len(OP_CASES) + len(MODEL_CASES)
    assert "\nSoftmaxCrossEntropy" not in out and "2   Linear" in out  # the MLP's table lists its layers


def test_localize_on_the_suite_json_carries_each_checks_nodes(capsys):
    assert main(["gradcheck", "--fast", "--localize", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    by_name = {check["name"]: check for check in checks}
    assert [node["op"] for node in by_name["exp"]["nodes"]["nodes"]] == ["Exp"]
    assert by_name["softmax Jacobian: formula vs autograd"]["nodes"] is None
    assert main(["gradcheck", "--fast", "--json"]) == 0
    assert all(check["nodes"] is None for check in json.loads(capsys.readouterr().out)["checks"])


# ---- point 6: a bad option blames the option; a bad target spec says what was expected ----

@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (("--eps", "0"), "argument --eps: eps must be > 0 and finite (the finite-difference step), got 0"),
        (("--eps", "-0.5"), "argument --eps: eps must be > 0 and finite (the finite-difference step), got -0.5"),
        (("--eps", "nan"), "argument --eps: eps must be > 0 and finite (the finite-difference step), got nan"),
        (("--atol", "-1"), "argument --atol: atol must be >= 0 and finite, got -1"),
        (("--rtol", "inf"), "argument --rtol: rtol must be >= 0 and finite, got inf"),
        (("--eps", "x"), "argument --eps: eps must be > 0 and finite (the finite-difference step), got x"),
    ],
)
def test_a_bad_gradcheck_option_names_the_option(arguments, fragment):
    run = cli("gradcheck", "examples/custom_op.py:cube", *arguments)
    assert_one_line_error(run, fragment)
    assert "custom_op" not in run.stderr


@pytest.mark.parametrize("target", [":", "examples/custom_op.py:", ":cube"])
def test_a_target_without_a_file_or_name_says_the_expected_form(target):
    assert_one_line_error(cli("gradcheck", target), f"target {target!r} needs a file or module before the colon",
                          "path/to/file.py:name or package.module:name")


# ---- points 7 and 8: saving and loading ----

SYSFS = "/sys/kernel"


@pytest.mark.skipif(not os.path.isdir(SYSFS), reason="needs sysfs, a directory that refuses new files even to root")
def test_train_into_a_directory_that_refuses_files_fails_before_training():
    run = cli("train", "--model", "softmax", "--save", f"{SYSFS}/m.npz")
    assert_one_line_error(run, f"cannot write '{SYSFS}/m.npz': the directory '{SYSFS}' refuses new files")
    assert run.stdout == ""  # nothing was trained
    assert ".tmp" not in run.stderr and "Errno" not in run.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_train_into_a_read_only_directory_fails_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    run = cli("train", "--model", "softmax", "--save", locked / "m.npz")
    assert_one_line_error(run, "m.npz", "refuses new files")
    assert run.stdout == "" and os.listdir(locked) == []


def test_a_write_that_fails_after_training_names_the_users_path(tmp_path, monkeypatch, capsys):
    def refuse(source, target):
        raise PermissionError(1, "Operation not permitted", source)

    monkeypatch.setattr(os, "replace", refuse)
    path = tmp_path / "m3.npz"
    assert main(["train", "--model", "softmax", "--epochs", "1", "--save", str(path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"tinygrad-sm train: error: cannot write {str(path)!r}: Operation not permitted"
    assert os.listdir(tmp_path) == []


def test_graph_onto_an_existing_directory_fails_before_drawing(tmp_path):
    (tmp_path / "picture.svg").mkdir()
    assert_one_line_error(cli("graph", "mlp", "--out", tmp_path / "picture.svg"), "picture.svg': it is a directory")


def test_load_of_a_directory_and_save_under_a_file(tmp_path):
    assert_one_line_error(cli("train", "--model", "softmax", "--load", tmp_path), "it is a directory")
    (tmp_path / "plain").write_text("")
    run = cli("train", "--model", "softmax", "--save", tmp_path / "plain" / "m.npz")
    assert_one_line_error(run, "plain' is a file, not a directory")
    assert "does not exist" not in run.stderr


def test_load_refuses_nan_weights_and_names_a_cast(tmp_path):
    model = nn.SoftmaxRegression(64, 10, rng=0)
    state = model.state_dict()
    nan = {**state, "weight": np.where(np.arange(640).reshape(10, 64) == 7, np.nan, state["weight"])}
    np.savez(tmp_path / "nan.npz", **nan)
    assert_one_line_error(cli("train", "--model", "softmax", "--epochs", "0", "--load", tmp_path / "nan.npz"),
                          "'weight' holds 1 NaN or infinite value")
    np.savez(tmp_path / "ints.npz", **{name: np.zeros(array.shape, dtype=np.int64) for name, array in state.items()})
    run = cli("train", "--model", "softmax", "--epochs", "0", "--load", tmp_path / "ints.npz")
    assert run.returncode == 0, run.stderr
    warning = [line for line in run.stderr.splitlines() if "warning" in line]
    assert warning == ["tinygrad-sm train: warning: SoftmaxRegression.load_state_dict: cast 'weight' from int64 to "
                       "float32, 'bias' from int64 to float32"]


# ---- point 9: one rule for every command's output path, checked before the work ----

@pytest.mark.parametrize("command", [("demo", "--graph"), ("graph", "mlp", "--out"), ("train", "--save")])
def test_no_command_makes_directories_and_all_check_first(tmp_path, command):
    run = cli(*command, "a/b/c.svg", cwd=tmp_path)
    assert_one_line_error(run, "cannot write 'a/b/c.svg': the directory", "does not exist")
    assert run.stdout == "" and os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", [("demo", "--graph"), ("graph", "mlp", "--out")])
def test_a_graph_suffix_is_checked_before_the_work(tmp_path, command):
    run = cli(*command, "c.xyz", cwd=tmp_path)
    assert_one_line_error(run, "cannot tell the format of 'c.xyz' from its suffix", ".svg, .png, .pdf, .dot")
    assert run.stdout == "" and os.listdir(tmp_path) == []


# ---- point 10: Ctrl-C during train ----

def test_ctrl_c_during_training_is_one_line_and_exit_130(tmp_path):
    path = tmp_path / "m.npz"
    child = subprocess.Popen(
        [sys.executable, "-m", "tinygrad_sm", "train", "--model", "mlp", "--epochs", "500", "--save", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        child.stderr.readline()  # the first epoch ended: training is under way
        time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130
    assert stderr.strip().splitlines()[-1] == "tinygrad-sm train: interrupted" and "Traceback" not in stderr
    assert os.listdir(tmp_path) == []  # no model and no temporary file


# ---- point 12: momentum ----

@pytest.mark.parametrize("momentum", ["1.5", "1", "-0.1"])
def test_momentum_outside_0_1_is_refused_before_training(momentum):
    run = cli("train", "--optimizer", "sgd", "--momentum", momentum)
    assert_one_line_error(run, f"the momentum must lie in [0, 1), got {float(momentum)}")
    assert run.stdout == ""


# ---- point 13: numpy's RuntimeWarnings in the CLI's words ----

@pytest.mark.parametrize("command", [("gradcheck",), ("graph", "--out", "g.svg"), ("debug", "--commands", "continue")])
def test_numpy_warnings_are_one_line_naming_the_op_and_the_users_line(targets, tmp_path, command):
    name, *options = command
    run = cli(name, f"{targets}:log_of_zero", *options, cwd=tmp_path)
    assert "ops.py" not in run.stderr and "RuntimeWarning" not in run.stderr and "numpy" not in run.stderr
    source_line = TARGETS.splitlines().index("    return (lambda x: (x * 0).log().sum()), [np.ones(3)]") + 1
    said = f"divide by zero encountered in log, in Log's forward (from targets.py:{source_line})"
    assert f"tinygrad-sm {name}: warning: {said}" in run.stderr.splitlines()
    assert all(text.startswith(f"tinygrad-sm {name}: ") for text in run.stderr.splitlines())


# ---- point 14: --debug before or after the command; a mistake is still exit 2 ----

@pytest.mark.parametrize("order", ["before", "after"])
def test_debug_flag_anywhere_shows_the_traceback_and_exits_2(targets, order):
    arguments = ["gradcheck", f"{targets}:constant_input"]
    run = cli(*(["--debug", *arguments] if order == "before" else [*arguments, "--debug"]))
    assert run.returncode == 2
    assert "Traceback" in run.stderr and "UsageError" in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("tinygrad-sm gradcheck: error: target")


def test_debug_flag_after_a_command_that_succeeds():
    run = cli("gradcheck", "examples/custom_op.py:cube", "--debug")
    assert run.returncode == 0 and run.stderr == ""


# ---- point 20: one rule for target inputs in debug, graph and gradcheck ----

@pytest.mark.parametrize("command", [("gradcheck",), ("graph", "--out", "g.svg"), ("debug", "--commands", "continue")])
def test_a_target_whose_inputs_need_no_gradient_is_refused_alike(targets, tmp_path, command):
    name, *options = command
    run = cli(name, f"{targets}:constant_input", *options, cwd=tmp_path)
    assert_one_line_error(run, "no input requires a gradient", "a Tensor without requires_grad is a constant")
    assert os.listdir(tmp_path) == ["targets.py"]


@pytest.mark.parametrize("command", [("gradcheck",), ("graph", "--out", "g.dot"), ("debug", "--commands", "continue")])
def test_a_tensor_without_requires_grad_stays_a_constant_in_every_command(targets, tmp_path, command):
    name, *options = command
    run = cli(name, f"{targets}:one_constant_one_variable", *options, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    if name == "gradcheck":
        report = json.loads(cli(name, f"{targets}:one_constant_one_variable", "--json").stdout)
        assert [check["index"] for check in report["gradcheck"]["inputs"]] == [1]
    if name == "graph":
        dot = (tmp_path / "g.dot").read_text()
        assert "x0" in dot and "x1" in dot


def test_demo_without_dot_says_so_before_training(tmp_path):
    """graphviz's `dot` is the one thing a plain install cannot bring: its absence is said first, with the way out."""
    env = {**os.environ, "PATH": str(tmp_path)}  # no `dot` on it
    run = subprocess.run([sys.executable, "-m", "tinygrad_sm", "demo", "--graph", "demo.svg"], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=120)
    assert_one_line_error(run, "graphviz's `dot` program, which was not found", "apt-get install graphviz",
                          "or give --graph FILE.dot")
    assert run.stdout == "" and os.listdir(tmp_path) == []
