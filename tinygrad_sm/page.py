"""One self-contained HTML page that walks backward on the graph: `write_page(stepper_or_output, path)`.

The page needs no network: the graphviz SVG, the CSS, the script and every step's numbers are inline. The steps
are JSON in `<script type="application/json" id="tgsm-steps">`; `#tgsm-prev` / `#tgsm-next` (and the Left / Right
keys) move between them, `#tgsm-op` names the current op, and each graph node's `<g>` carries `data-tgsm-node`
(viz's `t<number>`) and, for a node backward runs, `data-tgsm-step` (its index in backward order).
"""

import html
import json
import re

import graphviz
import numpy as np

from tinygrad_sm.debug import BackwardStepper
from tinygrad_sm.files import check_writable, write_atomically
from tinygrad_sm.gradcheck import check_nodes
from tinygrad_sm.tensor import Tensor
from tinygrad_sm.viz import INSTALL_DOT, DotNotFoundError, draw_graph
from tinygrad_sm.walk import topo_order

HEATMAP_LIMIT = 64  # arrays up to 64 x 64 (2-D, or 1-D up to 64) carry their values for a heat map
SVG_NODE = re.compile(r'<g id="(node\d+)" class="(node[^"]*)">\s*<title>(t\d+)</title>')


def write_page(stepper_or_output, path):
    """Run backward to the end (a BackwardStepper, or a Tensor to start one from) and write the page to `path`
    atomically. Returns the path written."""
    check_writable(path)
    text = render_page(stepper_or_output)
    return write_atomically(path, lambda file: file.write(text.encode()))


def render_page(stepper_or_output):
    """The page's HTML text; a Tensor gets a fresh BackwardStepper, a stepper is run to the end."""
    if isinstance(stepper_or_output, Tensor):
        stepper = BackwardStepper(stepper_or_output)
    elif isinstance(stepper_or_output, BackwardStepper):
        stepper = stepper_or_output
    else:
        raise TypeError(f"write_page: expected a BackwardStepper or a Tensor, got {type(stepper_or_output).__name__}")
    stepper.finish()
    data = page_data(stepper)
    svg = graph_svg(stepper, data["steps"])
    steps_json = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"backward of {data['output_shape']} — {len(data['steps'])} steps")
    return PAGE.format(title=title, css=CSS, svg=svg, steps=steps_json, script=SCRIPT)


def page_data(stepper):
    """What the page's script shows: one dict per step in backward order, and the output's shape."""
    tensors = topo_order(stepper.output, requiring_grad=False)
    names = {id(tensor): f"t{position}" for position, tensor in enumerate(tensors)}
    verdicts = check_nodes(stepper.output).nodes
    steps = []
    for step in stepper.steps:
        verdict = verdicts[step.index]
        steps.append({
            "index": step.index,
            "op": step.op_name,
            "node": names[id(step.output)],
            "where": step.node.where,
            "attrs": {key: repr(value) for key, value in (step.node.attrs or {}).items()},
            "grad_output": summarize(step.grad_output),
            "grad_inputs": [
                None if grad is None else dict(summarize(grad), to=_parent_label(stepper, parent))
                for parent, grad in zip(step.parents, step.grad_inputs)
            ],
            "check": {
                "ok": verdict.ok,
                "max_abs_error": _number(verdict.max_abs_error),
                "max_rel_error": _number(verdict.max_rel_error),
                "error": verdict.error,
            },
        })
    return {"output_shape": list(stepper.output.shape), "steps": steps}


def summarize(array):
    """shape, dtype, min / mean / max, the count of NaN and Inf, and for small 1-D or 2-D arrays the values."""
    array = np.asarray(array)
    summary = {"shape": list(array.shape), "dtype": str(array.dtype), "nonfinite": 0}
    if array.size == 0:
        return dict(summary, min=None, mean=None, max=None)
    values = array.astype(np.float64)
    with np.errstate(all="ignore"):
        summary.update(min=_number(values.min()), mean=_number(values.mean()), max=_number(values.max()))
    summary["nonfinite"] = int(values.size - np.isfinite(values).sum())
    rows = values.reshape(1, -1) if values.ndim == 1 else values
    if rows.ndim == 2 and rows.shape[0] <= HEATMAP_LIMIT and rows.shape[1] <= HEATMAP_LIMIT:
        summary["values"] = [[_number(value) for value in row] for row in rows]
    return summary


