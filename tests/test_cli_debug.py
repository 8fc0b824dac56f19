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


    def tanh_chain():
        def fn(x):
            for _ in range(100):
                x = x.tanh()
            return x.sum()
        return fn, [np.array([0.5, -0.25])]


    def shortcut():
        def fn(x):
            y = x.tanh()
            return (y.exp().exp() + y).sum()
        return fn, [np.array([0.5, -0.25])]


    def one_node():
        return (lambda x: x.sum()), [np.ones(2)]
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
    assert "backward finished: 3 nodes run; .grad set on 1 leaf" in out
    assert "shape (2, 3) float64" in out and "(tgsm) step" in out


def test_print_grad_list_break_continue(target, capsys):
    commands = "list; print 2; grad 0; break softmax; continue; print; grad Mul; list; step; quit; step"
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", commands], capsys)
    assert status == 0
    assert "#0 Sum  output shape ()" in out and "#2 Softmax  output shape (2, 3)" in out
    softmax = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    assert format_array(softmax) in out  # print 2 and print at the breakpoint: the softmax values
    assert "breakpoint 1 at op Softmax" in out and "breakpoint 1 at op Softmax:" in out
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
    assert reply["(tgsm) step two"].startswith("step: step takes a count of nodes of at least 1")
    assert reply["(tgsm) break Conv"] == "break: no op 'Conv' in this graph; its ops: Mul, Softmax, Sum"
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
        ("help", "break [OP|NODE] (b): stop `continue`"),
        ("step", "#0 Sum"),
        ("blah", "unknown command 'blah'"),
        ("step 2", "#2 Softmax"),
        ("where", "step 3 of 3"),
    ]:
        child.sendline(command)
        child.expect_exact(reply)
        child.expect_exact("(tgsm) ")
    child.send("ste")  # Ctrl-C drops the line being typed and the session goes on, as in pdb
    child.expect_exact("ste")  # the prompt has read it (keys pressed faster than by hand can overtake readline)
    child.sendintr()
    child.expect_exact("--KeyboardInterrupt--")
    child.expect_exact("(tgsm) ")
    child.sendline("w")
    child.expect_exact("(step 3 of 3)")
    child.expect_exact("(tgsm) ")
    child.sendline("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    text = "".join(transcript).replace("\r\n", "\n")
    assert_backward_transcript(text)
    assert "unknown command" not in text.split("--KeyboardInterrupt--")[1]


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


def transcript(out):
    """The replies of a script, without the header and the echoed commands."""
    return [line for line in out.splitlines()[1:] if not line.startswith("(tgsm) ")]


def test_pdbs_short_forms_do_what_the_long_ones_do(target, capsys):
    spec = f"{target}:weighted_softmax"
    long = "break Softmax; step; next; print; where; up; down; list; clear 1; continue; help step; quit"
    short = "b Softmax; s; n; p; w; u; d; l; cl 1; c; h s; q"
    status_long, out_long, _ = run_cli(["debug", spec, "--commands", long], capsys)
    status_short, out_short, _ = run_cli(["debug", spec, "--commands", short], capsys)
    assert status_long == status_short == 0
    assert transcript(out_short) == transcript(out_long)
    assert "cleared breakpoint 1 at op Softmax" in out_short and "backward finished" in out_short
    assert "step [n] (s, n, next):" in out_short  # help names the short forms
    for spelled, full in [("bt", "where"), ("cont", "continue")]:
        assert transcript(run_cli(["debug", spec, "--commands", spelled], capsys)[1]) == transcript(
            run_cli(["debug", spec, "--commands", full], capsys)[1])


def test_break_at_a_step_index_and_clear_by_number_op_or_node(target, capsys):
    spec = f"{target}:tanh_chain"  # backward order: #0 Sum, then #1 to #100 Tanh, the last applied first
    commands = "break Tanh; break 50; break #50; break; clear 1; break; continue; where"
    status, out, _ = run_cli(["debug", spec, "--commands", commands], capsys)
    lines = out.splitlines()
    assert status == 0
    assert "breakpoint 1 at op Tanh" in lines and "breakpoint 2 at node #50 Tanh" in lines
    assert "breakpoint 2 is already at node #50 Tanh" in lines
    assert "breakpoints: 1 op Tanh, 2 node #50 Tanh" in lines and "breakpoints: 2 node #50 Tanh" in lines
    assert "breakpoint 2 at node #50 Tanh:" in lines  # not #1: breakpoint 1 (op Tanh) was cleared
    assert "(step 51 of 101; next: #51 Tanh)" in lines
    status, out, _ = run_cli(["debug", spec, "--commands", "step 3; break 2; break 7; clear Tanh; clear #7; clear"],
                             capsys)
    assert status == 2 and "#2 Tanh has already run; `list` shows the nodes still to run" in out
    assert "clear: no breakpoint at Tanh; `break` lists them" in out  # the only breakpoint is on node #7
    assert "cleared breakpoint 1 at node #7 Tanh" in out and "no breakpoints to clear" in out
    for mistake, says in [("clear 4", "clear: no breakpoint 4; breakpoints: none"),
                          ("break 101", "break: no node #101; this graph has nodes #0 to #100"),
                          ("clear Relu", "clear: no op 'Relu' in this graph; its ops: Sum, Tanh")]:
        status, out, _ = run_cli(["debug", spec, "--commands", mistake], capsys)
        assert status == 2 and says in out


def test_where_shows_the_shortest_chain_and_up_down_walk_it(target, capsys):
    # (exp(exp(y)) + y).sum(), y = tanh(x): Sum #0, Add #1, Exp #2, Exp #3, Tanh #4; Tanh's shortest way up is Add
    status, out, _ = run_cli(["debug", f"{target}:shortcut", "--commands", "continue; where; up; where; print; "
                              "up 5; up; down 9; down; grad"], capsys)
    lines = out.splitlines()
    start = lines.index("(tgsm) where")
    assert [line[:10] for line in lines[start + 1:start + 4]] == ["  #0 Sum  ", "  #1 Add  ", "> #4 Tanh "]
    assert lines[start + 4] == "(step 5 of 5)"
    second = lines.index("(tgsm) where", start + 1)
    assert [line[:10] for line in lines[second + 1:second + 4]] == ["  #0 Sum  ", "> #1 Add  ", "  #4 Tanh "]
    y = np.tanh(np.array([0.5, -0.25]))
    assert format_array(np.exp(np.exp(y)) + y) in out  # print: the selected node's (Add's) output
    assert "(tgsm) up 5\n> #0 Sum" in out and "already at the output's node (#0)" in out
    assert "(tgsm) down 9\n> #4 Tanh" in out and "already at the current node" in out
    assert out.split("(tgsm) grad\n")[1].startswith("#4 Tanh")  # after `down`, the current node again
    assert status == 0


@pytest.mark.parametrize(
    "commands, reply",
    [("step 0", "step: step takes a count of nodes of at least 1, e.g. `step 3`; got '0'"),
     ("quit now", "quit: quit takes no arguments; got 'now'"),
     ("continue 3", "continue: continue takes no arguments; got '3'"),
     ("print 1 2", "print: print takes at most one NODE (a number from `list` or an op name); got '1 2'"),
     ("up 0", "up: up takes a count of nodes of at least 1, e.g. `up 3`; got '0'"),
     ("list 2 3", "list: list takes `all` or one node number, e.g. `list #40`; got '2 3'")],
)
def test_wrong_arguments_are_one_line_and_a_mistake(commands, reply, target, capsys):
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", f"{commands}; where"], capsys)
    lines = out.splitlines()
    assert status == 2 and lines[2] == reply and lines[3] == "(tgsm) where"  # the session went on


def test_long_listings_show_their_start_and_end_and_say_how_to_see_more(target, capsys):
    spec = f"{target}:tanh_chain"  # 101 nodes
    status, out, _ = run_cli(["debug", spec, "--commands", "list"], capsys)
    lines = transcript(out)
    assert status == 0 and len(lines) == 21
    assert [line.split()[0] for line in lines[:10] + lines[11:]] == [f"#{i}" for i in [*range(10), *range(91, 101)]]
    assert lines[10] == "... 81 nodes not shown (`list all` shows every one, `list #N` from node #N) ..."
    assert len(transcript(run_cli(["debug", spec, "--commands", "list all"], capsys)[1])) == 101
    lines = transcript(run_cli(["debug", spec, "--commands", "list #40"], capsys)[1])
    assert [line.split()[0] for line in lines[:20]] == [f"#{i}" for i in range(40, 60)]
    assert lines[20:] == ["... 41 more nodes (`list #60` goes on) ..."]
    status, out, _ = run_cli(["debug", spec, "--commands", "step 50; continue"], capsys)
    shown = [line.split()[0] for line in out.splitlines() if line.startswith("#")]
    assert shown == [f"#{i}" for i in [0, 1, 2, 47, 48, 49, *range(50, 60), *range(91, 101)]]
    assert "... 44 steps not shown (`grad NODE` shows any node that has run) ..." in out
    assert "... 31 nodes not shown (`grad NODE` shows any node that has run) ..." in out
    assert "backward finished: 101 nodes run; .grad set on 1 leaf" in out
    out = run_cli(["debug", spec, "--commands", "continue; where"], capsys)[1]
    chain = out.split("(tgsm) where\n")[1].splitlines()
    assert len(chain) == 22 and chain[10] == "... 81 nodes not shown (`up N` and `down N` walk the chain) ..."
    assert chain[-2].startswith("> #100 Tanh") and chain[-1] == "(step 101 of 101)"


@pytest.mark.parametrize(
    "commands, says",
    [("break Foo", "break: no op 'Foo' in this graph"),
     ("step; graph {tmp}/missing/g.svg", "graph: "),
     ("graph {tmp}/g.txt", "graph: cannot tell the format"),
     ("graph", "graph: graph takes one FILE")],
)
def test_a_script_with_a_mistake_exits_2_as_the_readme_says(commands, says, target, tmp_path, capsys):
    status, out, _ = run_cli(["debug", f"{target}:weighted_softmax", "--commands", commands.format(tmp=tmp_path)],
                             capsys)
    assert status == 2 and says in out and not (tmp_path / "missing").exists()


def test_the_finished_line_says_node_and_leaf_in_the_singular(target, capsys):
    out = run_cli(["debug", f"{target}:one_node", "--commands", "step"], capsys)[1]
    assert "backward finished: 1 node run; .grad set on 1 leaf" in out
    out = run_cli(["debug", "softmax", "--batch-size", "2", "--commands", "continue"], capsys)[1]
    assert "backward finished: 2 nodes run; .grad set on 2 leaves" in out
