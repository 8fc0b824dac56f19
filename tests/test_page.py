"""The step-through page: its JSON against backward() and the stepper, the hand-derived softmax Jacobian and
finite differences; then the page itself in headless Chromium (Debian's, driven by Playwright, network blocked):
Next through every step, the highlight, the numbers shown, a wrong backward in red, no console error, a screenshot
in out/page.png for a person to look at."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import WrongSquare
from playwright import sync_api

from tinygrad_sm import Tensor, nn
from tinygrad_sm import functional as F
from tinygrad_sm.debug import BackwardStepper
from tinygrad_sm.page import render_page, write_page
from tinygrad_sm.walk import backward_order

CHROMIUM = "/usr/bin/chromium"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "out")


def mlp_loss(seed=0):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    for path, parameter in model.named_parameters():
        parameter.name = path
    images = Tensor(rng.standard_normal((4, 64)).astype(np.float32), name="images")
    labels = Tensor(np.array([1, 3, 5, 7]), name="labels")
    return F.softmax_cross_entropy(model(images), labels)


def wrong_loss():
    x = Tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True, name="x")
    return (WrongSquare.apply(x.tanh()) * 3.0).sum()


def steps_json(text):
    match = re.search(r'<script type="application/json" id="tgsm-steps">(.*?)</script>', text, re.S)
    return json.loads(match.group(1))


def page_of(stepper, path):
    write_page(stepper, path)
    text = path.read_text()
    return text, steps_json(text)


def test_ops_in_backward_order_and_numbers_equal_the_steppers(tmp_path):
    loss = mlp_loss()
    expected_ops = [node.op_name for node in backward_order(loss)]
    stepper = BackwardStepper(loss)
    _, data = page_of(stepper, tmp_path / "page.html")
    assert [step["op"] for step in data["steps"]] == expected_ops
    assert [step["index"] for step in data["steps"]] == list(range(len(expected_ops)))
    assert data["pending"] == []
    for shown, step in zip(data["steps"], stepper.steps):
        grad = np.asarray(step.grad_output, dtype=np.float64)
        assert shown["grad_output"]["shape"] == list(grad.shape)
        assert [shown["grad_output"][key] for key in ("min", "mean", "max")] == [grad.min(), grad.mean(), grad.max()]
        for summary, sent in zip(shown["grad_inputs"], step.grad_inputs):
            assert summary.get("none", False) == (sent is None)
            if sent is not None:
                assert summary["shape"] == list(sent.shape) and summary["dtype"] == str(sent.dtype)
                assert summary["max"] == float(np.max(sent))
                if max(sent.shape) <= 64:
                    assert np.array_equal(np.array(summary["values"], dtype=sent.dtype).reshape(sent.shape), sent)
        assert shown["check"]["ok"]


def test_every_step_has_its_svg_node_and_edges_name_their_ends(tmp_path):
    text, data = page_of(BackwardStepper(mlp_loss()), tmp_path / "page.html")
    tagged = dict(re.findall(r'data-tgsm-node="(t\d+)" data-tgsm-step="(\d+)"', text))
    assert {name: int(step) for name, step in tagged.items()} == {s["node"]: s["index"] for s in data["steps"]}
    heads = set(re.findall(r'data-tgsm-head="(t\d+)"', text))
    assert heads == {s["node"] for s in data["steps"]}  # every op node has an input edge, leaves none
    for element in ('id="tgsm-prev"', 'id="tgsm-next"', 'id="tgsm-op"', "<svg", "cluster"):
        assert element in text


def test_no_network_references(tmp_path):
    text, _ = page_of(BackwardStepper(mlp_loss()), tmp_path / "page.html")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "@import" not in text and "url(" not in text
    assert "default-src 'none'" in text


def test_the_softmax_jacobian_is_diag_a_minus_a_a_transposed(tmp_path):
    logits = Tensor(np.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]]), requires_grad=True)
    weights = Tensor(np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]))
    for loss in ((logits.softmax(axis=-1) * weights).sum(), F.softmax_cross_entropy(logits, np.array([2, 0]))):
        _, data = page_of(BackwardStepper(loss), tmp_path / "page.html")
        (step,) = [s for s in data["steps"] if "jacobian" in s]
        z = logits.data[0]
        a = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose(step["jacobian"]["a"], a, rtol=1e-12)
        np.testing.assert_allclose(step["jacobian"]["values"], np.diag(a) - np.outer(a, a), rtol=1e-12, atol=1e-15)


def test_a_wrong_backward_names_its_worst_element_and_nonfinite_is_counted(tmp_path):
    _, data = page_of(BackwardStepper(wrong_loss()), tmp_path / "page.html")
    verdicts = {step["op"]: step["check"] for step in data["steps"]}
    assert all(check["ok"] for op, check in verdicts.items() if op != "WrongSquare")
    wrong = verdicts["WrongSquare"]
    assert not wrong["ok"] and wrong["full"]
    (checked,) = wrong["inputs"]
    assert checked["worst_index"] is not None and checked["mismatches"] == checked["compared"] == 3
    assert checked["analytical"] / checked["numerical"] == pytest.approx(0.5, rel=1e-6)  # x where 2x is right

    y = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with np.errstate(all="ignore"):
        _, data = page_of(BackwardStepper(y.log().sum()), tmp_path / "nan.html")
    log = next(step for step in data["steps"] if step["op"] == "Log")
    assert log["grad_inputs"][0]["inf"] == 1 and log["grad_inputs"][0]["max"] == 1.0
    assert "Infinity" in log["grad_inputs"][0]["values"][0]


def test_to_html_runs_backward_to_the_end_and_the_inline_view_changes_nothing(tmp_path):
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    stepper = BackwardStepper((x * x).sum())
    stepper.step()
    inline = stepper._repr_html_()
    assert inline.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in inline
    data = steps_json(render_page(stepper))
    assert [s["op"] for s in data["steps"]] == ["Sum"] and [p["op"] for p in data["pending"]] == ["Mul"]
    assert data["start"] == 0 and len(stepper.steps) == 1 and x.grad is None
    stepper.to_html(tmp_path / "page.html")
    assert stepper.finished
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0])
    with pytest.raises(TypeError, match="BackwardStepper"):
        write_page(x, tmp_path / "x.html")


def test_cli_html_writes_the_page_and_a_missing_directory_is_exit_2(tmp_path):
    command = [sys.executable, "-m", "tinygrad_sm", "debug"]
    done = subprocess.run(command + ["examples/custom_op.py:wrong_cube", "--html", str(tmp_path / "page.html")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    data = steps_json((tmp_path / "page.html").read_text())
    assert [s["op"] for s in data["steps"] if not s["check"]["ok"]] == ["WrongCube"]
    missing = subprocess.run(command + ["mlp", "--html", str(tmp_path / "no" / "page.html")],
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1 and "does not exist" in missing.stderr
    assert not (tmp_path / "no").exists()
    both = subprocess.run(command + ["--html", str(tmp_path / "p.html"), "--commands", "step"],
                          capture_output=True, text=True)
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1


# ---- in a real browser ----


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: `make setup` as root installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--disable-background-networking", "--disable-component-update"]
        )
        yield browser
        browser.close()


def open_page(browser, path):
    """The page at file://path with every request but the file itself refused; the console's errors collected."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    requests = []

    def route(route):
        requests.append(route.request.url)
        route.continue_() if route.request.url == path.as_uri() else route.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    return page, errors, requests


