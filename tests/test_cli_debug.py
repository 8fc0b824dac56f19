"""`tinygrad-sm debug`: the prompt driven through --commands, piped standard input and a real pseudo-terminal;
the transcript's gradients against the hand-derived softmax Jacobian."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pexpect
import pytest

from tinygrad_sm import functional as F
from tinygrad_sm.cli import main
from tinygrad_sm.debug import format_array

TARGET = textwrap.dedent(
    """
    import numpy as np

    from tinygrad_sm import Function

    WEIGHTS = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    LOGITS = np.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])


    def weighted_softmax():
        return (lambda z: (z.softmax(axis=-1) * WEIGHTS).sum()), [LOGITS]


    class WrongSquare(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * x


    def wrong_square():
        return (lambda x: WrongSquare.apply(x).sum()), [np.array([1.0, -2.0])]


    def not_a_factory_result():
        return 42


    def failing_function():
        return (lambda x: x.sum()), [np.ones(2), np.ones(3)]  # one parameter, two inputs
    """
)
WEIGHTS = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
LOGITS = np.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])
ENVIRONMENT = dict(os.environ, TERM="dumb", COLUMNS="120")


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "cases.py"
    path.write_text(TARGET)
    return str(path)


def expected_gradient_of_logits():
    """d/dz Σ W ⊙ softmax(z) = J(a)ᵀ W per row, J(a) = diag(a) - a aᵀ (hand-derived, symmetric)."""
    a = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    return np.einsum("nij,nj->ni", F.softmax_jacobian(a), WEIGHTS)


def assert_backward_transcript(text):
    """Op names in backward order (Sum, Mul, Softmax) and the gradient each sent on, at the printed precision."""
    positions = [text.index(f"#{i} {name}") for i, name in enumerate(("Sum", "Mul", "Softmax"))]
    assert positions == sorted(positions)
    assert format_array(np.ones((2, 3))) in text  # Sum sends 1 to every element
    assert format_array(WEIGHTS) in text  # Mul sends W to the softmax output
    assert format_array(expected_gradient_of_logits()) in text  # Softmax sends Jᵀ W to the logits


def run_cli(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_commands_option_steps_through_backward(target, capsys):
    status, out, err = run_cli(["debug", f"{target}:weighted_softmax", "--commands", "step; step; step; where"], capsys)
    assert status == 0 and err == ""
    assert_backward_transcript(out)
    assert "backward finished: 3 nodes run; .grad set on 1 leaves" in out
    assert "shape (2, 3) float64" in out and "(tgsm) step" in out


def test_print_grad_list_break_continue(target, capsys):
    commands = "list; print 2; grad 0; break softmax; continue; print; grad Mul; list; step; quit; step"
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", commands], capsys)
    assert status == 0
    assert "#0 Sum  output shape ()" in out and "#2 Softmax  output shape (2, 3)" in out
    softmax = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    assert format_array(softmax) in out  # print 2 and print at the breakpoint: the softmax values
    assert "breakpoint set on Softmax" in out and "breakpoint at Softmax:" in out
    assert "#1 Mul  output shape (2, 3)  grad_output max |value| 1.0000" in out
    assert "no nodes left: backward has finished" in out
    assert "backward has finished; nothing left to step" in out
    assert out.rstrip().endswith("(tgsm) quit")  # the step after quit never ran


def test_jacobian_and_check_of_the_softmax_node(target, capsys):
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", "step 3; jacobian; check"], capsys)
    assert status == 0
    a = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    full = np.zeros((6, 6))
    full[:3, :3], full[3:, 3:] = F.softmax_jacobian(a)
    assert "d output / d input 0: shape (6, 6) float64" in out and format_array(full) in out
    assert "check #2 Softmax: input 0: max abs err " in out and "0/6 mismatches  pass" in out


def test_a_failed_check_exits_1(target, capsys):
    status, out, _ = run_cli(["debug", f"{target}:wrong_square", "--commands", "step; step; check"], capsys)
    (line,) = [line for line in out.splitlines() if line.startswith("check #1 WrongSquare: input 0: max abs err ")]
    assert status == 1 and "2/2 mismatches" in line and line.endswith("FAIL")


def test_unknown_command_or_node_prints_one_line_and_goes_on(target, capsys):
    commands = "frobnicate; print 7; grad Sofmax; grad 1; step two; break Conv; jacobian; step"
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", commands], capsys)
    lines = out.splitlines()
    reply = {line: lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith("(tgsm) ")}
    assert reply["(tgsm) frobnicate"].startswith("unknown command 'frobnicate'; commands: step [n]")
    assert reply["(tgsm) print 7"] == "print: no node #7; this graph has nodes #0 to #2"
    assert reply["(tgsm) grad Sofmax"].startswith("grad: no node 'Sofmax'")
    assert reply["(tgsm) grad 1"].endswith("#1 Mul has not run yet: `step` or `continue` to reach it")
    assert reply["(tgsm) step two"].startswith("step takes a count of nodes")
    assert reply["(tgsm) break Conv"].startswith("no op 'Conv' in this graph; its ops: Mul, Softmax, Sum")
    assert reply["(tgsm) jacobian"].startswith("jacobian: no current node yet")
    assert reply["(tgsm) step"].startswith("#0 Sum") and status == 2  # a script with mistakes is a usage error


def test_graph_command_writes_the_picture(target, tmp_path, capsys):
    picture = tmp_path / "backward.dot"
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", f"step; graph {picture}"], capsys)
    assert status == 0 and f"wrote {picture}" in out
    source = picture.read_text()
    assert source.startswith("digraph") and "Softmax" in source and "Sum" in source


def test_builtin_model(capsys):
    status, out, _ = run_cli(["debug", "softmax", "--batch-size", "4", "--commands", "step; list; continue"], capsys)
    assert status == 0
    assert "#0 SoftmaxCrossEntropy  output shape ()" in out
    assert "#1 Linear  output shape (4, 10)" in out and "in SoftmaxRegression" in out
    assert ".grad of weight: shape (10, 64) float32" in out and ".grad of bias: shape (10,) float32" in out


@pytest.mark.parametrize(
    "spec, message",
    [
        ("resnet", "unknown model 'resnet'"),
        ("missing.py:case", "does not exist"),
        ("{target}:nothing", "has no name 'nothing'"),
        ("{target}:not_a_factory_result", "must return (fn, inputs)"),
        ("{target}:failing_function", "raised TypeError"),
    ],
)
def test_usage_mistakes_are_one_line_exit_2(spec, message, target, capsys):
    status, out, err = run_cli(["debug", spec.format(target=target), "--commands", "step"], capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("tinygrad-sm debug: error:") and message in err


def test_commands_piped_on_standard_input(target):
    done = subprocess.run(
        [sys.executable, "-m", "tinygrad_sm", "debug", f"{target}:weighted_softmax"],
        input="step\n\nstep; step\nwhere\nnonsense\n",  # blank lines are skipped, ";" separates; EOF ends it
        capture_output=True, text=True, timeout=60, env=ENVIRONMENT,
    )
    assert done.returncode == 2 and done.stderr == ""  # the script had a mistake: `nonsense`
    assert_backward_transcript(done.stdout)
    assert "unknown command 'nonsense'" in done.stdout and "(step 3 of 3)" in done.stdout


def test_prompt_through_a_pseudo_terminal(target):
    child = pexpect.spawn(
        sys.executable, ["-m", "tinygrad_sm", "debug", f"{target}:weighted_softmax"],
        env=ENVIRONMENT, encoding="utf-8", timeout=30, dimensions=(50, 120),
    )
    transcript = []
    child.logfile_read = _Collector(transcript)
    child.expect_exact("(tgsm) ")
    for command, reply in [
        ("help", "break OP: stop `continue`"),
        ("step", "#0 Sum"),
        ("blah", "unknown command 'blah'"),
        ("step 2", "#2 Softmax"),
        ("where", "step 3 of 3"),
    ]:
        child.sendline(command)
        child.expect_exact(reply)
        child.expect_exact("(tgsm) ")
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert_backward_transcript("".join(transcript).replace("\r\n", "\n"))


class _Collector:
    """A file-like sink for pexpect's log: keeps everything the child printed."""

    def __init__(self, parts):
        self.parts = parts

    def write(self, text):
        self.parts.append(text)

    def flush(self):
        pass


@pytest.mark.parametrize("commands", ["print Nope", "grad 7", "help nope"])
def test_a_script_naming_a_node_or_command_that_does_not_exist_exits_2(target, capsys, commands):
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", commands], capsys)
    assert status == 2 and ("no node" in out or "no command 'nope'" in out)


def test_help_on_one_command_and_the_node_count_in_the_header(target, capsys):
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", "help check; grad 0"], capsys)
    assert status == 0  # asking for a gradient that is not there yet is not a mistake in the script
    assert "check [NODE]: the node's backward against finite differences" in out
    assert "3 nodes, starting gradient 1" in out
