"""How a drawn graph looks: each kind's shape and colours, the lines of every node's label, the debugger's and
NaN's styles, and the legend."""

import html
import re

import numpy as np

PARAMETERS_SHOWN = 4  # a collapsed module shows the gradients of up to this many of its parameters
SMALL_ARRAY = 6  # arrays up to this many elements show every value, bigger ones min / mean / max
FONT = "Helvetica,Arial,sans-serif"
MUTED = "#64748b"
# kind -> (shape, extra style, fill colour, border colour): told apart by shape and by colour
KINDS = {
    "parameter": ("cylinder", "", "#dcfce7", "#15803d"),
    "input": ("polygon", "", "#dbeafe", "#1d4ed8"),
    "constant": ("circle", "", "#f1f5f9", "#64748b"),
    "op": ("box", "rounded", "#f5f3ff", "#6d28d9"),
    "output": ("box", "rounded", "#ffedd5", "#c2410c"),
    "module": ("box3d", "", "#e0e7ff", "#4338ca"),
}
LEGEND = {
    "parameter": "parameter\\n(layers.0.weight)",
    "input": "input / data",
    "constant": "number",
    "op": "op",
    "output": "output (loss)",
    "module": "nn.Module\\n(collapsed)",
}
# state -> its legend entry, shown when a node in that state is drawn; in this order, after the kinds
STATE_LEGEND = {
    "current": "current node\\n(the debugger's)",
    "faded": "pending: backward\\nhas not run it",
    "grad_pending": "gradient not\\ncomputed yet",
    "nonfinite": "NaN or Inf",
}
NONFINITE_FILL, NONFINITE_BORDER = "#fee2e2", "#dc2626"
HIGHLIGHT_BORDER, HIGHLIGHT_WIDTH = "#db2777", "4"
FADED_FILL, FADED_BORDER, FADED_TEXT = "#f8fafc", "#cbd5e1", "#94a3b8"
ZERO_GRAD_COLOR, GRAD_COLOR = "#b45309", "#9a3412"
CLUSTER_FILLS = ("#f8fafc", "#eef2f7", "#e2e8f0")


