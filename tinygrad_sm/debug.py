"""Backward, one node at a time: `BackwardStepper` pauses on the engine's own backward loop (its pdb-like prompt,
`tinygrad-sm debug`, is `shell.DebuggerShell`); `detect_anomaly()` names the node where a NaN or Inf first appears.
"""


import numpy as np

from tinygrad_sm.gradcheck import check_node, rerun_forward
from tinygrad_sm.tensor import backward_steps, call_backward, seed_gradient
from tinygrad_sm.walk import backward_order, node_outputs
from tinygrad_sm.watch import AnomalyError, detect_anomaly

__all__ = ["AnomalyError", "BackwardStep", "BackwardStepper", "detect_anomaly"]

JACOBIAN_LIMIT = 4096  # local_jacobian: the most entries the node's output, and each input it differentiates, may have


def format_array(array, indent="    "):
    """`array`'s values at the fixed precision every debugger view uses (4 decimals; long arrays abbreviated)."""
    with np.printoptions(precision=4, floatmode="fixed", threshold=40, edgeitems=3, linewidth=100):
        text = np.array2string(np.asarray(array), separator=" ")
    return "\n".join(indent + line for line in text.splitlines())


def describe_array(label, array):
    """`label: shape (2, 3) float32` and, below it, the values."""
    array = np.asarray(array)
    return f"  {label}: shape {array.shape} {array.dtype}\n{format_array(array)}"


class BackwardStep:
    """One node, just run by backward: the gradient that came in (`grad_output`, summed from every path) and
    what it sent to each parent (`grad_inputs`, as `call_backward` checked them: of the parent's shape and dtype,
    None for a parent that needs no gradient)."""

    def __init__(self, index, node, output, grad_output, grad_inputs):
        self.index = index
        self.node = node
        self.output = output  # the tensor the node made
        self.grad_output = grad_output
        self.grad_inputs = grad_inputs

    op_name = property(lambda self: self.node.op_name)
    location = property(lambda self: self.node.location, doc="(file, line) of the user code that made the node.")
    parents = property(lambda self: self.node.parents)
    shape = property(lambda self: self.grad_output.shape, doc="The shape of the node's output.")

    def _differentiable(self):
        """Indexes of the parents that take a gradient."""
        return [i for i, needed in enumerate(self.node.needs_input_grad) if needed]

    def local_jacobian(self):
        """d output / d parent as a matrix (output size, parent size), row i = the node's own backward of e_i
        (rerun on the parents' values), for a node whose output and inputs have up to 4,096 entries each.
        One matrix for a one-input node, else a tuple (None for an input that takes no gradient)."""
        arrays = [parent.data for parent in self.parents]
        wanted = self._differentiable()
        sizes = [int(np.prod(self.shape))] + [arrays[i].size for i in wanted]
        if max(sizes) > JACOBIAN_LIMIT:
            raise ValueError(
                f"local_jacobian: #{self.index} {self.op_name} has an output of {sizes[0]} entries and inputs of "
                f"{', '.join(map(str, sizes[1:]))}; the limit is {JACOBIAN_LIMIT} each: use check() or grad_inputs"
            )
        ctx, output = rerun_forward(self.node, arrays)
        rows = {i: [] for i in wanted}
        for k in range(output.size):
            seed = np.zeros_like(output)
            seed.flat[k] = 1
            grads = call_backward(ctx, seed)
            for i in wanted:
                row = np.zeros(arrays[i].size, output.dtype) if grads[i] is None else np.reshape(grads[i], -1)
                rows[i].append(row)
        matrices = tuple(
            np.stack(rows[i]).reshape(output.size, arrays[i].size) if i in rows else None for i in range(len(arrays))
        )
        return matrices[0] if len(matrices) == 1 else matrices

    def check(self, eps=1e-6, atol=1e-7, rtol=1e-5):
        """This node alone, in float64: its backward of `grad_output` against d<grad_output, forward(x)>/dx by
        central differences, for every parent that takes a gradient (`gradcheck.check_node`). Returns a
        `gradcheck.NodeCheck`; `.ok` says whether every entry is within `atol + rtol * |finite differences|`."""
        return check_node(self.node, self.grad_output, eps=eps, atol=atol, rtol=rtol, position=self.index)

    def __repr__(self):
        return f"<BackwardStep #{self.index} {self.op_name} output shape {self.shape}>"