def test_next_through_every_step(browser, tmp_path):
    stepper = BackwardStepper(mlp_loss())
    stepper.to_html(tmp_path / "page.html")
    page, errors, requests = open_page(browser, tmp_path / "page.html")
    highlighted = []
    for index, step in enumerate(stepper.steps):
        if index:
            assert page.is_enabled("#tgsm-next")
            page.click("#tgsm-next")
        assert page.text_content("#tgsm-op") == step.op_name
        assert page.locator("g.node.tgsm-current").count() == 1
        highlighted.append(page.get_attribute("g.node.tgsm-current", "data-tgsm-node"))
        assert page.locator("g.node.tgsm-done").count() == index
        for key, value in (("min", step.grad_output.min()), ("max", step.grad_output.max())):
            shown = page.locator(f"#tgsm-grads .tgsm-array .tgsm-{key}").first
            assert float(shown.get_attribute("data-value")) == float(value)
            assert float(shown.text_content()) == pytest.approx(float(value), rel=1e-4)
        assert page.locator("#tgsm-grads canvas").count() >= 1
    assert page.is_disabled("#tgsm-next")
    assert len(set(highlighted)) == len(stepper.steps)
    page.keyboard.press("ArrowLeft")
    assert page.text_content("#tgsm-op") == stepper.steps[-2].op_name
    page.keyboard.press("ArrowRight")
    page.click('g.node[data-tgsm-step="0"]')
    assert page.text_content("#tgsm-op") == "SoftmaxCrossEntropy"
    assert page.locator("#tgsm-jacobian canvas").count() == 1
    os.makedirs(OUT, exist_ok=True)
    page.screenshot(path=os.path.join(OUT, "page.png"))
    assert errors == []
    assert requests == [(tmp_path / "page.html").as_uri()]


