"""The step-through page in headless Chromium (Debian's, driven by Playwright), the network blocked: Next through
every step shows backward()'s ops in order, moves the highlight, shows the stepper's numbers, marks a wrong
backward red and logs no console error. A screenshot goes to out/page.png."""

import os
import shutil

import numpy as np
import pytest
from test_page import WrongSquare, mlp_loss

from tinygrad_sm import Tensor
from tinygrad_sm.debug import BackwardStepper

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("no Chromium at /usr/bin/chromium: `make setup` as root installs it (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "out")


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, path):
    context = browser.new_context(offline=True)
    requests = []
    context.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()
                                         if route.request.url.startswith("file:") else route.abort()))
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
            page.click("#tgsm-next")
        assert page.text_content("#tgsm-op") == step.op_name
        highlighted.append(page.get_attribute("g.tgsm-current", "data-tgsm-step"))
        assert page.locator("g.tgsm-done").count() == index
        shown = float(page.text_content("#tgsm-grads .tgsm-array .tgsm-max"))
        assert shown == pytest.approx(float(np.max(step.grad_output)), rel=1e-4, abs=1e-12)
    assert highlighted == [str(i) for i in range(len(stepper.steps))]
    page.keyboard.press("ArrowLeft")
    assert page.text_content("#tgsm-op") == stepper.steps[-2].op_name
    os.makedirs(OUT, exist_ok=True)
    page.screenshot(path=os.path.join(OUT, "page.png"), full_page=True)
    assert errors == []
    assert all(url.startswith("file:") for url in requests)


def test_a_wrong_backward_is_red(browser, tmp_path):
    x = Tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    stepper = BackwardStepper((WrongSquare.apply(x.tanh()) * 3.0).sum())
    stepper.to_html(tmp_path / "page.html")
    page, errors, _ = open_page(browser, tmp_path / "page.html")
    wrong = [step.index for step in stepper.steps if step.op_name == "WrongSquare"]
    assert [int(g.get_attribute("data-tgsm-step")) for g in page.query_selector_all("g.tgsm-wrong")] == wrong
    page.click(f'g[data-tgsm-step="{wrong[0]}"]')
    assert page.text_content("#tgsm-op") == "WrongSquare"
    color = page.eval_on_selector("#tgsm-verdict", "element => getComputedStyle(element).color")
    assert color == "rgb(220, 38, 38)"
    assert errors == []