def graph_svg(stepper, steps):
    """The graph drawn by viz (values and gradients), each node's <g> tagged with its name and step."""
    grads = {id(step.output): step.grad_output for step in stepper.steps}
    graph = draw_graph(stepper.output, grads=grads)
    try:
        svg = graph.pipe(format="svg").decode()
    except graphviz.ExecutableNotFound:
        raise DotNotFoundError(f"cannot draw the page's graph: graphviz's `dot` program was not found; "
                               f"{INSTALL_DOT}") from None
    step_of = {step["node"]: step["index"] for step in steps}

    def tag(match):
        node_id, classes, name = match.groups()
        step = f' data-tgsm-step="{step_of[name]}"' if name in step_of else ""
        return f'<g id="{node_id}" class="{classes}" data-tgsm-node="{name}"{step}>\n<title>{name}</title>'

    return SVG_NODE.sub(tag, svg[svg.index("<svg"):])


def _parent_label(stepper, parent):
    if parent.grad_fn is not None:
        return f"#{stepper.index_of(parent.grad_fn)} {parent.grad_fn.op_name}"
    kind = "leaf" if parent.requires_grad else "constant"
    return f"{kind} {parent.name}" if parent.name else kind


def _number(value):
    """A float for JSON; NaN and the infinities as the strings JavaScript's Number() reads back."""
    value = float(value)
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{css}</style></head>
<body>
<header><button id="tgsm-prev" type="button">&larr; Prev</button>
<button id="tgsm-next" type="button">Next &rarr;</button>
<span id="tgsm-position"></span> <strong id="tgsm-op"></strong> <span id="tgsm-verdict"></span></header>
<main><section id="tgsm-graph">{svg}</section>
<section id="tgsm-detail"><div id="tgsm-where"></div><div id="tgsm-attrs"></div>
<div id="tgsm-grads"></div><h3>Steps, in backward order</h3><ol id="tgsm-list" start="0"></ol></section></main>
<script type="application/json" id="tgsm-steps">{steps}</script>
<script>{script}</script>
</body></html>
"""

CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #0f172a; }
header { position: sticky; top: 0; background: #f8fafc; padding: 8px 12px; border-bottom: 1px solid #cbd5e1; }
button { font-size: 14px; padding: 4px 12px; }
main { display: flex; gap: 12px; padding: 8px; align-items: flex-start; }
#tgsm-graph { flex: 3; overflow: auto; max-height: 90vh; }
#tgsm-graph svg { max-width: 100%; height: auto; }
#tgsm-detail { flex: 2; font-size: 13px; }
.tgsm-bad, .tgsm-nonfinite { color: #dc2626; font-weight: bold; }
.tgsm-good { color: #15803d; }
g.node[data-tgsm-step] { cursor: pointer; }
g.tgsm-done polygon, g.tgsm-done path { fill: #dcfce7; }
g.tgsm-current polygon, g.tgsm-current path { stroke: #db2777; stroke-width: 4px; }
g.tgsm-wrong polygon, g.tgsm-wrong path { stroke: #dc2626; stroke-width: 3px; fill: #fee2e2; }
#tgsm-list li { cursor: pointer; }
#tgsm-list li.tgsm-current { font-weight: bold; background: #fce7f3; }
#tgsm-list li.tgsm-wrong { color: #dc2626; }
.tgsm-array { margin: 6px 0; padding: 4px; border-left: 3px solid #cbd5e1; }
canvas { image-rendering: pixelated; border: 1px solid #cbd5e1; display: block; margin-top: 2px; }
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("tgsm-steps").textContent);
  var steps = data.steps, current = 0;
  var nodes = {};
  document.querySelectorAll("g.node[data-tgsm-step]").forEach(function (g) {
    nodes[g.getAttribute("data-tgsm-step")] = g;
    g.addEventListener("click", function () { show(Number(g.getAttribute("data-tgsm-step"))); });
  });
  var list = document.getElementById("tgsm-list");
  steps.forEach(function (step, i) {
    var item = document.createElement("li");
    item.textContent = step.op + (step.check.ok ? "" : "  (wrong backward)");
    if (!step.check.ok) { item.classList.add("tgsm-wrong"); if (nodes[i]) nodes[i].classList.add("tgsm-wrong"); }
    item.addEventListener("click", function () { show(i); });
    list.appendChild(item);
  });
  function num(value) {
    if (value === null) return "-";
    var x = Number(value);
    return isFinite(x) ? x.toPrecision(5) : String(x);
  }
  function span(text, bad) {
    var s = document.createElement("span");
    s.textContent = text;
    if (bad) s.className = "tgsm-nonfinite";
    return s;
  }
  function heatmap(values) {
    var rows = values.length, cols = values[0].length, scale = Math.max(1, Math.floor(192 / Math.max(rows, cols)));
    var largest = 0;
    values.forEach(function (row) {
      row.forEach(function (v) { var x = Math.abs(Number(v)); if (isFinite(x) && x > largest) largest = x; });
    });
    var canvas = document.createElement("canvas");
    canvas.width = cols * scale; canvas.height = rows * scale;
    var ctx = canvas.getContext("2d");
    values.forEach(function (row, r) {
      row.forEach(function (v, c) {
        var x = Number(v), t = largest > 0 ? Math.min(1, Math.abs(x) / largest) : 0, shade = Math.round(255 * (1 - t));
        var positive = "rgb(255," + shade + "," + shade + ")", negative = "rgb(" + shade + "," + shade + ",255)";
        ctx.fillStyle = !isFinite(x) ? "#000" : x >= 0 ? positive : negative;
        ctx.fillRect(c * scale, r * scale, scale, scale);
      });
    });
    return canvas;
  }
  function array(label, summary) {
    var box = document.createElement("div");
    box.className = "tgsm-array";
    var head = document.createElement("div");
    head.appendChild(span(label + ": shape (" + summary.shape.join(", ") + ") " + summary.dtype + "  "));
    ["min", "mean", "max"].forEach(function (key) {
      var value = summary[key];
      head.appendChild(span(key + " ", false));
      var s = span(num(value) + "  ", value !== null && !isFinite(Number(value)));
      s.className += " tgsm-" + key;
      head.appendChild(s);
    });
    if (summary.nonfinite) head.appendChild(span(summary.nonfinite + " NaN/Inf", true));
    box.appendChild(head);
    if (summary.values) box.appendChild(heatmap(summary.values));
    return box;
  }
  function show(i) {
    current = Math.max(0, Math.min(steps.length - 1, i));
    var step = steps[current];
    document.getElementById("tgsm-op").textContent = step.op;
    document.getElementById("tgsm-position").textContent = "step " + current + " of " + (steps.length - 1) + ":";
    var verdict = document.getElementById("tgsm-verdict");
    verdict.textContent = step.check.ok ? "backward checks out" :
      "wrong backward: " + (step.check.error || "worst error " + num(step.check.max_abs_error));
    verdict.className = step.check.ok ? "tgsm-good" : "tgsm-bad";
    document.getElementById("tgsm-where").textContent = "made at " + step.where + " (graph node " + step.node + ")";
    var attrs = Object.keys(step.attrs).map(function (k) { return k + "=" + step.attrs[k]; });
    document.getElementById("tgsm-attrs").textContent = attrs.length ? "attributes: " + attrs.join(", ") : "";
    var grads = document.getElementById("tgsm-grads");
    grads.replaceChildren(array("grad_output", step.grad_output));
    step.grad_inputs.forEach(function (g, k) {
      if (g === null) {
        var none = document.createElement("div");
        none.textContent = "input " + k + ": takes no gradient";
        grads.appendChild(none);
      } else grads.appendChild(array("to input " + k + " (" + g.to + ")", g));
    });
    Object.keys(nodes).forEach(function (k) {
      nodes[k].classList.toggle("tgsm-current", Number(k) === current);
      nodes[k].classList.toggle("tgsm-done", Number(k) < current);
    });
    Array.prototype.forEach.call(list.children, function (item, k) {
      item.classList.toggle("tgsm-current", k === current);
    });
  }
  document.getElementById("tgsm-prev").addEventListener("click", function () { show(current - 1); });
  document.getElementById("tgsm-next").addEventListener("click", function () { show(current + 1); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "ArrowLeft") show(current - 1);
    if (event.key === "ArrowRight") show(current + 1);
  });
  if (steps.length) show(0);
})();
"""