def test_a_wrong_backward_is_red(browser, tmp_path):
    stepper = BackwardStepper(wrong_loss())
    stepper.to_html(tmp_path / "page.html")
    page, errors, _ = open_page(browser, tmp_path / "page.html")
    wrong = [step.index for step in stepper.steps if step.op_name == "WrongSquare"]
    assert [int(g.get_attribute("data-tgsm-step")) for g in page.query_selector_all("g.node.tgsm-wrong")] == wrong
    red = "rgb(220, 38, 38)"
    stroke = page.eval_on_selector("g.node.tgsm-wrong path, g.node.tgsm-wrong polygon",
                                   "shape => getComputedStyle(shape).stroke")
    assert stroke == red
    page.click(f'g.node[data-tgsm-step="{wrong[0]}"]')
    assert page.text_content("#tgsm-op") == "WrongSquare"
    assert page.eval_on_selector("#tgsm-verdict", "badge => getComputedStyle(badge).color") == red
    assert "worst element" in page.text_content("#tgsm-check")
    page.screenshot(path=os.path.join(OUT, "page_wrong.png"))
    assert errors == []


def test_nan_and_inf_are_red(browser, tmp_path):
    y = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with np.errstate(all="ignore"):
        BackwardStepper(y.log().sum()).to_html(tmp_path / "page.html")
    page, errors, _ = open_page(browser, tmp_path / "page.html")
    page.click("#tgsm-next")
    assert page.text_content("#tgsm-op") == "Log"
    warning = page.locator("#tgsm-grads .tgsm-nonfinite")
    assert warning.text_content().strip() == "1 Inf"
    assert warning.evaluate("element => getComputedStyle(element).color") == "rgb(220, 38, 38)"
    assert errors == []


def test_the_inline_view_of_a_stepper_half_way(browser, tmp_path):
    stepper = BackwardStepper(mlp_loss())
    stepper.step(2)
    (tmp_path / "inline.html").write_text(render_page(stepper))
    page, errors, _ = open_page(browser, tmp_path / "inline.html")
    assert page.text_content("#tgsm-op") == stepper.current.op_name
    assert page.is_disabled("#tgsm-next")
    assert page.locator("g.node.tgsm-pending").count() == len(stepper.pending) == 2
    assert page.locator("g.node.tgsm-done").count() == 1
    assert page.locator("#tgsm-list li.tgsm-pending").count() == len(stepper.pending)
    assert len(stepper.steps) == 2 and errors == []
