"""`tinygrad-sm graph`: built-in models and file.py:name targets to svg/png/pdf/dot; one line and exit 2 on mistakes."""

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree

import pytest

from tinygrad_sm.cli import main
from tinygrad_sm.viz import MAX_LAYOUT_NODES

SVG_TEXT = "{http://www.w3.org/2000/svg}text"


def run_cli(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def svg_texts(path):
    return [element.text for element in ElementTree.parse(path).getroot().iter(SVG_TEXT)]


@pytest.fixture
def target(tmp_path):
    """A file with factories returning (fn, inputs), and some that are wrong."""
    path = tmp_path / "target.py"
    path.write_text(textwrap.dedent("""
        import numpy as np
        from tinygrad_sm import Tensor

        def softmax_loss():
            weights = np.array([0.2, -1.0, 3.0])
            return (lambda z: (z.softmax() * Tensor(weights)).sum()), [np.array([1.0, 2.0, 0.5])]

        def vector():
            return (lambda a, b: a * b + 1.0), [np.ones(3), Tensor(np.ones(3), name="scale")]

        def not_a_tensor():
            return (lambda z: 3.0), [np.ones(2)]

        def broken():
            return (lambda z: z @ z.reshape(1, 2)), [np.ones(3)]

        def chain():
            def fn(x):
                for _ in range(10_000):
                    x = x * 1.0001
                return x.sum()
            return fn, [np.ones(3)]
    """))
    return str(path)


def test_builtin_mlp_to_svg_after_backward(tmp_path, capsys):
    out = tmp_path / "mlp.svg"
    status, stdout, stderr = run_cli(["graph", "mlp", "--out", str(out)], capsys)
    assert status == 0 and stdout.strip() == str(out) and stderr == ""
    texts = svg_texts(out)
    assert "layers.0.weight" in texts and "layers.2.bias" in texts and "images" in texts and "labels" in texts
    assert "grad = 1" in texts  # the loss's own gradient: backward ran
    assert any(t and t.startswith("grad min") for t in texts)
    assert "grad not computed yet" not in texts


def test_collapse_rankdir_and_formats(tmp_path, capsys):
    png = tmp_path / "softmax.png"
    status, stdout, _ = run_cli(["graph", "softmax", "--out", str(png), "--collapse", "modules", "--rankdir", "LR"],
                                capsys)
    assert status == 0 and stdout.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = tmp_path / "logistic.txt"
    status, _, _ = run_cli(["graph", "logistic", "--out", str(dot), "--format", "dot", "--collapse", "modules",
                            "--rankdir", "LR", "--no-data", "--no-grad"], capsys)
    text = dot.read_text()
    assert status == 0 and text.startswith("digraph") and "rankdir=LR" in text
    assert "LogisticRegression" in text and "class=\"module\"" in text
    assert "min " not in text and "grad " not in text
    pdf = tmp_path / "mlp.pdf"
    assert run_cli(["graph", "--out", str(pdf)], capsys)[0] == 0 and pdf.read_bytes()[:5] == b"%PDF-"


def test_target_scalar_runs_backward_and_vector_is_drawn_as_is(target, tmp_path, capsys):
    out = tmp_path / "t.svg"
    status, stdout, _ = run_cli(["graph", f"{target}:softmax_loss", "--out", str(out)], capsys)
    texts = svg_texts(out)
    assert status == 0 and "Softmax" in texts and "x0" in texts and "grad = 1" in texts
    status, _, _ = run_cli(["graph", f"{target}:vector", "--out", str(out)], capsys)
    texts = svg_texts(out)
    assert status == 0 and {"x0", "scale", "Mul", "Add", "1"} <= set(texts)
    assert "grad not computed yet" in texts


@pytest.mark.parametrize(
    "argv, message",
    [
        (["graph", "resnet", "--out", "{tmp}/g.svg"], "unknown model 'resnet'"),
        (["graph", "--out", "{tmp}/g.txt"], "cannot tell the format"),
        (["graph", "--out", "{tmp}/g.png", "--format", "svg"], "suffix .png but the format asked for is svg"),
        (["graph", "--out", "{tmp}/missing/g.svg"], "does not exist"),
        (["graph", "{target}:nothing", "--out", "{tmp}/g.svg"], "has no name 'nothing'"),
        (["graph", "{target}:not_a_tensor", "--out", "{tmp}/g.svg"], "fn must return a Tensor"),
        (["graph", "{target}:broken", "--out", "{tmp}/g.svg"], "raised ValueError"),
        (["graph", "{tmp}/none.py:f", "--out", "{tmp}/g.svg"], "does not exist"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(argv, message, target, tmp_path, capsys):
    argv = [arg.format(tmp=tmp_path, target=target) for arg in argv]
    status, stdout, stderr = run_cli(argv, capsys)
    assert status == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("tinygrad-sm graph: error:") and message in stderr
    assert "Traceback" not in stderr


def test_argparse_mistakes_and_the_console_entry_point(tmp_path):
    missing_out = subprocess.run([sys.executable, "-m", "tinygrad_sm", "graph", "mlp"], capture_output=True, text=True)
    assert missing_out.returncode == 2 and missing_out.stderr.count("\n") == 1 and "--out" in missing_out.stderr
    bad_rankdir = subprocess.run(
        [sys.executable, "-m", "tinygrad_sm", "graph", "--out", str(tmp_path / "g.svg"), "--rankdir", "XY"],
        capture_output=True, text=True,
    )
    assert bad_rankdir.returncode == 2 and bad_rankdir.stderr.count("\n") == 1 and "rankdir" in bad_rankdir.stderr


def test_without_dot_the_dot_text_is_written_and_the_line_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    status, stdout, stderr = run_cli(["graph", "softmax", "--out", str(tmp_path / "g.svg")], capsys)
    assert status == 2 and stdout == "" and stderr.count("\n") == 1
    assert "apt-get install graphviz" in stderr and str(tmp_path / "g.dot") in stderr
    assert (tmp_path / "g.dot").read_text().startswith("digraph") and not (tmp_path / "g.svg").exists()


def test_a_batch_larger_than_the_training_set_is_a_usage_error(tmp_path, capsys):
    argv = ["graph", "logistic", "--out", str(tmp_path / "g.svg"), "--batch-size", "100000"]
    status, out, err = run_cli(argv, capsys)
    assert status == 2 and out == "" and not os.listdir(tmp_path)
    assert err == "tinygrad-sm graph: error: --batch-size 100000 is more than the 288 training rows of logistic\n"


def test_a_graph_too_big_for_dot_is_refused_in_one_line_and_its_dot_text_kept(target, tmp_path, capsys):
    out = tmp_path / "big.svg"
    status, stdout, stderr = run_cli(["graph", f"{target}:chain", "--out", str(out)], capsys)
    assert status == 2 and stdout == "" and stderr.count("\n") == 1
    assert "20,002 nodes, more than --max-nodes 10,000" in stderr  # x, 10,000 constants, 10,000 products, Sum
    assert "--collapse modules, --format dot, or --max-nodes 0" in stderr and str(tmp_path / "big.dot") in stderr
    assert (tmp_path / "big.dot").read_text().startswith("digraph") and not out.exists()
    status, _, stderr = run_cli(["graph", "mlp", "--out", str(out), "--collapse", "modules", "--max-nodes", "3"],
                                capsys)
    assert status == 2 and "6 nodes, more than --max-nodes 3" in stderr and "Try --format dot" in stderr
    help_text = subprocess.run([sys.executable, "-m", "tinygrad_sm", "graph", "--help"], capture_output=True, text=True)
    assert f"default {MAX_LAYOUT_NODES:,}" in " ".join(help_text.stdout.split())


def test_dot_crashing_is_one_line_exit_2_and_the_dot_text_kept(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "dot").write_text("#!/bin/sh\ncat > /dev/null; kill -SEGV $$\n")
    (folder / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "g.svg"
    status, stdout, stderr = run_cli(["graph", "softmax", "--out", str(out), "--max-nodes", "0"], capsys)
    assert status == 2 and stdout == "" and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert "`dot -Tsvg` was killed by SIGSEGV" in stderr and str(tmp_path / "g.dot") in stderr
    assert (tmp_path / "g.dot").read_text().startswith("digraph") and not out.exists()


def svg_tooltips(path):
    links = ElementTree.parse(path).getroot().iter("{http://www.w3.org/2000/svg}a")
    return [link.get("{http://www.w3.org/1999/xlink}title") for link in links]


def test_tooltips_say_where_user_code_made_each_op_and_built_in_models_were_made_outside(target, tmp_path, capsys,
                                                                                        monkeypatch):
    out = tmp_path / "mlp.svg"
    assert run_cli(["graph", "mlp", "--out", str(out)], capsys)[0] == 0
    tooltips = svg_tooltips(out)
    assert sorted(tooltips) == sorted(f"{op} made outside user code" for op in
                                      ("Linear", "Relu", "Linear", "SoftmaxCrossEntropy"))
    _, listing, _ = run_cli(["debug", "mlp", "--commands", "list"], capsys)
    assert "#1 Linear  output shape (8, 10)  made outside user code in layers.2: Linear" in listing  # one rule
    monkeypatch.chdir(tmp_path)
    assert run_cli(["graph", "target.py:softmax_loss", "--out", str(out)], capsys)[0] == 0
    made_at = "made at target.py:7"  # the factory's lambda
    assert sorted(svg_tooltips(out)) == sorted(f"{op} {made_at}" for op in ("Softmax", "Mul", "Sum"))


def test_backward_draws_the_gradient_graph_and_rejects_file_targets(tmp_path, capsys):
    out = tmp_path / "backward.dot"
    status, stdout, stderr = run_cli(["graph", "softmax", "--backward", "--out", str(out)], capsys)
    assert status == 0 and stdout.strip() == str(out) and stderr == ""
    source = out.read_text()
    assert "<B>Transpose</B>" in source and "<B>Sub</B>" in source and "d loss / d weight" in source
    forward = tmp_path / "forward.dot"
    run_cli(["graph", "softmax", "--out", str(forward)], capsys)
    assert "<B>Transpose</B>" not in forward.read_text()
    status, stdout, stderr = run_cli(["graph", "model.py:make", "--backward", "--out", str(out)], capsys)
    assert status == 2 and "--backward" in stderr and len(stderr.strip().splitlines()) == 1