class BackwardStepper:
    """`output.backward(grad)`, one node per step. Nothing runs until you step; it pauses on the engine's own
    backward loop, so the order and the final `.grad` values are exactly those of `backward()`.

    `step(n)`, `run_until(predicate)` / `run_until(op="Softmax")`, `finish()`, or iterate over it;
    `current` is the last step run, `pending` the nodes still to run, `graph()` the picture.
    """

    def __init__(self, output, grad=None):
        self.output = output
        self.nodes = backward_order(output)
        self.outputs = node_outputs(output)  # {id(node): the tensor it made}
        self.steps = []
        self.finished = False
        self._index = {id(node): i for i, node in enumerate(self.nodes)}
        self._done = set()
        self._loop = backward_steps([output], [seed_gradient(output, grad)])

    @property
    def current(self):
        """The last BackwardStep run (None before the first step)."""
        return self.steps[-1] if self.steps else None

    @property
    def pending(self):
        """The nodes backward has still to run, in the order it will run them."""
        if self.finished:
            return []
        return [node for node in self.nodes if id(node) not in self._done]

    def index_of(self, node):
        """The node's place in backward order (0 is the output's node)."""
        return self._index[id(node)]

    def _advance(self):
        if self.finished:
            return None
        try:
            node, grad_output, grad_inputs = next(self._loop)
        except StopIteration:
            self.finished = True
            return None
        except BaseException:
            self.finished = True
            raise
        step = BackwardStep(self.index_of(node), node, self.outputs[id(node)], grad_output, grad_inputs)
        self.steps.append(step)
        self._done.add(id(node))
        if len(self._done) == len(self.nodes):
            next(self._loop, None)  # no node left: the loop now writes the last leaves' .grad and ends
            self.finished = True
        return step

    def __iter__(self):
        while (step := self._advance()) is not None:
            yield step

    def step(self, n=1):
        """Run the next `n` nodes; returns the last BackwardStep run (None if backward had already finished)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"step(n): n must be a positive integer, got {n!r}")
        last = None
        for _ in range(n):
            step = self._advance()
            if step is None:
                break
            last = step
        return last

    def run_until(self, predicate=None, *, op=None):
        """Run nodes until one named `op` (or one with `predicate(step)` true) has run, and return its step;
        None if backward finished first."""
        if (predicate is None) == (op is None):
            raise TypeError("run_until needs exactly one of predicate (a function of a BackwardStep) or op= (a name)")
        if op is not None:
            name = op if isinstance(op, str) else getattr(op, "__name__", repr(op))
            remaining = sorted({node.op_name for node in self.pending})
            if name not in remaining:
                raise ValueError(f"run_until: no pending node runs op {name!r}; pending ops: {', '.join(remaining)}")
        matches = predicate if op is None else (lambda step: step.op_name == name)
        for step in self:
            if matches(step):
                return step
        return None

    def finish(self):
        """Run every remaining node; returns the steps run. Afterwards `.grad` is what backward() leaves."""
        return list(self)

    def graph(self, **options):
        """The graph with finished nodes showing their gradients, the current node highlighted and the pending
        ones faded (a graphviz.Digraph from `viz.draw_graph`; `options` are passed on)."""
        from tinygrad_sm.viz import draw_graph  # rendering sits above the engine: imported only when drawn

        grads = {id(step.output): step.grad_output for step in self.steps}
        for step in self.steps:  # what finished nodes sent to leaves (the loop writes leaves' .grad later)
            for parent, grad in zip(step.parents, step.grad_inputs):
                if parent.is_leaf and parent.requires_grad and grad is not None:
                    grads[id(parent)] = grad + grads[id(parent)] if id(parent) in grads else grad
        highlight = (self.current.node,) if self.current is not None else ()
        return draw_graph(self.output, highlight=highlight, faded=tuple(self.pending), grads=grads, **options)

    def to_html(self, path):
        """Run backward to the end and write the step-through page (`page.write_page`) to `path`; returns it."""
        from tinygrad_sm.page import write_page  # the page draws with graphviz: imported only when written

        return write_page(self, path)

    def _repr_html_(self):
        """Jupyter: the step-through page of the steps run so far (the rest listed as pending), in a sandboxed frame."""
        import html

        from tinygrad_sm.page import render_page

        return (f'<iframe srcdoc="{html.escape(render_page(self))}" sandbox="allow-scripts" '
                f'style="width:100%;height:720px;border:1px solid #cbd5e1"></iframe>')

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.graph()._repr_mimebundle_(include=include, exclude=exclude)

    def __repr__(self):
        state = "finished" if self.finished else f"{len(self.pending)} pending"
        current = f", current #{self.current.index} {self.current.op_name}" if self.current else ""
        return f"<BackwardStepper: {len(self.steps)} of {len(self.nodes)} nodes run, {state}{current}>"
