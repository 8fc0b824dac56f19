"""Drawing graphs: node and edge counts derived by hand, labels, clusters, styles, and real renders by `dot`."""

import os
import re
import struct
import xml.etree.ElementTree as ElementTree

import graphviz
import numpy as np
import pytest

from tinygrad_sm import Tensor, nn, viz
from tinygrad_sm import functional as F
from tinygrad_sm.viz import (
    HIGHLIGHT_BORDER,
    NONFINITE_FILL,
    DotFailedError,
    DotNotFoundError,
    GraphTooLargeError,
    draw_graph,
    render,
    render_with_gradients,
    to_dot,
    write_graph,
)
from tinygrad_sm.walk import backward_recording_grads, topo_order

NODE_LINE = re.compile(r"^\s*(t\d+|m\d+) \[(.*)\]$")
EDGE_LINE = re.compile(r"^\s*(t\d+|m\d+) -> (t\d+|m\d+)(?! \[style=invis\])")
CLUSTER_LABEL = re.compile(r'\blabel="([^"]*)"')


def parse_dot(dot):
    """{node: (attributes text, [enclosing cluster labels, outermost first])} and the list of drawn edges."""
    nodes, edges, clusters = {}, [], []
    for line in dot.splitlines():
        if line.strip().startswith("subgraph cluster_") and "legend" not in line:
            clusters.append(None)
        elif line.strip() == "}" and clusters:
            clusters.pop()
        elif line.strip().startswith("graph [") and clusters and clusters[-1] is None:
            clusters[-1] = CLUSTER_LABEL.search(line).group(1)
        elif match := NODE_LINE.match(line):
            nodes[match.group(1)] = (match.group(2), [c for c in clusters if c])
        elif match := EDGE_LINE.match(line):
            edges.append((match.group(1), match.group(2)))
    return nodes, edges


def classes(nodes):
    found = {}
    for name, (attrs, _) in nodes.items():
        kind = re.search(r'class=(?:"([a-z ]+)"|([a-z]+))', attrs)
        kind = kind.group(1) or kind.group(2)
        found.setdefault(kind, []).append(name)
    return found


def node_with(nodes, text):
    """The one node whose label contains `text`."""
    matching = [name for name, (attrs, _) in nodes.items() if text in attrs]
    assert len(matching) == 1, (text, matching)
    return matching[0]


def small_mlp_loss():
    """MLP 4-8-3 (relu) and softmax cross-entropy on 5 rows.

    By hand: each Linear makes one Linear node (x Wᵀ + b) and ReLU one, plus the loss: 1 + 1 + 1 + 1 = 4
    op nodes. Leaves: x, the labels and 4 parameters = 6. Edges, one per input slot: Linear 3 per layer (6),
    Relu 1, loss 2 = 9.
    """
    rng = np.random.default_rng(0)
    model = nn.MLP([4, 8, 3], rng=rng)
    x = Tensor(rng.standard_normal((5, 4)).astype(np.float32))
    loss = F.softmax_cross_entropy(model(x), np.array([0, 1, 2, 1, 0]))
    return loss, model


def test_known_network_has_the_hand_counted_nodes_and_edges():
    loss, _ = small_mlp_loss()
    nodes, edges = parse_dot(to_dot(loss))
    kinds = classes(nodes)
    assert len(kinds["op"]) + len(kinds["op output"]) == 4
    assert len(kinds["op output"]) == 1
    assert len(kinds["parameter"]) == 4 and len(kinds["input"]) == 2
    assert len(nodes) == 10
    assert len(edges) == 9


def test_labels_name_ops_shapes_dtypes_and_parameter_paths():
    loss, model = small_mlp_loss()
    dot = to_dot(loss)
    for op in ("Linear", "Relu", "SoftmaxCrossEntropy"):
        assert f"<B>{op}</B>" in dot
    for path, parameter in model.named_parameters():
        nodes, _ = parse_dot(dot)
        attrs = nodes[node_with(nodes, f"<B>{path}</B>")][0]
        assert f"{parameter.shape} float32" in attrs and 'class="parameter"' in attrs
    assert "(5, 8) float32" in dot and "(5, 3) float32" in dot and "(5,) int64" in dot
    assert "<B>input</B>" in dot and "OUTPUT" in dot and "reduction=mean" in dot


