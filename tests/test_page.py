"""The step-through page without a browser: its JSON against the stepper and backward() itself, no network
references, a wrong backward marked, and the CLI's --html."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from tinygrad_sm import Function, Tensor, nn
from tinygrad_sm import functional as F
from tinygrad_sm.debug import BackwardStepper
from tinygrad_sm.page import write_page
from tinygrad_sm.walk import backward_order


class WrongSquare(Function):
    """x² with a wrong derivative (x instead of 2x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * x


def mlp_loss(seed=0):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    images = Tensor(rng.standard_normal((4, 64)).astype(np.float32), name="images")
    labels = Tensor(np.array([1, 3, 5, 7]), name="labels")
    return F.softmax_cross_entropy(model(images), labels)


def page_of(output, path):
    write_page(output, path)
    text = path.read_text()
    match = re.search(r'<script type="application/json" id="tgsm-steps">(.*?)</script>', text, re.S)
    return text, json.loads(match.group(1))


def number(value):
    return float(value)  # "NaN" and "Infinity" read back as floats too


def test_ops_in_backward_order_and_numbers_equal_the_steppers(tmp_path):
    loss = mlp_loss()
    expected_ops = [node.op_name for node in backward_order(loss)]
    reference = BackwardStepper(loss)
    text, data = page_of(reference, tmp_path / "page.html")
    assert [step["op"] for step in data["steps"]] == expected_ops
    assert [step["index"] for step in data["steps"]] == list(range(len(expected_ops)))
    for shown, step in zip(data["steps"], reference.steps):
        grad = np.asarray(step.grad_output, dtype=np.float64)
        assert shown["grad_output"]["shape"] == list(grad.shape)
        for key, value in (("min", grad.min()), ("mean", grad.mean()), ("max", grad.max())):
            assert number(shown["grad_output"][key]) == pytest.approx(value, rel=1e-12, abs=1e-15)
        for summary, sent in zip(shown["grad_inputs"], step.grad_inputs):
            assert (summary is None) == (sent is None)
            if sent is not None:
                assert summary["shape"] == list(sent.shape)
                assert summary["dtype"] == str(sent.dtype)
                assert number(summary["max"]) == pytest.approx(float(np.max(sent)), rel=1e-12, abs=1e-15)
                if sent.ndim == 2 and max(sent.shape) <= 64:
                    np.testing.assert_allclose(np.array(summary["values"], dtype=np.float64), sent, rtol=1e-12)
        assert shown["check"]["ok"]


def test_every_step_has_its_svg_node(tmp_path):
    text, data = page_of(mlp_loss(), tmp_path / "page.html")
    tagged = dict(re.findall(r'data-tgsm-node="(t\d+)" data-tgsm-step="(\d+)"', text))
    assert {name: int(step) for name, step in tagged.items()} == {s["node"]: s["index"] for s in data["steps"]}
    for element in ('id="tgsm-prev"', 'id="tgsm-next"', 'id="tgsm-op"', "<svg"):
        assert element in text


def test_no_network_references(tmp_path):
    text, _ = page_of(mlp_loss(), tmp_path / "page.html")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "@import" not in text and "url(" not in text


def test_a_broken_op_is_marked_wrong_and_nonfinite_is_counted(tmp_path):
    x = Tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    loss = (WrongSquare.apply(x.tanh()) * 3.0).sum()
    _, data = page_of(loss, tmp_path / "page.html")
    verdicts = {step["op"]: step["check"]["ok"] for step in data["steps"]}
    assert verdicts["WrongSquare"] is False
    assert all(ok for op, ok in verdicts.items() if op != "WrongSquare")

    y = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with np.errstate(all="ignore"):
        _, data = page_of(y.log().sum(), tmp_path / "nan.html")
    log = next(step for step in data["steps"] if step["op"] == "Log")
    assert log["grad_inputs"][0]["nonfinite"] == 1
    assert log["grad_inputs"][0]["max"] == "Infinity"


def test_to_html_runs_backward_to_the_end(tmp_path):
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    stepper = BackwardStepper((x * x).sum())
    stepper.to_html(tmp_path / "page.html")
    assert stepper.finished
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0])
    assert 'id="tgsm-steps"' in stepper._repr_html_().replace("&quot;", '"')


def test_cli_html_writes_the_page_and_a_missing_directory_is_exit_2(tmp_path):
    command = [sys.executable, "-m", "tinygrad_sm", "debug", "mlp", "--html"]
    done = subprocess.run(command + [str(tmp_path / "page.html")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert 'id="tgsm-steps"' in (tmp_path / "page.html").read_text()
    missing = subprocess.run(command + [str(tmp_path / "no" / "page.html")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1 and "does not exist" in missing.stderr
    assert not (tmp_path / "no").exists()
