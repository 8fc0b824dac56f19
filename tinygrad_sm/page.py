"""One self-contained HTML page that walks backward on the graph: `write_page(stepper, path)`.

The page needs no network (its Content-Security-Policy forbids any): the graphviz SVG, the CSS, the script and every
step's numbers are inline. The steps are JSON in `<script type="application/json" id="tgsm-steps">`; `#tgsm-prev` /
`#tgsm-next` (and the Left / Right keys) move between them, `#tgsm-op` names the current op, and each graph node's
`<g>` carries `data-tgsm-node` (viz's `t<number>`) and, for a node backward runs, `data-tgsm-step` (its index in
backward order). Each node's verdict is `check_nodes`'s (fast: random projections uᵀJv against finite differences);
a node that fails is checked again element by element (`check_node`), which names its worst element.
"""

import html
import json
import re

import graphviz
import numpy as np

from tinygrad_sm import functional as F
from tinygrad_sm.debug import BackwardStepper
from tinygrad_sm.files import write_atomically
from tinygrad_sm.grad_mode import no_grad
from tinygrad_sm.gradcheck import check_node, check_nodes
from tinygrad_sm.tensor import Tensor
from tinygrad_sm.viz import INSTALL_DOT, DotNotFoundError, draw_graph
from tinygrad_sm.viz_labels import _attr_text, _index_text
from tinygrad_sm.walk import ModuleIndex, topo_order

HEATMAP_LIMIT = 64  # arrays up to 64 x 64 (2-D, or 1-D up to 64) carry their values for a heat map
SOFTMAX_OPS = ("Softmax", "SoftmaxCrossEntropy")
SVG_NODE = re.compile(r'<g id="(node\d+)" class="(node[^"]*)">\s*<title>(t\d+)</title>')
SVG_EDGE = re.compile(r'<g id="(edge\d+)" class="edge">\s*<title>(t\d+)&#45;&gt;(t\d+)</title>')


def write_page(stepper, path):
    """Run `stepper` (a BackwardStepper) to the end and write its page to `path` atomically; returns the path."""
    _check_stepper(stepper)
    stepper.finish()
    text = render_page(stepper, start=0)
    return write_atomically(path, lambda file: file.write(text.encode()))


def render_page(stepper, start=None):
    """The page's HTML text for the steps `stepper` has run so far (the rest listed as pending), opening at step
    `start` (default: the stepper's current step)."""
    _check_stepper(stepper)
    data = page_data(stepper)
    data["start"] = max(0, len(stepper.steps) - 1) if start is None else start
    svg = graph_svg(stepper, data["steps"])
    steps_json = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    title = f"backward of {stepper.output.grad_fn.op_name}, output shape {_shape_text(stepper.output.shape)}"
    return PAGE.format(title=html.escape(title), css=CSS, svg=svg, steps=steps_json, script=SCRIPT)


def _check_stepper(stepper):
    if not isinstance(stepper, BackwardStepper):
        raise TypeError(f"the page is drawn from a BackwardStepper, got {type(stepper).__name__}")


def page_data(stepper):
    """What the page's script shows: one dict per step run, in backward order, and the nodes still pending."""
    tensors = topo_order(stepper.output, requiring_grad=False)
    names = {id(tensor): f"t{position}" for position, tensor in enumerate(tensors)}
    parameters = ModuleIndex(tensors).parameters
    verdicts = check_nodes(stepper.output, fast=True).nodes
    steps = []
    for step in stepper.steps:
        verdict = verdicts[step.index]
        if not verdict.ok:
            verdict = check_node(step.node, None, position=step.index)
        record = {
            "index": step.index,
            "op": step.op_name,
            "node": names[id(step.output)],
            "where": step.node.where if step.location is not None else None,
            "attrs": {key: _index_text(value) if key == "index" else _attr_text(value)
                      for key, value in step.node.attrs.items()},
            "output": summarize(step.output.data, values=False),
            "grad_output": summarize(step.grad_output),
            "grad_inputs": [
                dict(summarize(grad) if grad is not None else {"none": True, "shape": list(parent.shape)},
                     to=_parent_label(stepper, parameters, parent))
                for parent, grad in zip(step.parents, step.grad_inputs)
            ],
            "check": _verdict(verdict),
        }
        if step.op_name in SOFTMAX_OPS:
            record["jacobian"] = _softmax_jacobian(step)
        steps.append(record)
    pending = [{"index": stepper.index_of(node), "op": node.op_name, "node": names[id(stepper.outputs[id(node)])]}
               for node in stepper.pending]
    return {"output_shape": list(stepper.output.shape), "steps": steps, "pending": pending}


