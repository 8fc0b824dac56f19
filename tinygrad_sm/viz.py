"""Drawing a computation graph with graphviz: one box per tensor, a cluster per nn.Module, values and gradients inside.

`draw_graph(loss)` gives a `graphviz.Digraph` (inline SVG in Jupyter), `to_dot(loss)` its DOT text (no `dot`
program needed), `render(loss, "graph.svg")` writes a file, `render_with_gradients` runs backward first.
Where each tensor goes is `viz_layout`, how it looks `viz_labels`; only this module imports graphviz.
"""

import os
import signal

import graphviz

from tinygrad_sm.files import write_atomically
from tinygrad_sm.tensor import Tensor
from tinygrad_sm.viz_labels import FONT, HIGHLIGHT_BORDER, NONFINITE_FILL, NodeLabels, legend_lines
from tinygrad_sm.viz_layout import GraphLayout
from tinygrad_sm.walk import backward_recording_grads

__all__ = [
    "HIGHLIGHT_BORDER", "MAX_LAYOUT_NODES", "NONFINITE_FILL", "DotFailedError", "DotNotFoundError", "GraphDrawing",
    "GraphTooLargeError", "draw_graph", "render", "render_with_gradients", "to_dot", "write_graph",
]

FORMATS = ("svg", "png", "pdf", "dot")
RANKDIRS = ("TB", "LR", "BT", "RL")
COLLAPSE_MODES = (None, "modules")
MAX_LAYOUT_NODES = 10_000  # `dot` lays out 8,000 chain nodes in 3 s, 16,000 in 12 s, 32,000 in 90 s; 200,000 crash it
INSTALL_DOT = (
    "install graphviz's `dot` program: `sudo apt-get install graphviz` (Debian/Ubuntu), "
    "`brew install graphviz` (macOS) or `conda install graphviz`"
)

class DotNotFoundError(OSError):
    """graphviz's `dot` program is missing: the message says how to install it and where the DOT text went."""


class DotFailedError(OSError):
    """`dot` ran and failed (an error exit or a crash): the message says how and where the DOT text went."""


class GraphTooLargeError(ValueError):
    """More nodes than `dot` lays out in reasonable time; `nodes`, `limit` and `dot_path` (the DOT text kept)."""

    def __init__(self, message, nodes, limit, dot_path):
        super().__init__(message)
        self.nodes, self.limit, self.dot_path = nodes, limit, dot_path


class GraphDrawing(graphviz.Digraph):
    """A graphviz.Digraph that shows inline as SVG in Jupyter, or says how to install `dot` when it is missing.
    `node_count` is the number of boxes drawn (the legend aside)."""

    node_count = 0

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        if self.node_count > MAX_LAYOUT_NODES:
            return {"text/plain": (
                f"not drawn inline: {self.node_count:,} nodes, more than `dot` lays out in reasonable time "
                f"({MAX_LAYOUT_NODES:,}); draw it with collapse='modules', or write_graph(graph, path, max_nodes=None)"
            )}
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
    layout = GraphLayout(output, collapse == "modules")
    labels = NodeLabels(
        layout, show_data, show_grad, grads or {}, layout.members_of("highlight", highlight),
        layout.members_of("faded", faded),
    )
    graph = GraphDrawing(
        name="computation_graph",
        graph_attr={
            "rankdir": rankdir, "fontname": FONT, "bgcolor": "white", "nodesep": "0.25", "ranksep": "0.35",
            "newrank": "true",
        },
        node_attr={"fontname": FONT, "fontsize": "11", "margin": "0.12,0.05", "penwidth": "1.2"},
        edge_attr={"color": "#64748b", "arrowsize": "0.6", "penwidth": "1.1", "fontname": FONT},
    )
    clusters, representative = layout.arrange(labels)
    graph.node_count = len(set(representative.values()))
    layout.add_clusters(graph, clusters)
    layout.add_edges(graph, representative)
    graph.body.extend(legend_lines(labels.drawn, rankdir))
    return graph


def to_dot(output, **options):
    """The DOT text of `draw_graph(output, **options)`; needs no `dot` program."""
    return draw_graph(output, **options).source


def write_graph(graph, path, format=None, max_nodes=MAX_LAYOUT_NODES):
    """Write a drawn graph to `path` atomically, as svg, png, pdf or dot (from `format` or the file's suffix).

    Whenever `dot` cannot make the picture, the DOT text is written next to `path` (suffix .dot) and the error
    says where: DotNotFoundError (with how to install graphviz) without the program, DotFailedError when it
    fails or crashes, GraphTooLargeError, before running it, for more than `max_nodes` nodes (None: no limit).
    Returns the path written.
    """
    path = os.fspath(path)
    format = _format_for(path, format)
    if format == "dot":
        write_atomically(path, lambda file: file.write(graph.source.encode()))
        return path
    nodes = graph.node_count if isinstance(graph, GraphDrawing) else 0
    if max_nodes is not None and nodes > max_nodes:
        dot_path = _keep_dot_text(graph, path)
        raise GraphTooLargeError(
            f"cannot render {path}: the graph has {nodes:,} nodes and `dot` takes minutes or crashes on more than "
            f"{max_nodes:,}; the DOT text is in {dot_path}. Draw it with collapse='modules', or pass max_nodes=None",
            nodes, max_nodes, dot_path,
        )
    try:
        data = graph.pipe(format=format)
    except (graphviz.CalledProcessError, BrokenPipeError) as error:
        dot_path = _keep_dot_text(graph, path)
        raise DotFailedError(
            f"cannot render {path}: `dot -T{format}` {_how_it_failed(error)} on a graph of {nodes:,} nodes; "
            f"the DOT text is in {dot_path}"
        ) from None
    except graphviz.ExecutableNotFound:
        dot_path = _keep_dot_text(graph, path)
        raise DotNotFoundError(
            f"cannot render {path}: graphviz's `dot` program was not found; the DOT text is in {dot_path}. "
            f"To draw it, {INSTALL_DOT}, then run `dot -T{format} {dot_path} -o {path}`"
        ) from None
    write_atomically(path, lambda file: file.write(data))
    return path


def render(output, path, format=None, max_nodes=MAX_LAYOUT_NODES, **options):
    """Draw the graph of `output` (options as `draw_graph`) and write it to `path` (`max_nodes` as `write_graph`);
    returns the path. `render(loss, "model.svg", collapse="modules")` gives one box per layer.
    """
    return write_graph(draw_graph(output, **options), path, format, max_nodes)


def render_with_gradients(loss, path, format=None, collapse="modules", **options):
    """Run `loss.backward()`, keeping every intermediate gradient, and write the graph showing them all.

    For a demo after training: `render_with_gradients(loss, "model.svg")` draws one box per layer with its
    output and gradient. The backward adds to the parameters' `.grad` as usual. Returns the path written.
    """
    grads = backward_recording_grads(loss)
    return render(loss, path, format, collapse=collapse, grads=grads, **options)


def _keep_dot_text(graph, path):
    dot_path = os.path.splitext(path)[0] + ".dot"
    write_atomically(dot_path, lambda file: file.write(graph.source.encode()))
    return dot_path


def _how_it_failed(error):
    """`was killed by SIGSEGV` or `exited with status 1: <its first line of stderr>`."""
    if isinstance(error, BrokenPipeError):
        return "stopped reading its input"
    if error.returncode < 0:
        try:
            name = signal.Signals(-error.returncode).name
        except ValueError:
            name = f"signal {-error.returncode}"
        return f"was killed by {name}"
    stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr or ""
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    return f"exited with status {error.returncode}" + (f": {first}" if first else "")


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
