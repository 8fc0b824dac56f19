"""Drawing: graphs of about 500, 1,000 and 2,000 nodes to DOT text (target: 2,000 nodes under 1 s).

Each graph is a Sequential of 4 MLPs (width 8, batch 4), run forward and backward, the intermediate gradients
recorded. Columns: `to_dot` with values and gradients; the ratio against a bare DOT writer measured in the
same run (one f-string line per node and per edge, op names only: the floor of any DOT output); `to_dot`
with collapse="modules" and how many nodes that leaves; `dot -Tsvg` laying out the collapsed graph, and the
whole graph (what the size guard, `viz.MAX_LAYOUT_NODES`, is set from: `dot`'s time grows faster than the nodes).
"""

import shutil
import statistics
import time

import numpy as np

from tinygrad_sm import Tensor, nn
from tinygrad_sm import functional as F
from tinygrad_sm.viz import MAX_LAYOUT_NODES, draw_graph, to_dot
from tinygrad_sm.walk import backward_recording_grads, topo_order

BLOCKS, WIDTH = 4, 8


def deep_loss(depth):
    """4 MLPs of `depth` Linear layers each: 4 * (4 * depth - 1) + 3 tensors in the graph."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(*[nn.MLP([WIDTH] * (depth + 1), rng=rng) for _ in range(BLOCKS)])
    x = Tensor(rng.standard_normal((4, WIDTH)).astype(np.float32))
    return F.softmax_cross_entropy(model(x), np.arange(4))


def bare_dot(output):
    """The least a DOT writer can do: a line per tensor (op name) and a line per edge."""
    tensors = topo_order(output, requiring_grad=False)
    number = {id(tensor): index for index, tensor in enumerate(tensors)}
    lines = ["digraph {"]
    for tensor in tensors:
        name = tensor.grad_fn.op_name if tensor.grad_fn is not None else "leaf"
        lines.append(f'  t{number[id(tensor)]} [label="{name}"]')
        if tensor.grad_fn is not None:
            lines.extend(f"  t{number[id(p)]} -> t{number[id(tensor)]}" for p in tensor.grad_fn.parents)
    lines.append("}")
    return "\n".join(lines)


def median_seconds(fn, repeats):
    fn()
    spent = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def main():
    has_dot = shutil.which("dot") is not None
    print(f"{'nodes':>7}{'bare DOT ms':>13}{'to_dot ms':>11}{'x bare':>8}{'collapsed ms':>14}"
          f"{'nodes left':>12}{'dot -Tsvg ms':>14}{'whole, dot ms':>15}")
    for depth in (31, 63, 125):
        loss = deep_loss(depth)
        grads = backward_recording_grads(loss)
        nodes = len(topo_order(loss, requiring_grad=False))
        bare = median_seconds(lambda loss=loss: bare_dot(loss), 5)
        full = median_seconds(lambda loss=loss, grads=grads: to_dot(loss, grads=grads), 5)
        collapsed = median_seconds(lambda loss=loss, grads=grads: to_dot(loss, grads=grads, collapse="modules"), 5)
        left = to_dot(loss, collapse="modules").count('class="module"') + 3  # the modules, the input, labels, loss
        graph = draw_graph(loss, grads=grads, collapse="modules")
        whole = draw_graph(loss, grads=grads)
        layout, whole_layout = f"{'no dot':>14}", f"{'no dot':>15}"
        if has_dot:
            layout = f"{median_seconds(lambda graph=graph: graph.pipe(format='svg'), 3) * 1e3:14.1f}"
            whole_layout = f"{median_seconds(lambda graph=whole: graph.pipe(format='svg'), 1) * 1e3:15.1f}"
        print(f"{nodes:7d}{bare * 1e3:13.2f}{full * 1e3:11.1f}{full / bare:8.1f}{collapsed * 1e3:14.1f}"
              f"{left:12d}{layout}{whole_layout}")
    print(f"target: 2,000 nodes to DOT in under 1 s; dot is not run past {MAX_LAYOUT_NODES:,} nodes")


if __name__ == "__main__":
    main()