def summarize(array, values=True):
    """shape, dtype, min / mean / max of the finite values, the NaN and Inf counts, and (`values`, for 1-D or 2-D
    arrays up to 64 x 64) every value, NaN and the infinities as the strings JavaScript's Number() reads."""
    array = np.asarray(array)
    summary = {"shape": list(array.shape), "dtype": str(array.dtype)}
    numbers = array.astype(np.float64)
    finite = numbers[np.isfinite(numbers)]
    summary.update(
        min=float(finite.min()) if finite.size else None,
        mean=float(finite.mean()) if finite.size else None,
        max=float(finite.max()) if finite.size else None,
        nan=int(np.isnan(numbers).sum()),
        inf=int(np.isinf(numbers).sum()),
    )
    rows = numbers.reshape(1, -1) if numbers.ndim <= 1 else numbers
    if values and rows.ndim == 2 and rows.shape[0] <= HEATMAP_LIMIT and rows.shape[1] <= HEATMAP_LIMIT:
        summary["values"] = [[_number(value) for value in row] for row in rows.tolist()]
    return summary


def _verdict(check):
    """A NodeCheck for the page: ok, the error it raised, and per checked input its worst element."""
    return {
        "ok": check.ok,
        "full": check.inputs != [] and all(item.worst_index is not None for item in check.inputs),
        "error": check.error,
        "max_abs_error": _number(check.max_abs_error),
        "inputs": [
            {
                "index": item.index, "ok": item.ok, "max_abs_error": _number(item.max_abs_error),
                "worst_index": None if item.worst_index is None else list(item.worst_index),
                "analytical": _number(item.analytical), "numerical": _number(item.numerical),
                "mismatches": item.mismatches, "compared": item.compared,
            }
            for item in check.inputs
        ],
    }


def _softmax_jacobian(step):
    """diag(a) - a aᵀ for the first row's softmax a (a Softmax node's output; the softmax of a fused node's logits),
    or None when a row has more than 64 entries."""
    if step.op_name == "Softmax":
        probabilities = np.moveaxis(step.output.data, step.node.attrs["axis"], -1)
    else:
        with no_grad():
            probabilities = F.softmax(Tensor(step.parents[0].data), axis=1).data
    first_row = np.asarray(probabilities, dtype=np.float64).reshape(-1, probabilities.shape[-1])[0]
    if first_row.size > HEATMAP_LIMIT:
        return None
    return {"a": [_number(value) for value in first_row], **summarize(F.softmax_jacobian(first_row))}


def graph_svg(stepper, steps):
    """The graph drawn by viz (module clusters, values, the gradients found so far), each node's <g> tagged with its
    name and step, each edge's with the tensors it joins."""
    grads = {id(step.output): step.grad_output for step in stepper.steps}
    graph = draw_graph(stepper.output, grads=grads)
    try:
        svg = graph.pipe(format="svg").decode()
    except graphviz.ExecutableNotFound:
        raise DotNotFoundError(f"cannot draw the page's graph: graphviz's `dot` program was not found; "
                               f"{INSTALL_DOT}") from None
    step_of = {step["node"]: step["index"] for step in steps}

    def tag_node(match):
        node_id, classes, name = match.groups()
        step = f' data-tgsm-step="{step_of[name]}"' if name in step_of else ""
        return f'<g id="{node_id}" class="{classes}" data-tgsm-node="{name}"{step}>\n<title>{name}</title>'

    def tag_edge(match):
        edge_id, tail, head = match.groups()
        return (f'<g id="{edge_id}" class="edge" data-tgsm-tail="{tail}" data-tgsm-head="{head}">\n'
                f"<title>{tail}&#45;&gt;{head}</title>")

    return SVG_EDGE.sub(tag_edge, SVG_NODE.sub(tag_node, svg[svg.index("<svg"):]))