class NodeLabels:
    """The attributes (label, shape, colours, class, tooltip) of each node of a `GraphLayout`."""

    def __init__(self, layout, show_data, show_grad, grads, highlighted, faded):
        self.layout, self.modules, self.output = layout, layout.modules, layout.output
        self.show_data, self.show_grad, self.grads = show_data, show_grad, grads
        self.highlighted, self.faded = highlighted, faded
        self.drawn = set()  # the kinds and states of the nodes made so far: the legend lists these only

    def gradient_of(self, tensor):
        if tensor.grad is not None:
            return tensor.grad.data
        return self.grads.get(id(tensor))

    def tensor_attrs(self, tensor):
        kind = self.layout.kind(tensor)
        grad = self.gradient_of(tensor) if self.show_grad and tensor.requires_grad else None
        grad_pending = self.show_grad and tensor.requires_grad and tensor.is_leaf and grad is None
        nonfinite = not _all_finite(tensor.data) or (grad is not None and not _all_finite(grad))
        faded = id(tensor) in self.faded
        lines = self.title_lines(tensor, kind)
        if kind != "constant":
            lines.append(_small(_shape_text(tensor.shape) + " " + str(tensor.dtype), MUTED))
        if self.show_data and kind != "constant":
            lines.append(_values_line(tensor.data))
        if grad is not None:
            lines.append(_grad_line(grad))
        elif grad_pending:
            lines.append(_small("<I>grad not computed yet</I>", MUTED))
        attrs = _kind_style(kind)
        attrs["label"] = "<" + "<BR/>".join(lines) + ">"
        attrs["class"] = kind if kind != "output" else "op output" if tensor.grad_fn is not None else "output"
        if tensor.grad_fn is not None:
            node = tensor.grad_fn
            attrs["tooltip"] = f"{node.op_name} {made_at_text(node)}{_backward_text(node)}"
        self.drawn.add(kind)
        self.restyle(attrs, grad_pending, nonfinite, id(tensor) in self.highlighted, faded)
        return attrs

    def title_lines(self, tensor, kind):
        if kind == "constant":
            return [f"<B>{_escape(_number(tensor.data.item()))}</B>", _small(str(tensor.dtype), MUTED)]
        if kind == "parameter":
            return [f"<B>{_escape(self.modules.parameters[id(tensor)][0])}</B>"]
        if tensor.grad_fn is None:
            title = [f"<B>{_escape(tensor.name or 'input')}</B>"]
        else:
            title = [f"<B>{tensor.grad_fn.op_name}</B>"]
            attributes = ", ".join(
                f"{key}={_index_text(value) if key == 'index' else _attr_text(value)}"
                for key, value in tensor.grad_fn.attrs.items()
            )
            if attributes:
                title.append(_small(_escape(attributes), "#4c1d95"))
            if tensor.grad_fn.backward_of is not None:
                title.append(_small(f"in {tensor.grad_fn.backward_of.op_name}.backward", MUTED))
        if kind == "output":
            title.insert(0, _small("<B>OUTPUT</B>" + (f" {_escape(tensor.name)}" if tensor.name else ""), "#c2410c"))
        return title

    def module_attrs(self, module, members):
        member_ids = {id(t) for t in members}
        ops = [t for t in members if t.grad_fn is not None]
        parameters = [t for t in members if t.grad_fn is None and id(t) in self.modules.parameters]
        leaving = [
            t for t in ops
            if t is self.output or any(id(c) not in member_ids for c in self.layout.consumers.get(id(t), []))
        ]
        op_names = list(dict.fromkeys(t.grad_fn.op_name for t in ops))
        lines = [f"<B>{_escape(self.modules.label(module))}</B>"]
        ops_text = ", ".join(op_names) if len(op_names) <= 4 else f"{len(op_names)} kinds"
        lines.append(_small(f"{len(ops)} op{'s' if len(ops) != 1 else ''}: {ops_text}", "#4c1d95"))
        if parameters:
            values = sum(p.size for p in parameters)
            plural = "s" if len(parameters) != 1 else ""
            lines.append(_small(f"{len(parameters)} parameter{plural}, {values:,} values", "#15803d"))
        for parameter in parameters[:PARAMETERS_SHOWN] if self.show_grad else ():
            grad = self.gradient_of(parameter)
            if grad is not None:
                path, owner = self.modules.parameters[id(parameter)]
                inside = path[len(self.modules.paths.get(id(module), "")):].lstrip(".")
                lines.append(_grad_line(grad, f"{_escape(inside)} "))
        for tensor in leaving[:2]:
            lines.append(_small("out " + _shape_text(tensor.shape) + " " + str(tensor.dtype), MUTED))
            if self.show_data:
                lines.append(_values_line(tensor.data))
            grad = self.gradient_of(tensor) if self.show_grad else None
            if grad is not None:
                lines.append(_grad_line(grad))
        grad_pending = self.show_grad and any(self.gradient_of(p) is None for p in parameters)
        if grad_pending:
            lines.append(_small("<I>parameter grads not computed yet</I>", MUTED))
        nonfinite = any(
            not _all_finite(t.data) or (self.show_grad and not _all_finite(_or_empty(self.gradient_of(t))))
            for t in members
        )
        attrs = _kind_style("module")
        attrs["label"] = "<" + "<BR/>".join(lines) + ">"
        attrs["class"] = "module"
        self.drawn.add("module")
        highlighted = bool(member_ids & self.highlighted)
        faded = bool(member_ids) and member_ids <= self.faded
        self.restyle(attrs, grad_pending, nonfinite, highlighted, faded)
        return attrs

    def restyle(self, attrs, grad_pending, nonfinite, highlighted, faded):
        states = {"grad_pending": grad_pending, "nonfinite": nonfinite, "current": highlighted, "faded": faded}
        self.drawn.update(state for state, drawn in states.items() if drawn)
        if grad_pending:
            attrs["style"] = attrs["style"] + ",dashed"
        if nonfinite:
            attrs.update(fillcolor=NONFINITE_FILL, color=NONFINITE_BORDER, penwidth="2.5")
        if faded:
            attrs.update(fillcolor=FADED_FILL, color=FADED_BORDER, fontcolor=FADED_TEXT)
            attrs["label"] = re.sub(r' COLOR="[^"]*"', "", attrs["label"])
        if highlighted:
            attrs.update(color=HIGHLIGHT_BORDER, penwidth=HIGHLIGHT_WIDTH)


def made_at_text(node):
    """`made at file:line` of the user code that made `node`, or `made outside user code` (a built-in model's
    nodes, made by the package, have none): the debugger says the same."""
    return f"made at {node.where}" if node.made_at is not None else "made outside user code"


def _backward_text(node):
    """For a node a create_graph backward recorded: which op's backward, and its derivative (its docstring's line)."""
    if node.backward_of is None:
        return ""
    maker = node.backward_of.op
    derivative = (maker.__doc__ or "").strip().splitlines()
    return f", in {maker.__name__}.backward" + (f": {derivative[0]}" if derivative else "")


