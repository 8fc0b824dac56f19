"""Drawing a computation graph with graphviz: one box per tensor, a cluster per nn.Module, values and gradients inside.

`draw_graph(loss)` gives a `graphviz.Digraph` (inline SVG in Jupyter), `to_dot(loss)` its DOT text (no `dot`
program needed), `render(loss, "graph.svg")` writes a file, `render_with_gradients` runs backward first.
Only this module imports graphviz.
"""

import html
import os
import re

import graphviz
import numpy as np

from tinygrad_sm.files import write_atomically
from tinygrad_sm.function import Context
from tinygrad_sm.tensor import Tensor
from tinygrad_sm.walk import ModuleIndex, backward_recording_grads, topo_order

FORMATS = ("svg", "png", "pdf", "dot")
RANKDIRS = ("TB", "LR", "BT", "RL")
COLLAPSE_MODES = (None, "modules")
SMALL_ARRAY = 6  # arrays up to this many elements show every value, bigger ones min / mean / max
INSTALL_DOT = (
    "install graphviz's `dot` program: `sudo apt-get install graphviz` (Debian/Ubuntu), "
    "`brew install graphviz` (macOS) or `conda install graphviz`"
)

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
NONFINITE_FILL, NONFINITE_BORDER = "#fee2e2", "#dc2626"
HIGHLIGHT_BORDER, HIGHLIGHT_WIDTH = "#db2777", "4"
FADED_FILL, FADED_BORDER, FADED_TEXT = "#f8fafc", "#cbd5e1", "#94a3b8"
ZERO_GRAD_COLOR, GRAD_COLOR = "#b45309", "#9a3412"
CLUSTER_FILLS = ("#f8fafc", "#eef2f7", "#e2e8f0")


class DotNotFoundError(OSError):
    """graphviz's `dot` program is missing: the message says how to install it and where the DOT text went."""


class GraphDrawing(graphviz.Digraph):
    """A graphviz.Digraph that shows inline as SVG in Jupyter, or says how to install `dot` when it is missing."""

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        try:
            return super()._repr_mimebundle_(include, exclude, **kwargs)
        except graphviz.ExecutableNotFound:
            return {"text/plain": f"cannot draw the graph: {INSTALL_DOT}.\nIts DOT text:\n{self.source}"}