def _parent_label(stepper, parameters, parent):
    """`#3 Linear` for a node's output, `parameter layers.0.weight`, `leaf x`, `constant labels`."""
    if parent.grad_fn is not None:
        return f"#{stepper.index_of(parent.grad_fn)} {parent.grad_fn.op_name}"
    if id(parent) in parameters:
        return f"parameter {parameters[id(parent)][0]}"
    kind = "leaf" if parent.requires_grad else "constant"
    return f"{kind} {parent.name}" if parent.name else kind


def _shape_text(shape):
    return "scalar" if shape == () else str(tuple(shape))


def _number(value):
    """A float for JSON; NaN and the infinities as the strings JavaScript's Number() reads back."""
    value = float(value)
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body>
<header>
  <div class="tgsm-brand">tinygrad_sm <span>backward, step by step</span></div>
  <div class="tgsm-controls">
    <button id="tgsm-prev" type="button" title="previous step (Left arrow)">&#8592; Prev</button>
    <button id="tgsm-next" type="button" title="next step (Right arrow)">Next &#8594;</button>
    <span id="tgsm-position"></span>
    <strong id="tgsm-op"></strong>
    <span id="tgsm-verdict"></span>
  </div>
  <div class="tgsm-summary" id="tgsm-summary">{title}</div>
</header>
<main>
  <section id="tgsm-graph-pane">
    <div class="tgsm-graph-tools"><span><button id="tgsm-zoom-out" type="button" title="zoom out">&minus;</button>
      <span id="tgsm-zoom"></span><button id="tgsm-zoom-in" type="button" title="zoom in">+</button>
      <button id="tgsm-fit" type="button">fit</button></span>
      <span class="tgsm-key"><i class="tgsm-swatch tgsm-sw-current"></i>current
      <i class="tgsm-swatch tgsm-sw-done"></i>done <i class="tgsm-swatch tgsm-sw-pending"></i>pending
      <i class="tgsm-swatch tgsm-sw-wrong"></i>wrong backward &middot; click a node to jump to its step</span></div>
    <div id="tgsm-graph">{svg}</div>
  </section>
  <aside id="tgsm-detail">
    <div class="tgsm-card" id="tgsm-node-card"><div id="tgsm-node-title"></div><div id="tgsm-attrs"></div>
      <div id="tgsm-where"></div><div id="tgsm-output"></div></div>
    <div class="tgsm-card" id="tgsm-check"></div>
    <div id="tgsm-grads"></div>
    <div id="tgsm-jacobian"></div>
    <div class="tgsm-card"><h3>Steps, in backward() order</h3><ol id="tgsm-list" start="0"></ol></div>
  </aside>
</main>
<script type="application/json" id="tgsm-steps">{steps}</script>
<script>{script}</script>
</body></html>
"""

CSS = """
* { box-sizing: border-box; }
html, body { height: 100%; }
body { font: 13px/1.4 Helvetica, Arial, sans-serif; margin: 0; color: #0f172a; background: #f1f5f9;
  display: flex; flex-direction: column; }
header { background: #fff; padding: 8px 14px; border-bottom: 1px solid #cbd5e1; display: flex; flex-wrap: wrap;
  align-items: center; gap: 6px 18px; }