def test_clusters_carry_module_paths_and_hold_their_nodes():
    loss, _ = small_mlp_loss()
    nodes, _ = parse_dot(to_dot(loss))
    assert nodes[node_with(nodes, "<B>layers.0.weight</B>")][1] == ["MLP", "layers.0: Linear"]
    assert nodes[node_with(nodes, "<B>Relu</B>")][1] == ["MLP", "layers.1: ReLU"]
    linears = [clusters for attrs, clusters in nodes.values() if "<B>Linear</B>" in attrs]
    assert sorted(c[-1] for c in linears) == ["layers.0: Linear", "layers.2: Linear"]
    assert nodes[node_with(nodes, "SoftmaxCrossEntropy")][1] == []
    assert nodes[node_with(nodes, "(5, 4) float32")][1] == []


def test_highlight_and_faded_styles_only_on_the_named_nodes():
    loss, _ = small_mlp_loss()
    relu = next(t for t in topo_order(loss) if t.grad_fn is not None and t.grad_fn.op_name == "Relu")
    nodes, _ = parse_dot(to_dot(loss, highlight=[relu.grad_fn], faded=[loss]))
    highlighted = [n for n, (attrs, _) in nodes.items() if 'penwidth="4"' in attrs]
    assert highlighted == [node_with(nodes, "<B>Relu</B>")]
    assert f'color="{HIGHLIGHT_BORDER}"' in nodes[highlighted[0]][0]
    faded = [n for n, (attrs, _) in nodes.items() if "fontcolor=" in attrs]
    assert faded == [node_with(nodes, "SoftmaxCrossEntropy")]
    assert "COLOR=" not in nodes[faded[0]][0]  # every line greyed, not just the border
    single, _ = parse_dot(to_dot(loss, highlight=relu))
    assert [n for n, (attrs, _) in single.items() if 'penwidth="4"' in attrs] == highlighted


def test_values_scalar_small_array_and_summary():
    big = Tensor(np.arange(12, dtype=np.float64).reshape(3, 4) - 2.5, requires_grad=True)
    small = Tensor(np.array([1.5, -2.0, 3.25]), requires_grad=True)
    loss = (big.sum() * small).sum()
    nodes, _ = parse_dot(to_dot(loss))
    big_attrs = nodes[node_with(nodes, "(3, 4) float64")][0]
    values = big.data
    assert f"min {values.min():.4g}  mean {values.mean():.4g}  max {values.max():.4g}" in big_attrs
    assert "[1.5, -2, 3.25]" in nodes[node_with(nodes, "[1.5, -2, 3.25]")][0]
    total = (values.sum() * small.data).sum()
    assert f"= {total:.4g}" in nodes[node_with(nodes, "OUTPUT")][0]
    bare = to_dot(loss, show_data=False, show_grad=False)
    assert "min " not in bare and "= " not in bare and "grad" not in bare.split("cluster_legend")[0]


def test_gradient_not_computed_is_drawn_unlike_a_zero_gradient():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True, name="w")
    loss = (w * 0.0).sum()
    before, _ = parse_dot(to_dot(loss))
    before_attrs = before[node_with(before, "<B>w</B>")][0]
    assert "grad not computed yet" in before_attrs and "dashed" in before_attrs
    loss.backward()
    np.testing.assert_array_equal(w.grad.data, [0.0, 0.0])
    after, _ = parse_dot(to_dot(loss))
    after_attrs = after[node_with(after, "<B>w</B>")][0]
    assert "grad = 0 everywhere" in after_attrs
    assert "dashed" not in after_attrs and "not computed" not in after_attrs


def test_gradients_after_backward_match_the_hand_derived_ones():
    w = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True, name="w")
    loss = (w * w).sum()  # d/dw = 2w
    grads = backward_recording_grads(loss)
    nodes, _ = parse_dot(to_dot(loss, grads=grads))
    assert "grad [1, -2, 4]" in nodes[node_with(nodes, "<B>w</B>")][0]
    assert "grad [1, 1, 1]" in nodes[node_with(nodes, "<B>Mul</B>")][0]  # d(sum)/d(w*w) = 1
    assert "grad = 1" in nodes[node_with(nodes, "OUTPUT")][0]
    without, _ = parse_dot(to_dot(loss))
    assert "grad" not in without[node_with(without, "<B>Mul</B>")][0]  # intermediate grads are not kept