def draw_graph(
    output, show_data=True, show_grad=True, highlight=(), rankdir="TB", collapse=None, faded=(), grads=None
):
    """The graph that computed `output` as a graphviz.Digraph (shows inline in Jupyter).

    show_data / show_grad: each tensor's value / gradient (one number, a few values, or min / mean / max).
    highlight, faded: nodes (Contexts) or Tensors drawn emphasised / greyed out (the debugger's current
    and pending nodes). rankdir: "TB" (top to bottom) or "LR". collapse="modules": each module one node.
    grads: {id(tensor): array} gradients to show for tensors without `.grad` (intermediate tensors).
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"draw_graph: output must be a Tensor, got {type(output).__name__}")
    if rankdir not in RANKDIRS:
        raise ValueError(f"draw_graph: rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    if collapse not in COLLAPSE_MODES:
        raise ValueError(f"draw_graph: collapse must be None or 'modules', got {collapse!r}")
    if grads is not None and not isinstance(grads, dict):
        raise TypeError(f"draw_graph: grads must be a dict {{id(tensor): array}} or None, got {type(grads).__name__}")
    drawing = _Drawing(output, show_data, show_grad, rankdir, collapse == "modules", grads or {})
    drawing.highlighted = drawing.members_of("highlight", highlight)
    drawing.faded = drawing.members_of("faded", faded)
    return drawing.build()


def to_dot(output, **options):
    """The DOT text of `draw_graph(output, **options)`; needs no `dot` program."""
    return draw_graph(output, **options).source


def write_graph(graph, path, format=None):
    """Write a drawn graph to `path` atomically, as svg, png, pdf or dot (from `format` or the file's suffix).

    Without the `dot` program the DOT text is written next to `path` (suffix .dot) and DotNotFoundError
    says how to install graphviz. Returns the path written.
    """
    path = os.fspath(path)
    format = _format_for(path, format)
    if format == "dot":
        write_atomically(path, lambda file: file.write(graph.source.encode()))
        return path
    try:
        data = graph.pipe(format=format)
    except graphviz.ExecutableNotFound:
        dot_path = os.path.splitext(path)[0] + ".dot"
        write_atomically(dot_path, lambda file: file.write(graph.source.encode()))
        raise DotNotFoundError(
            f"cannot render {path}: graphviz's `dot` program was not found; the DOT text is in {dot_path}. "
            f"To draw it, {INSTALL_DOT}, then run `dot -T{format} {dot_path} -o {path}`"
        ) from None
    write_atomically(path, lambda file: file.write(data))
    return path


def render(output, path, format=None, **options):
    """Draw the graph of `output` (options as `draw_graph`) and write it to `path`; returns the path.

    `render(loss, "model.svg", collapse="modules")` gives one box per layer.
    """
    return write_graph(draw_graph(output, **options), path, format)


def render_with_gradients(loss, path, format=None, collapse="modules", **options):
    """Run `loss.backward()`, keeping every intermediate gradient, and write the graph showing them all.

    For a demo after training: `render_with_gradients(loss, "model.svg")` draws one box per layer with its
    output and gradient. The backward adds to the parameters' `.grad` as usual. Returns the path written.
    """
    grads = backward_recording_grads(loss)
    return render(loss, path, format, collapse=collapse, grads=grads, **options)


def _format_for(path, format):
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if format is None:
        if suffix not in FORMATS:
            raise ValueError(
                f"cannot tell the format of {path!r} from its suffix; use a .svg, .png, .pdf or .dot file "
                f"or give the format ({', '.join(FORMATS)})"
            )
        return suffix
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if suffix in FORMATS and suffix != format:
        raise ValueError(f"{path!r} has the suffix .{suffix} but the format asked for is {format}")
    return format


class _Drawing:
    """One drawing in the making: which tensor is which kind, where it sits, how it looks."""

    def __init__(self, output, show_data, show_grad, rankdir, collapse, grads):
        self.output = output
        self.show_data, self.show_grad, self.rankdir, self.collapse = show_data, show_grad, rankdir, collapse
        self.grads = grads
        self.tensors = topo_order(output, requiring_grad=False)
        self.index = {id(tensor): position for position, tensor in enumerate(self.tensors)}
        self.made_by = {id(t.grad_fn): t for t in self.tensors if t.grad_fn is not None}
        self.modules = ModuleIndex(self.tensors)
        self.consumers = {}
        for tensor in self.tensors:
            if tensor.grad_fn is not None:
                for parent in tensor.grad_fn.parents:
                    self.consumers.setdefault(id(parent), []).append(tensor)
        self.highlighted = self.faded = frozenset()

    def members_of(self, option, items):
        """The ids of the tensors named by `items` (Tensors or Contexts, one or several)."""
        if isinstance(items, (Tensor, Context)):
            items = (items,)
        chosen = set()
        for item in items:
            if not isinstance(item, (Tensor, Context)):
                raise TypeError(f"draw_graph: {option} takes nodes (Context) or Tensors, got {type(item).__name__}")
            tensor = self.made_by.get(id(item)) if isinstance(item, Context) else item
            if tensor is None or id(tensor) not in self.index:
                raise ValueError(f"draw_graph: {option} names {item!r}, which is not part of this graph")
            chosen.add(id(tensor))
        return frozenset(chosen)

    # ---- where each tensor goes ----

    def scope_of(self, tensor):
        """The modules (outermost first) a tensor belongs to: its node's scope, a parameter's owner."""
        if tensor.grad_fn is not None:
            return tensor.grad_fn.scope
        if id(tensor) in self.modules.parameters:
            owner = self.modules.parameters[id(tensor)][1]
            return self.modules.chains.get(id(owner), ())
        if self.kind(tensor) == "constant":
            scopes = {tuple(map(id, self.scope_of(c))): self.scope_of(c) for c in self.consumers.get(id(tensor), [])}
            if len(scopes) == 1:
                return next(iter(scopes.values()))
        return ()

    def unit_of(self, scope):
        """With collapse: the chain of modules down to the one drawn as a single node (None: not collapsed)."""
        if not self.collapse or not scope:
            return None
        if len(scope) >= 2:
            return scope[:2]
        has_submodules = any(module is not scope[0] for _, module in scope[0].named_modules())
        return None if has_submodules else scope[:1]

    def kind(self, tensor):
        if tensor is self.output:
            return "output"
        if tensor.grad_fn is not None:
            return "op"
        if id(tensor) in self.modules.parameters:
            return "parameter"
        if tensor.name is None and tensor.ndim == 0 and not tensor.requires_grad:
            return "constant"
        return "input"

    # ---- building the Digraph ----

    def build(self):
        graph = GraphDrawing(
            name="computation_graph",
            graph_attr={
                "rankdir": self.rankdir, "fontname": FONT, "bgcolor": "white", "nodesep": "0.25",
                "ranksep": "0.35", "newrank": "true",
            },
            node_attr={"fontname": FONT, "fontsize": "11", "margin": "0.12,0.05", "penwidth": "1.2"},
            edge_attr={"color": "#64748b", "arrowsize": "0.6", "penwidth": "1.1", "fontname": FONT},
        )
        clusters = {}  # tuple of module ids -> (modules, [(name, attrs)])
        units = {}  # tuple of module ids -> the tensors drawn as that one module node
        representative = {}
        for tensor in self.tensors:
            scope = self.scope_of(tensor)
            unit = self.unit_of(scope) if tensor is not self.output and self.kind(tensor) != "input" else None
            if unit is not None:
                key = tuple(map(id, unit))
                units.setdefault(key, (unit, []))[1].append(tensor)
                representative[id(tensor)] = f"m{self.index[id(units[key][1][0])]}"
                continue
            name = f"t{self.index[id(tensor)]}"
            representative[id(tensor)] = name
            self.place(clusters, scope, name, self.tensor_attrs(tensor))
        for unit, members in units.values():
            name = representative[id(members[0])]
            self.place(clusters, unit[:-1], name, self.module_attrs(unit[-1], members))
        self.add_clusters(graph, clusters)
        self.add_edges(graph, representative)
        self.add_legend(graph, with_module=bool(units))
        return graph

    def place(self, clusters, scope, name, attrs):
        key = tuple(map(id, scope))
        for depth in range(len(scope) + 1):
            clusters.setdefault(key[:depth], (scope[:depth], []))
        clusters[key][1].append((name, attrs))

    def add_clusters(self, graph, clusters):
        """Nodes into nested `subgraph cluster_N` blocks, written as DOT lines directly (thousands of nodes)."""
        children = {}
        for key in clusters:
            if key:
                children.setdefault(key[:-1], []).append(key)
        numbers = {key: number for number, key in enumerate(sorted(clusters, key=len))}

        def lines_of(key, indent):
            lines = []
            if key:
                module = clusters[key][0][-1]
                style = {
                    "label": self.modules.label(module), "style": "rounded,filled",
                    "fillcolor": CLUSTER_FILLS[min(len(key) - 1, len(CLUSTER_FILLS) - 1)],
                    "color": "#cbd5e1", "fontcolor": "#334155", "fontsize": "11", "labeljust": "l",
                }
                lines += [f"{indent}subgraph cluster_{numbers[key]} {{\n", f"{indent}\tgraph [{_attr_list(style)}]\n"]
            inner = indent + "\t" if key else indent
            lines += [f"{inner}{name} [{_attr_list(attrs)}]\n" for name, attrs in clusters[key][1]]
            for child in children.get(key, []):
                lines += lines_of(child, inner)
            if key:
                lines.append(f"{indent}}}\n")
            return lines

        graph.body.extend(lines_of((), "\t"))

    def add_edges(self, graph, representative):
        drawn = set()
        for tensor in self.tensors:
            if tensor.grad_fn is None:
                continue
            head = representative[id(tensor)]
            for parent in tensor.grad_fn.parents:
                tail = representative[id(parent)]
                if tail == head:
                    continue
                collapsed = head.startswith("m") or tail.startswith("m")
                if collapsed:
                    if (tail, head) in drawn:
                        continue
                    drawn.add((tail, head))
                    label = _attr_list({"label": _shape_text(parent.shape), "fontsize": "9", "fontcolor": MUTED})
                    graph.body.append(f"\t{tail} -> {head} [{label}]\n")
                else:
                    graph.body.append(f"\t{tail} -> {head}\n")

    def add_legend(self, graph, with_module):
        legend = graphviz.Digraph(
            name="cluster_legend",
            graph_attr={"label": "legend", "fontsize": "10", "fontcolor": MUTED, "style": "rounded,dashed",
                        "color": "#cbd5e1"},
            node_attr={"fontsize": "9", "fontname": FONT, "width": "0.3", "height": "0.3", "margin": "0.06,0.03"},
        )
        entries = [kind for kind in KINDS if kind != "module" or with_module]
        names = [f"legend_{kind}" for kind in entries]
        for name, kind in zip(names, entries):
            legend.node(name, LEGEND[kind], **_kind_style(kind), **{"class": "legend"})
        extras = [
            ("legend_pending", "gradient not\\ncomputed yet", {**_kind_style("parameter"), "style": "filled,dashed"}),
            ("legend_nonfinite", "NaN or Inf", {**_kind_style("op"), "fillcolor": NONFINITE_FILL,
                                                "color": NONFINITE_BORDER, "penwidth": "2"}),
        ]
        if self.show_grad:
            for name, label, attrs in extras:
                legend.node(name, label, **attrs, **{"class": "legend"})
                names.append(name)
        if self.rankdir in ("TB", "BT"):  # one rank is a row; in LR/RL it would be a column, so chain the ranks
            legend.body.append("\t{rank=same; " + "; ".join(names) + "}\n")
        for tail, head in zip(names, names[1:]):
            legend.edge(tail, head, style="invis")
        graph.subgraph(legend)

    # ---- how each node looks ----

    def gradient_of(self, tensor):
        if tensor.grad is not None:
            return tensor.grad.data
        return self.grads.get(id(tensor))

    def tensor_attrs(self, tensor):
        kind = self.kind(tensor)
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
        if tensor.grad_fn is not None and tensor.grad_fn.made_at is not None:
            attrs["tooltip"] = f"{tensor.grad_fn.op_name} made at {tensor.grad_fn.where}"
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
        if kind == "output":
            title.insert(0, _small("<B>OUTPUT</B>" + (f" {_escape(tensor.name)}" if tensor.name else ""), "#c2410c"))
        return title

    def module_attrs(self, module, members):
        member_ids = {id(t) for t in members}
        ops = [t for t in members if t.grad_fn is not None]
        parameters = [t for t in members if t.grad_fn is None and id(t) in self.modules.parameters]
        leaving = [
            t for t in ops
            if t is self.output or any(id(c) not in member_ids for c in self.consumers.get(id(t), []))
        ]
        op_names = list(dict.fromkeys(t.grad_fn.op_name for t in ops))
        lines = [f"<B>{_escape(self.modules.label(module))}</B>"]
        ops_text = ", ".join(op_names) if len(op_names) <= 4 else f"{len(op_names)} kinds"
        lines.append(_small(f"{len(ops)} op{'s' if len(ops) != 1 else ''}: {ops_text}", "#4c1d95"))
        if parameters:
            values = sum(p.size for p in parameters)
            plural = "s" if len(parameters) != 1 else ""
            lines.append(_small(f"{len(parameters)} parameter{plural}, {values:,} values", "#15803d"))
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
        highlighted = bool(member_ids & self.highlighted)
        faded = bool(member_ids) and member_ids <= self.faded
        self.restyle(attrs, grad_pending, nonfinite, highlighted, faded)
        return attrs

    def restyle(self, attrs, grad_pending, nonfinite, highlighted, faded):
        if grad_pending:
            attrs["style"] = attrs["style"] + ",dashed"
        if nonfinite:
            attrs.update(fillcolor=NONFINITE_FILL, color=NONFINITE_BORDER, penwidth="2.5")
        if faded:
            attrs.update(fillcolor=FADED_FILL, color=FADED_BORDER, fontcolor=FADED_TEXT)
            attrs["label"] = re.sub(r' COLOR="[^"]*"', "", attrs["label"])
        if highlighted:
            attrs.update(color=HIGHLIGHT_BORDER, penwidth=HIGHLIGHT_WIDTH)


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


def _grad_line(grad):
    if not grad.any():
        return _small("<B>grad = 0 everywhere</B>", ZERO_GRAD_COLOR)
    color = NONFINITE_BORDER if not _all_finite(grad) else GRAD_COLOR
    return _small("grad " + _values_text(grad), color)


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