.tgsm-brand { font-weight: bold; font-size: 15px; }
.tgsm-brand span { font-weight: normal; color: #64748b; }
.tgsm-controls { display: flex; align-items: center; gap: 8px; }
.tgsm-summary { color: #64748b; margin-left: auto; }
button { font: inherit; font-size: 14px; padding: 4px 14px; border: 1px solid #94a3b8; border-radius: 6px;
  background: #f8fafc; cursor: pointer; }
button:hover:not(:disabled) { background: #e2e8f0; }
button:disabled { color: #94a3b8; cursor: default; }
#tgsm-position { color: #64748b; min-width: 92px; text-align: right; }
#tgsm-op { font-size: 17px; color: #6d28d9; }
.tgsm-badge { padding: 2px 8px; border-radius: 10px; font-weight: bold; }
.tgsm-good { color: #15803d; }
.tgsm-badge.tgsm-good { background: #dcfce7; }
.tgsm-bad, .tgsm-nonfinite { color: #dc2626; font-weight: bold; }
.tgsm-badge.tgsm-bad { background: #fee2e2; }
main { flex: 1; display: flex; gap: 10px; padding: 10px; min-height: 0; }
#tgsm-graph-pane { flex: 1; min-width: 0; display: flex; flex-direction: column; background: #fff;
  border: 1px solid #cbd5e1; border-radius: 8px; }
.tgsm-graph-tools { padding: 5px 8px; border-bottom: 1px solid #e2e8f0; color: #64748b; display: flex; gap: 12px;
  align-items: center; }
.tgsm-graph-tools button { font-size: 12px; padding: 2px 8px; }
.tgsm-swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin: 0 3px 0 8px;
  vertical-align: -2px; border: 2px solid; }
.tgsm-sw-current { border-color: #db2777; border-width: 3px; }
.tgsm-sw-done { border-color: #16a34a; }
.tgsm-sw-pending { border-color: #cbd5e1; border-style: dashed; }
.tgsm-sw-wrong { border-color: #dc2626; background: #fee2e2; }
#tgsm-graph { flex: 1; overflow: auto; padding: 6px; }
#tgsm-graph svg { height: auto; }
#tgsm-zoom { display: inline-block; min-width: 40px; text-align: center; }
#tgsm-detail { width: min(450px, 42vw); flex: none; overflow-y: auto; }
.tgsm-card { background: #fff; border: 1px solid #cbd5e1; border-radius: 8px; padding: 8px 10px; margin-bottom: 8px; }
.tgsm-card h3 { margin: 0 0 4px; font-size: 13px; }
.tgsm-card.tgsm-wrong-card { border-color: #dc2626; background: #fef2f2; }
#tgsm-node-title { font-size: 16px; font-weight: bold; }
#tgsm-node-title small { font-weight: normal; color: #64748b; font-size: 12px; }
#tgsm-attrs { color: #4c1d95; font-family: Menlo, Consolas, monospace; font-size: 12px; }
#tgsm-where, .tgsm-muted { color: #64748b; }
.tgsm-stats { border-collapse: collapse; margin: 3px 0; font-family: Menlo, Consolas, monospace; font-size: 12px; }
.tgsm-stats td { padding: 0 12px 0 0; }
.tgsm-stats td:first-child { color: #64748b; }
.tgsm-heat { display: flex; gap: 8px; align-items: flex-start; margin-top: 4px; }
.tgsm-heat canvas { image-rendering: pixelated; border: 1px solid #cbd5e1; }
.tgsm-scale { font-size: 11px; color: #64748b; }
.tgsm-scale .tgsm-bar { width: 90px; height: 9px; border: 1px solid #cbd5e1;
  background: linear-gradient(to right, #2563eb, #fff, #d97706); }
.tgsm-readout { font-family: Menlo, Consolas, monospace; font-size: 11px; color: #0f172a; min-height: 14px; }
#tgsm-list { margin: 0; padding-left: 34px; max-height: 260px; overflow-y: auto;
  font-family: Menlo, Consolas, monospace; font-size: 12px; }
#tgsm-list li { cursor: pointer; padding: 1px 4px; border-radius: 4px; }
#tgsm-list li.tgsm-done { color: #15803d; }
#tgsm-list li.tgsm-current { font-weight: bold; background: #fce7f3; color: #9d174d; }
#tgsm-list li.tgsm-pending { color: #94a3b8; cursor: default; }
#tgsm-list li.tgsm-wrong { color: #dc2626; }
g.node[data-tgsm-step] { cursor: pointer; }
g.node.tgsm-pending { opacity: 0.45; }
g.node.tgsm-done > polygon, g.node.tgsm-done > path, g.node.tgsm-done > ellipse,
g.node.tgsm-done > g > a > polygon, g.node.tgsm-done > g > a > path { stroke: #16a34a; stroke-width: 2.5px; }
g.node.tgsm-wrong polygon, g.node.tgsm-wrong path, g.node.tgsm-wrong ellipse { stroke: #dc2626; stroke-width: 3px;
  fill: #fee2e2; }
g.node.tgsm-current polygon, g.node.tgsm-current path, g.node.tgsm-current ellipse { stroke: #db2777;
  stroke-width: 5px; }
g.node.tgsm-current { filter: drop-shadow(0 0 5px #f472b6); }
g.edge.tgsm-flow path { stroke: #db2777; stroke-width: 2.5px; }
g.edge.tgsm-flow polygon { stroke: #db2777; fill: #db2777; }
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("tgsm-steps").textContent);
  var steps = data.steps, current = -1, shown = -1;
  var $ = function (id) { return document.getElementById(id); };
  var DETAIL_WIDTH = Math.min(450, 0.42 * window.innerWidth);  // #tgsm-detail's width in the CSS
  var nodes = {}, nodeByName = {}, edgesInto = {};
  document.querySelectorAll("g.node[data-tgsm-node]").forEach(function (g) {
    nodeByName[g.getAttribute("data-tgsm-node")] = g;
    if (!g.hasAttribute("data-tgsm-step")) return;
    var index = Number(g.getAttribute("data-tgsm-step"));
    nodes[index] = g;
    g.addEventListener("click", function () { show(index, true); });
  });
  document.querySelectorAll("g.edge[data-tgsm-head]").forEach(function (g) {
    var head = g.getAttribute("data-tgsm-head");
    (edgesInto[head] = edgesInto[head] || []).push(g);
  });
  data.pending.forEach(function (p) { var g = nodeByName[p.node]; if (g) g.classList.add("tgsm-pending"); });

  function element(tag, text, className) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (className) e.className = className;
    return e;
  }
  function fmt(value) {
    if (value === null || value === undefined) return "-";
    var x = Number(value);
    if (!isFinite(x)) return String(x);
    if (x === 0) return "0";
    var a = Math.abs(x);
    return (a >= 1e-3 && a < 1e5) ? String(Number(x.toPrecision(5))) : x.toExponential(3);
  }
  function shapeText(shape) {
    return shape.length ? "(" + shape.join(", ") + (shape.length === 1 ? ",)" : ")") : "scalar";
  }

  function heatmap(values) {
    var rows = values.length, cols = values[0].length;
    var scale = Math.max(2, Math.min(24, Math.floor(220 / Math.max(rows, cols))));
    var largest = 0;
    values.forEach(function (row) { row.forEach(function (v) {
      var x = Math.abs(Number(v)); if (isFinite(x) && x > largest) largest = x; }); });
    var canvas = element("canvas");
    canvas.width = cols * scale; canvas.height = rows * scale;
    var ctx = canvas.getContext("2d");
    values.forEach(function (row, r) { row.forEach(function (v, c) {
      var x = Number(v);
      if (!isFinite(x)) {
        ctx.fillStyle = "#dc2626"; ctx.fillRect(c * scale, r * scale, scale, scale);
        ctx.strokeStyle = "#fff"; ctx.beginPath(); ctx.moveTo(c * scale, r * scale);
        ctx.lineTo((c + 1) * scale, (r + 1) * scale); ctx.stroke(); return;
      }
      var t = largest > 0 ? Math.min(1, Math.abs(x) / largest) : 0;
      var to = x >= 0 ? [217, 119, 6] : [37, 99, 235];
      var mix = to.map(function (channel) { return Math.round(255 + (channel - 255) * t); });
      ctx.fillStyle = "rgb(" + mix.join(",") + ")";
      ctx.fillRect(c * scale, r * scale, scale, scale);
    }); });
    var box = element("div", null, "tgsm-heat"), side = element("div", null, "tgsm-scale");
    side.appendChild(element("div", rows + " x " + cols + " heat map"));
    side.appendChild(element("div", null, "tgsm-bar"));
    side.appendChild(element("div", "-" + fmt(largest) + "  0  +" + fmt(largest)));
    side.appendChild(element("div", "red: NaN or Inf"));
    var readout = element("div", "hover for a value", "tgsm-readout");
    side.appendChild(readout);
    canvas.addEventListener("mousemove", function (event) {
      var r = Math.floor(event.offsetY / scale), c = Math.floor(event.offsetX / scale);
      if (r < rows && c < cols) readout.textContent = "[" + r + ", " + c + "] = " + fmt(values[r][c]);
    });
    box.appendChild(canvas); box.appendChild(side);
    return box;
  }

  function arrayCard(title, summary, withValues) {
    var card = element("div", null, "tgsm-card tgsm-array");
    card.appendChild(element("h3", title));
    card.appendChild(element("div", "shape " + shapeText(summary.shape) + "  " + summary.dtype, "tgsm-muted"));
    var table = element("table", null, "tgsm-stats"), row = element("tr");
    ["min", "mean", "max"].forEach(function (key) {
      var cell = element("td");
      cell.appendChild(document.createTextNode(key + " "));
      var value = element("span", fmt(summary[key]), "tgsm-" + key);
      value.setAttribute("data-value", String(summary[key]));
      value.title = String(summary[key]);
      cell.appendChild(value);
      row.appendChild(cell);
    });
    table.appendChild(row);
    card.appendChild(table);
    if (summary.nan || summary.inf) {
      var counts = (summary.nan ? summary.nan + " NaN  " : "") + (summary.inf ? summary.inf + " Inf" : "");
      card.appendChild(element("div", counts, "tgsm-nonfinite"));
    }
    var many = summary.values && summary.values.length * summary.values[0].length > 1;
    if (withValues && many) card.appendChild(heatmap(summary.values));
    return card;
  }

  function checkCard(step) {
    var card = $("tgsm-check"), check = step.check;
    card.replaceChildren(element("h3", "Check against finite differences"));
    card.classList.toggle("tgsm-wrong-card", !check.ok);
    if (check.ok) {
      card.appendChild(element("div", "\\u2713 this node's backward matches its forward (max abs error " +
        fmt(check.max_abs_error) + ")", "tgsm-good"));
      return;
    }
    card.appendChild(element("div", "\\u2717 wrong backward", "tgsm-bad"));
    if (check.error) card.appendChild(element("div", check.error, "tgsm-bad"));
    check.inputs.forEach(function (item) {
      var text = "input " + item.index + ": " + item.mismatches + "/" + item.compared + " entries off, max abs error " +
        fmt(item.max_abs_error);
      if (!item.ok && item.worst_index) {
        text += "; worst element [" + item.worst_index.join(", ") + "]: backward gives " + fmt(item.analytical) +
          ", finite differences " + fmt(item.numerical);
      }
      card.appendChild(element("div", text, item.ok ? "tgsm-good" : "tgsm-bad"));
    });
  }

  function jacobianCard(step) {
    var box = $("tgsm-jacobian");
    box.replaceChildren();
    if (!step.jacobian) return;
    var card = arrayCard("Local Jacobian diag(a) \\u2212 a a\\u1d40 of the softmax, first row", step.jacobian, true);
    card.insertBefore(element("div", "a = [" + step.jacobian.a.map(fmt).join(", ") + "]", "tgsm-muted"),
      card.children[1]);
    box.appendChild(card);
  }

  function show(index, scroll) {
    if (!steps.length) return;
    current = Math.max(0, Math.min(steps.length - 1, index));
    var step = steps[current];
    $("tgsm-op").textContent = step.op;
    $("tgsm-position").textContent = "step " + current + " of " + (steps.length - 1);
    var verdict = $("tgsm-verdict");
    verdict.textContent = step.check.ok ? "\\u2713 checks out" : "\\u2717 wrong backward";
    verdict.className = "tgsm-badge " + (step.check.ok ? "tgsm-good" : "tgsm-bad");
    $("tgsm-prev").disabled = current === 0;
    $("tgsm-next").disabled = current === steps.length - 1;
    var title = $("tgsm-node-title");
    title.replaceChildren(document.createTextNode(step.op + " "), element("small", "#" + step.index +
      " in backward order, graph node " + step.node));
    var attrs = Object.keys(step.attrs).map(function (k) { return k + "=" + step.attrs[k]; });
    $("tgsm-attrs").textContent = attrs.join(", ");
    $("tgsm-where").textContent = step.where ? "made at " + step.where : "made outside user code";
    var out = step.output;
    $("tgsm-output").textContent = "output " + shapeText(out.shape) + " " + out.dtype + ", values " + fmt(out.min) +
      " \\u2026 " + fmt(out.max);
    checkCard(step);
    var grads = $("tgsm-grads");
    grads.replaceChildren(arrayCard("grad_output: the gradient arriving here", step.grad_output, true));
    step.grad_inputs.forEach(function (g, k) {
      if (g.none) {
        var card = element("div", null, "tgsm-card tgsm-array");
        card.appendChild(element("h3", "grad_input " + k + " \\u2192 " + g.to));
        card.appendChild(element("div", "takes no gradient (shape " + shapeText(g.shape) + ")", "tgsm-muted"));
        grads.appendChild(card);
      } else grads.appendChild(arrayCard("grad_input " + k + " \\u2192 " + g.to, g, true));
    });
    jacobianCard(step);
    var low = shown < 0 ? 0 : Math.min(shown, current), high = shown < 0 ? steps.length - 1 : Math.max(shown, current);
    for (var k = low; k <= high; k++) {  // only the steps whose state changed: a graph of thousands stays quick
      if (nodes[k]) {
        nodes[k].classList.toggle("tgsm-current", k === current);
        nodes[k].classList.toggle("tgsm-done", k < current);
        nodes[k].classList.toggle("tgsm-pending", k > current);
      }
      list.children[k].classList.toggle("tgsm-current", k === current);
      list.children[k].classList.toggle("tgsm-done", k < current);
    }
    if (shown >= 0) (edgesInto[steps[shown].node] || []).forEach(function (g) { g.classList.remove("tgsm-flow"); });
    (edgesInto[step.node] || []).forEach(function (g) { g.classList.add("tgsm-flow"); });
    shown = current;
    var item = list.children[current];
    if (item) reveal(list, item, 0);
    if (scroll !== false && nodes[current]) reveal(pane, nodes[current], 40);
  }
  function reveal(box, target, margin) {
    var outer = box.getBoundingClientRect(), inner = target.getBoundingClientRect();
    if (inner.top < outer.top + margin || inner.bottom > outer.bottom - margin) {
      box.scrollTop += (inner.top + inner.bottom) / 2 - (outer.top + outer.bottom) / 2;
    }
    if (inner.left < outer.left + margin || inner.right > outer.right - margin) {
      box.scrollLeft += (inner.left + inner.right) / 2 - (outer.left + outer.right) / 2;
    }
  }

  var list = $("tgsm-list");
  steps.forEach(function (step, i) {
    var item = element("li", step.op + (step.check.ok ? "  \\u2713" : "  \\u2717 wrong backward"));
    if (!step.check.ok) {
      item.classList.add("tgsm-wrong");
      if (nodes[i]) nodes[i].classList.add("tgsm-wrong");
    }
    item.addEventListener("click", function () { show(i); });
    list.appendChild(item);
  });
  data.pending.forEach(function (p) {
    list.appendChild(element("li", p.op + "  (not run yet)", "tgsm-pending"));
  });
  var wrong = steps.filter(function (s) { return !s.check.ok; });
  var summary = $("tgsm-summary");
  summary.textContent += " \\u00b7 " + steps.length + " steps" + (data.pending.length ? ", " + data.pending.length +
    " still to run" : "") + " \\u00b7 " + (wrong.length ? wrong.length + " wrong backward: #" + wrong[0].index + " " +
    wrong[0].op : "every node's backward checks out");
  if (wrong.length) summary.className += " tgsm-bad";

  var pane = $("tgsm-graph"), svg = pane.querySelector("svg"), zoom = 1;
  // sizes read without a layout (slow for a graph of thousands): the SVG's own width, the pane's from the window's
  var natural = svg ? svg.width.baseVal.value : 0, paneWidth = window.innerWidth - DETAIL_WIDTH - 50;
  var fitting = natural ? paneWidth / natural : 1;
  function setZoom(value) {
    zoom = Math.max(0.05, Math.min(3, value));
    if (svg) svg.style.width = (natural * zoom) + "px";
    $("tgsm-zoom").textContent = Math.round(zoom * 100) + "%";
  }
  $("tgsm-zoom-in").addEventListener("click", function () { setZoom(zoom * 1.25); show(current); });
  $("tgsm-zoom-out").addEventListener("click", function () { setZoom(zoom / 1.25); show(current); });
  $("tgsm-fit").addEventListener("click", function () { setZoom(fitting); show(current); });
  setZoom(Math.min(1, Math.max(0.75, fitting)));  // below 75% the labels get hard to read: scroll instead
  $("tgsm-prev").addEventListener("click", function () { show(current - 1); });
  $("tgsm-next").addEventListener("click", function () { show(current + 1); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "ArrowLeft") { show(current - 1); event.preventDefault(); }
    if (event.key === "ArrowRight") { show(current + 1); event.preventDefault(); }
  });
  show(data.start);
})();
"""