def test_nan_and_inf_are_drawn_red():
    w = Tensor(np.array([1.0, np.nan, 2.0]), requires_grad=True, name="w")
    v = Tensor(np.array([1.0, 2.0]), requires_grad=True, name="v")
    loss = (w * 2).sum() + (v * np.inf).sum()
    nodes, _ = parse_dot(to_dot(loss))
    red = {n for n, (attrs, _) in nodes.items() if f'fillcolor="{NONFINITE_FILL}"' in attrs}
    assert node_with(nodes, "<B>w</B>") in red and node_with(nodes, "[2, nan, 4]") in red
    assert node_with(nodes, "[inf, inf]") in red and node_with(nodes, "<B>v</B>") not in red
    assert len(red) == 7  # w, inf, both products, both sums, the output: every node but v and 2
    ok = Tensor(np.ones((4, 4)), requires_grad=True, name="ok")
    ok.grad = Tensor(np.full((4, 4), np.inf))
    nodes, _ = parse_dot(to_dot(ok.sum()))
    attrs = nodes[node_with(nodes, "<B>ok</B>")][0]
    assert f'fillcolor="{NONFINITE_FILL}"' in attrs and "16 Inf" in attrs


def test_constants_names_and_op_attributes():
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True, name="pixels")
    y = (x * 2 + 0.5).sum(axis=1, keepdims=True).reshape(-1)[:1]
    out = y.sum() + x[:, 0].sum()
    nodes, _ = parse_dot(to_dot(out))
    kinds = classes(nodes)
    assert sorted(nodes[n][0].split("<B>")[1].split("</B>")[0] for n in kinds["constant"]) == ["0.5", "2"]
    assert len(kinds["input"]) == 1 and "<B>pixels</B>" in nodes[kinds["input"][0]][0]
    dot = to_dot(out)
    assert "axis=1, keepdims=True" in dot and "shape=(-1,)" in dot
    assert "index=[:1]" in dot and "index=[:, 0]" in dot


def test_a_value_used_twice_gets_one_edge_per_input_slot():
    a = Tensor(np.array(1.5), requires_grad=True, name="a")
    b = a + a
    c = (b + b) * a
    nodes, edges = parse_dot(to_dot(c))
    a_node, b_node = node_with(nodes, "<B>a</B>"), node_with(nodes, "= 3<")
    assert edges.count((a_node, b_node)) == 2
    assert len(edges) == 6 and len(nodes) == 4


def test_collapse_draws_each_module_as_one_node():
    loss, _ = small_mlp_loss()
    nodes, edges = parse_dot(to_dot(loss, collapse="modules"))
    kinds = classes(nodes)
    labels = sorted(re.search(r"<B>([^<]+)</B>", nodes[n][0]).group(1) for n in kinds["module"])
    assert labels == ["layers.0: Linear", "layers.1: ReLU", "layers.2: Linear"]
    assert len(nodes) == 6  # x, 3 modules, labels, loss
    assert len(edges) == 5  # x -> layers.0 -> layers.1 -> layers.2 -> loss <- labels
    linear = nodes[node_with(nodes, "<B>layers.0: Linear</B>")][0]
    assert "1 op: Linear" in linear and "2 parameters, 40 values" in linear