def legend_lines(drawn, rankdir):
    """The DOT lines of the legend: one entry per kind and per state in `drawn`, in one row (one column in LR)."""
    entries = [(kind, LEGEND[kind], _kind_style(kind)) for kind in KINDS if kind in drawn]
    styles = {
        "current": {**_kind_style("op"), "color": HIGHLIGHT_BORDER, "penwidth": HIGHLIGHT_WIDTH},
        "faded": {**_kind_style("op"), "fillcolor": FADED_FILL, "color": FADED_BORDER, "fontcolor": FADED_TEXT},
        "grad_pending": {**_kind_style("parameter"), "style": "filled,dashed"},
        "nonfinite": {**_kind_style("op"), "fillcolor": NONFINITE_FILL, "color": NONFINITE_BORDER, "penwidth": "2"},
    }
    entries += [(state, label, styles[state]) for state, label in STATE_LEGEND.items() if state in drawn]
    names = [f"legend_{name}" for name, _, _ in entries]
    style = {"label": "legend", "fontsize": "10", "fontcolor": MUTED, "style": "rounded,dashed", "color": "#cbd5e1"}
    node_style = {"fontsize": "9", "fontname": FONT, "width": "0.3", "height": "0.3", "margin": "0.06,0.03"}
    lines = [
        "\tsubgraph cluster_legend {\n", f"\t\tgraph [{_attr_list(style)}]\n", f"\t\tnode [{_attr_list(node_style)}]\n",
    ]
    for name, (_, label, attrs) in zip(names, entries):
        lines.append(f"\t\t{name} [{_attr_list({'label': label, **attrs, 'class': 'legend'})}]\n")
    if rankdir in ("TB", "BT"):  # one rank is a row; in LR/RL it would be a column, so chain the ranks
        lines.append("\t\t{rank=same; " + "; ".join(names) + "}\n")
    lines += [f"\t\t{tail} -> {head} [style=invis]\n" for tail, head in zip(names, names[1:])]
    return lines + ["\t}\n"]


def _kind_style(kind):
    shape, style, fill, border = KINDS[kind]
    attrs = {"shape": shape, "style": ",".join(filter(None, [style, "filled"])), "fillcolor": fill, "color": border}
    if kind == "output":
        attrs["peripheries"] = "2"
    if kind == "input":
        attrs.update(sides="4", skew="0.15", margin="0")
    if kind == "constant":
        attrs.update(width="0.3", margin="0.02")
    return attrs


# ---- text ----

def _attr_list(attrs):
    """DOT attributes: HTML labels (<...>) as they are, everything else quoted."""
    return " ".join(f"{key}={_quoted(value)}" for key, value in attrs.items())


def _quoted(value):
    if value.startswith("<") and value.endswith(">"):
        return value
    return '"' + value.replace('"', '\\"') + '"'



def _escape(text):
    return html.escape(str(text), quote=True)


def _small(text, color):
    return f'<FONT POINT-SIZE="9" COLOR="{color}">{text}</FONT>'


def _shape_text(shape):
    return "scalar" if shape == () else str(tuple(shape))


def _number(value):
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.4g}"


def _or_empty(array):
    return np.zeros(0) if array is None else array


def _all_finite(array):
    return array.dtype.kind not in "fc" or bool(np.isfinite(array).all())


def _values_text(array):
    """One number, up to SMALL_ARRAY values, or min / mean / max (of the finite values, NaN and Inf counted)."""
    if array.dtype.kind == "b":
        array = array.astype(np.int8)
    if array.size == 0:
        return "empty"
    if array.size == 1:
        return "= " + _number(array.reshape(()).item())
    if array.size <= SMALL_ARRAY:
        rows = array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array.reshape(1, -1)
        return "<BR/>".join("[" + ", ".join(_number(v) for v in row.tolist()) + "]" for row in rows)
    finite = array[np.isfinite(array)] if array.dtype.kind in "fc" else array.reshape(-1)
    parts = []
    if finite.size:
        parts.append(
            f"min {_number(finite.min())}  mean {_number(finite.mean(dtype=np.float64))}  max {_number(finite.max())}"
        )
    nan_count = int(np.isnan(array).sum()) if array.dtype.kind in "fc" else 0
    inf_count = array.size - finite.size - nan_count
    if nan_count:
        parts.append(f"{nan_count} NaN")
    if inf_count:
        parts.append(f"{inf_count} Inf")
    return "  ".join(parts)


def _values_line(array):
    color = NONFINITE_BORDER if not _all_finite(array) else "#0f172a"
    return _small(_values_text(array), color)


def _grad_line(grad, prefix=""):
    if not grad.any():
        return _small(f"<B>{prefix}grad = 0 everywhere</B>", ZERO_GRAD_COLOR)
    color = NONFINITE_BORDER if not _all_finite(grad) else GRAD_COLOR
    return _small(prefix + "grad " + _values_text(grad), color)


def _attr_text(value):
    """An op attribute as Python would write it; an index as `[:, 0]`, an array by its shape."""
    if isinstance(value, np.ndarray):
        return "[" + ", ".join(_number(v) for v in value.tolist()) + "]" if value.size <= 4 else f"array{value.shape}"
    if isinstance(value, slice):
        parts = ["" if part is None else str(part) for part in (value.start, value.stop, value.step)]
        return ":".join(parts[:2]) + (f":{parts[2]}" if value.step is not None else "")
    if value is Ellipsis:
        return "..."
    if isinstance(value, tuple):
        return "(" + ", ".join(_attr_text(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def _index_text(index):
    """An index as it was written: `[:, 0]`, `[array(32,), labels]`."""
    parts = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(_attr_text(part) for part in parts) + "]"
