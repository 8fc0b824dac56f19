"""The step-through page: its size, the time to write it and the time to its first paint in headless Chromium, for
the 64-128-10 MLP on a batch of 32 digits and for a graph of about 2,000 nodes (bench_viz's 4 deep MLPs).
Targets: under 2 MB for the MLP; writing and first paint under 2 s each.

Writing is `BackwardStepper(loss).to_html(path)`: backward, the per-node check (`check_nodes`), graphviz's layout
and the JSON. First paint is Chromium's first-contentful-paint of the file:// page; `ready` is when the page's
script has shown step 0 (the end of the script's first run, DOMContentLoaded, in ms from navigation start).
"""

import os
import statistics
import tempfile
import time

import numpy as np
from bench_viz import deep_loss

from tinygrad_sm import Tensor
from tinygrad_sm import functional as F
from tinygrad_sm.data import load_digits
from tinygrad_sm.debug import BackwardStepper
from tinygrad_sm.train import build_model
from tinygrad_sm.walk import topo_order

CHROMIUM = "/usr/bin/chromium"
REPEATS = 3


def mlp_loss():
    model = build_model("mlp", rng=np.random.default_rng(0))
    for path, parameter in model.named_parameters():
        parameter.name = path
    images, _, labels, _ = load_digits()
    return F.softmax_cross_entropy(model(Tensor(images[:32], name="images")), Tensor(labels[:32], name="labels"))


def write_seconds(make_loss, path):
    """The median time of `BackwardStepper(loss).to_html(path)` over REPEATS fresh graphs."""
    spent = []
    for _ in range(REPEATS):
        stepper = BackwardStepper(make_loss())
        started = time.perf_counter()
        stepper.to_html(path)
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def paint_milliseconds(browser, path):
    """The median (first-contentful-paint, DOMContentLoaded) of the page in a new tab, in ms from navigation start."""
    paints, readies = [], []
    for _ in range(REPEATS):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto("file://" + path)
        paint = []
        while not paint:  # polled from here: the page's Content-Security-Policy forbids wait_for_function's eval
            paint = page.evaluate("performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)")
        paints.append(paint[0])
        readies.append(page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
        page.close()
    return statistics.median(paints), statistics.median(readies)


def main():
    cases = (("64-128-10 MLP, batch 32", mlp_loss), ("2,000-node graph", lambda: deep_loss(125)))
    browser = playwright = None
    if os.path.exists(CHROMIUM):
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--disable-background-networking"])
    print(f"{'graph':<26}{'tensors':>8}{'steps':>7}{'page KB':>10}{'write ms':>10}{'first paint ms':>16}"
          f"{'ready ms':>10}")
    with tempfile.TemporaryDirectory() as directory:
        for name, make_loss in cases:
            path = os.path.join(directory, "page.html")
            loss = make_loss()
            tensors, steps = len(topo_order(loss, requiring_grad=False)), len(BackwardStepper(loss).nodes)
            seconds = write_seconds(make_loss, path)
            size = os.path.getsize(path) / 1024
            if browser is not None:
                paint, ready = paint_milliseconds(browser, path)
                timings = f"{paint:16.0f}{ready:10.0f}"
            else:
                timings = f"{'no chromium':>16}{'':>10}"
            print(f"{name:<26}{tensors:8d}{steps:7d}{size:10.0f}{seconds * 1e3:10.0f}{timings}")
    if browser is not None:
        browser.close()
        playwright.stop()
    print("targets: the MLP's page under 2 MB; writing and first paint under 2 s each")


if __name__ == "__main__":
    main()