def deep_model_loss(blocks=4, depth=125, width=8):
    """A Sequential of `blocks` MLPs of `depth` Linear layers: 4 * depth - 1 nodes each, about 2,000 in all."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(*[nn.MLP([width] * (depth + 1), rng=rng) for _ in range(blocks)])
    x = Tensor(rng.standard_normal((4, width)).astype(np.float32))
    return F.softmax_cross_entropy(model(x), np.arange(4) % width)


def test_collapse_cuts_a_2000_node_graph_to_a_handful():
    loss = deep_model_loss()
    full, full_edges = parse_dot(to_dot(loss))
    assert len(full) == len(topo_order(loss, requiring_grad=False)) == 4 * (4 * 125 - 1) + 3
    collapsed, edges = parse_dot(to_dot(loss, collapse="modules"))
    assert len(collapsed) == 7  # input, 4 blocks, labels, loss
    assert len(classes(collapsed)["module"]) == 4 and len(edges) == 6


def test_render_svg_parses_as_xml_with_the_labels(tmp_path):
    loss, _ = small_mlp_loss()
    backward_recording_grads(loss)
    path = render(loss, tmp_path / "graph.svg")
    root = ElementTree.parse(path).getroot()
    texts = {element.text for element in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"layers.0.weight", "layers.2.bias", "Linear", "Relu", "SoftmaxCrossEntropy", "legend"} <= texts
    node_classes = [g.get("class") for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class", "")
                    .startswith("node")]
    assert node_classes.count("node parameter") == 4 and node_classes.count("node op") == 3
    assert [name for name in os.listdir(tmp_path)] == ["graph.svg"]  # written atomically: no temp file left


def test_render_png_has_the_signature_and_a_sensible_size(tmp_path):
    loss, _ = small_mlp_loss()
    path = render(loss, str(tmp_path / "graph.png"), collapse="modules")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 200 < width < 5000 and 200 < height < 5000


def test_write_dot_and_pdf_and_formats(tmp_path):
    loss, _ = small_mlp_loss()
    graph = draw_graph(loss)
    dot_path = write_graph(graph, tmp_path / "g.dot")
    assert open(dot_path).read() == graph.source
    (tmp_path / "touched").write_bytes(b"")
    assert os.stat(dot_path).st_mode & 0o777 == (tmp_path / "touched").stat().st_mode & 0o777  # not mkstemp's 0600
    assert open(write_graph(graph, tmp_path / "g.pdf"), "rb").read()[:5] == b"%PDF-"
    assert open(write_graph(graph, tmp_path / "plain", format="svg")).read().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="suffix .png but the format asked for is svg"):
        write_graph(graph, tmp_path / "g.png", format="svg")
    with pytest.raises(ValueError, match="cannot tell the format"):
        write_graph(graph, tmp_path / "g.txt")
    with pytest.raises(ValueError, match="format must be one of"):
        write_graph(graph, tmp_path / "g", format="gif")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_graph(graph, tmp_path / "missing" / "g.svg")


def test_missing_dot_says_how_to_install_and_still_writes_the_dot_text(tmp_path, monkeypatch):
    loss, _ = small_mlp_loss()
    graph = draw_graph(loss)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DotNotFoundError, match="apt-get install graphviz") as raised:
        write_graph(graph, tmp_path / "graph.png")
    assert str(tmp_path / "graph.dot") in str(raised.value)
    assert open(tmp_path / "graph.dot").read() == graph.source
    assert not os.path.exists(tmp_path / "graph.png")
    bundle = graph._repr_mimebundle_()
    assert "apt-get install graphviz" in bundle["text/plain"]


def test_jupyter_shows_a_tensor_graph_inline_as_svg():
    loss, _ = small_mlp_loss()
    graph = draw_graph(loss, collapse="modules")
    assert isinstance(graph, graphviz.Digraph)
    svg = graph._repr_mimebundle_()["image/svg+xml"]
    assert "<svg" in svg and "layers.0: Linear" in svg


def test_bad_options_raise_clear_errors():
    loss, _ = small_mlp_loss()
    with pytest.raises(TypeError, match="output must be a Tensor"):
        draw_graph(np.ones(3))
    with pytest.raises(ValueError, match="rankdir must be one of"):
        draw_graph(loss, rankdir="XY")
    with pytest.raises(ValueError, match="collapse must be None or 'modules'"):
        draw_graph(loss, collapse="layers")
    with pytest.raises(ValueError, match="not part of this graph"):
        draw_graph(loss, highlight=[Tensor(np.ones(2))])
    with pytest.raises(TypeError, match="highlight takes nodes"):
        draw_graph(loss, highlight=["MatMul"])
    with pytest.raises(TypeError, match="grads must be a dict"):
        draw_graph(loss, grads=[1, 2])


def legend_entries(dot):
    return re.findall(r"^\t\tlegend_(\w+) \[", dot.split("subgraph cluster_legend")[1], re.MULTILINE)


def test_rankdir_and_the_legend_lists_only_what_is_drawn():
    loss, _ = small_mlp_loss()
    assert "rankdir=LR" in to_dot(loss, rankdir="LR")
    assert legend_entries(to_dot(loss)) == ["parameter", "input", "op", "output", "grad_pending"]
    assert legend_entries(to_dot(loss, show_grad=False)) == ["parameter", "input", "op", "output"]
    relu = next(t for t in topo_order(loss) if t.grad_fn is not None and t.grad_fn.op_name == "Relu")
    entries = legend_entries(to_dot(loss, collapse="modules", highlight=relu, faded=[loss]))
    assert entries == ["input", "output", "module", "current", "faded", "grad_pending"]
    legend = to_dot(loss, highlight=relu, faded=[loss]).split("subgraph cluster_legend")[1]
    assert "current node" in legend and "pending: backward" in legend and "number" not in legend
    w = Tensor(np.array([1.0, np.nan]), requires_grad=True, name="w")
    assert legend_entries(to_dot((w * 2).sum())) == ["input", "constant", "op", "output", "grad_pending", "nonfinite"]


def cluster_extents(svg_path):
    """{cluster label: (top y, bottom y)} of the clusters dot drew."""
    extents = {}
    for group in ElementTree.parse(svg_path).getroot().iter("{http://www.w3.org/2000/svg}g"):
        if group.get("class") == "cluster":
            label = next(group.iter("{http://www.w3.org/2000/svg}text")).text
            outline = next(e for e in group if e.tag.endswith(("path", "polygon")))
            points = outline.get("d") or outline.get("points")
            ys = [float(y) for _, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", points)]
            extents[label] = (min(ys), max(ys))
    return extents


@pytest.mark.parametrize("rankdir", ["TB", "BT"])
def test_the_layers_are_drawn_one_after_the_other(rankdir, tmp_path):
    loss, _ = small_mlp_loss()
    extents = cluster_extents(render(loss, tmp_path / "mlp.svg", rankdir=rankdir))
    layers = [extents[f"layers.{i}: {name}"] for i, name in enumerate(("Linear", "ReLU", "Linear"))]
    if rankdir == "BT":
        layers.reverse()
    assert all(upper[1] < lower[0] for upper, lower in zip(layers, layers[1:])), layers  # no two side by side
    order = [line for line in to_dot(loss).splitlines() if "style=invis" in line and "legend" not in line]
    assert len(order) == 2  # the Relu output above layers.2's weight and bias


def test_render_with_gradients_runs_backward_and_shows_every_gradient(tmp_path):
    loss, model = small_mlp_loss()
    path = render_with_gradients(loss, tmp_path / "demo.svg")
    texts = [t.text or "" for t in ElementTree.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert "layers.0: Linear" in texts and "layers.2: Linear" in texts and "grad = 1" in texts
    assert sum(t.startswith("grad min") for t in texts) == 3  # the output of each of the three modules
    assert all(parameter.grad is not None for parameter in model.parameters())
    for name, parameter in model.named_parameters():  # the parameters' gradients, in their layer's box
        grad = parameter.grad.data
        stats = f"min {grad.min():.4g}  mean {grad.mean(dtype=np.float64):.4g}  max {grad.max():.4g}"
        if grad.size <= 6:  # a few values are shown one by one
            stats = "[" + ", ".join(f"{value:.4g}" for value in grad) + "]"
        assert f"{name.split('.')[-1]} grad {stats}" in [text.replace("\xa0", " ") for text in texts]


def fake_dot(tmp_path, monkeypatch, script):
    """A `dot` first on PATH that runs `script` (a shell line) instead of graphviz."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "dot").write_text(f"#!/bin/sh\n{script}\n")
    (folder / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_node_count_is_the_boxes_drawn():
    loss, _ = small_mlp_loss()
    assert draw_graph(loss).node_count == 10 and draw_graph(loss, collapse="modules").node_count == 6


def test_a_graph_past_max_nodes_is_refused_before_dot_runs_and_its_dot_text_kept(tmp_path, monkeypatch):
    loss, _ = small_mlp_loss()
    graph = draw_graph(loss)
    fake_dot(tmp_path, monkeypatch, "touch ran; exit 1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GraphTooLargeError, match="10 nodes .* more than 9; the DOT text is in") as raised:
        write_graph(graph, tmp_path / "g.svg", max_nodes=9)
    assert raised.value.nodes == 10 and raised.value.limit == 9 and "\n" not in str(raised.value)
    assert (tmp_path / "g.dot").read_text() == graph.source
    assert not (tmp_path / "g.svg").exists() and not (tmp_path / "ran").exists()
    with pytest.raises(DotFailedError):  # max_nodes=None: dot runs (and this one fails)
        write_graph(graph, tmp_path / "g.svg", max_nodes=None)
    assert (tmp_path / "ran").exists()


def test_jupyter_does_not_lay_out_a_huge_graph(monkeypatch):
    loss, _ = small_mlp_loss()
    graph = draw_graph(loss)
    monkeypatch.setattr(viz, "MAX_LAYOUT_NODES", 9)
    (text,) = graph._repr_mimebundle_().values()
    assert text.startswith("not drawn inline: 10 nodes") and "collapse='modules'" in text


@pytest.mark.parametrize(
    "script, says",
    [("cat > /dev/null; kill -SEGV $$", "`dot -Tsvg` was killed by SIGSEGV on a graph of 10 nodes"),
     ("cat > /dev/null; echo 'Error: out of memory' >&2; echo more >&2; exit 3",
      "exited with status 3: Error: out of memory on")],
)
def test_dot_failing_is_one_line_and_keeps_the_dot_text(script, says, tmp_path, monkeypatch):
    loss, _ = small_mlp_loss()
    graph = draw_graph(loss)
    fake_dot(tmp_path, monkeypatch, script)
    with pytest.raises(DotFailedError) as raised:
        write_graph(graph, tmp_path / "g.svg")
    message = str(raised.value)
    assert says in message and "\n" not in message and str(tmp_path / "g.dot") in message
    assert (tmp_path / "g.dot").read_text() == graph.source and not (tmp_path / "g.svg").exists()


def test_dot_closing_its_input_early_is_a_failure_too(tmp_path, monkeypatch):
    loss, _ = small_mlp_loss()
    graph = draw_graph(loss)

    def broken_pipe(**options):  # what subprocess raised once when a failing `dot` exited before reading it all
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(graph, "pipe", broken_pipe)
    with pytest.raises(DotFailedError, match="`dot -Tpng` stopped reading its input on a graph of 10 nodes"):
        write_graph(graph, tmp_path / "g.png")
    assert (tmp_path / "g.dot").read_text() == graph.source


def test_draw_graph_of_a_create_graph_gradient_shows_the_backward_ops():
    rng = np.random.default_rng(0)
    layer = nn.Linear(4, 3)
    inputs = Tensor(rng.standard_normal((5, 4)))
    loss = F.softmax_cross_entropy(layer(inputs), np.array([0, 1, 2, 0, 1]))
    loss.backward(create_graph=True)
    graph = draw_graph(layer.weight.grad)
    ops = set(re.findall(r"<B>(\w+)</B>", graph.source))
    assert {"MatMul", "Transpose", "Exp", "LogSoftmax", "Sub"} <= ops
    assert graph.node_count == 13
    made_by = dict(re.findall(r"<B>(\w+)</B>.*?in (\w+)\.backward", graph.source))
    # the loss's backward, (exp(log_softmax(z)) - y) * g / N, then the Linear's gᵀ x
    assert made_by == {"LogSoftmax": "SoftmaxCrossEntropy", "Exp": "SoftmaxCrossEntropy",
                       "Sub": "SoftmaxCrossEntropy", "Mul": "SoftmaxCrossEntropy", "Transpose": "Linear",
                       "MatMul": "Linear"}
    assert "in SoftmaxCrossEntropy.backward: d/dz CE(softmax(z), y) = (softmax(z) - y) * g" in graph.source
    assert re.search(r'tooltip="Linear made at [^",]*"', graph.source)  # the forward node: no maker
