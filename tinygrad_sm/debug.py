"""Backward, one node at a time: `BackwardStepper` pauses on the engine's own backward loop; `DebuggerShell`
is its pdb-like prompt (`tinygrad-sm debug`); `detect_anomaly()` names the node where a NaN or Inf first appears.
"""

import cmd
import shlex

import numpy as np

from tinygrad_sm.gradcheck import check_node, rerun_forward
from tinygrad_sm.tensor import backward_steps, call_backward, seed_gradient
from tinygrad_sm.walk import ModuleIndex, backward_order, node_outputs, topo_order
from tinygrad_sm.watch import AnomalyError, detect_anomaly

__all__ = ["AnomalyError", "BackwardStep", "BackwardStepper", "DebuggerShell", "detect_anomaly"]

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
        self._loop = backward_steps(output, seed_gradient(output, grad))

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


COMMANDS = ("step", "continue", "break", "print", "grad", "jacobian", "check", "graph", "list", "where", "help", "quit")


class DebuggerShell(cmd.Cmd):
    """A pdb-like prompt over a BackwardStepper. `cmdloop()` at a terminal, `run_script(lines)` otherwise."""

    prompt = "(tgsm) "

    def __init__(self, stepper, stdout=None):
        super().__init__(stdout=stdout)
        self.stepper = stepper
        self.breakpoints = set()
        self.failed_checks = 0
        self.mistakes = 0  # unknown commands and nodes: a script with one exits 2
        self.modules = ModuleIndex(topo_order(stepper.output, requiring_grad=False))

    # ---- running commands ----
    def run_script(self, lines):
        """Run commands without a terminal, each line split at ";" and echoed after the prompt; stops at `quit`."""
        for line in lines:
            for command in line.split(";"):
                command = command.strip()
                if not command:
                    continue
                self.say(self.prompt + command)
                if self.onecmd(command):
                    return

    def onecmd(self, line):
        if line == "EOF":  # Ctrl-D at the prompt, or the end of piped input
            self.say("")
            return True
        try:
            return super().onecmd(line)
        except (ValueError, RuntimeError, OSError, FloatingPointError, ImportError) as error:
            self.say(f"{line.split()[0] if line.split() else line}: {error}")
            return False

    def say(self, text):
        print(text, file=self.stdout)

    def default(self, line):
        self.mistakes += 1
        self.say(f"unknown command {line.split()[0]!r}; commands: step [n], continue, break OP, print [NODE], "
                 f"grad [NODE], jacobian [NODE], check [NODE], graph FILE, list, where, help [COMMAND], quit")

    def emptyline(self):
        """An empty line repeats the last command, as in pdb."""
        return self.onecmd(self.lastcmd) if self.lastcmd else False

    # ---- describing nodes ----
    def where_made(self, node):
        """`made at file:line in layers.0: Linear` (the innermost module whose forward made it)."""
        parts = [f"made at {node.where}"] if node.made_at is not None else []
        if node.scope:
            parts.append("in " + self.modules.label(node.scope[-1]))
        return " ".join(parts) or "made outside user code"

    def label(self, node):
        return f"#{self.stepper.index_of(node)} {node.op_name}"

    def parent_label(self, parent):
        if parent.grad_fn is not None:
            return self.label(parent.grad_fn)
        kind = "leaf" if parent.requires_grad else "constant"
        return f"{kind} {parent.name}" if parent.name else kind

    def show_step(self, step):
        self.say(f"{self.label(step.node)}  output shape {step.shape}  {self.where_made(step.node)}")
        self.say(describe_array("grad_output", step.grad_output))
        for index, (parent, grad) in enumerate(zip(step.parents, step.grad_inputs)):
            target = f"to input {index} ({self.parent_label(parent)})"
            if grad is None:
                self.say(f"  {target}: shape {parent.shape} {parent.dtype}, takes no gradient")
            else:
                self.say(describe_array(target, grad))

    def show_finished(self):
        leaves = [t for t in topo_order(self.stepper.output, requiring_grad=False) if t.is_leaf and t.requires_grad]
        self.say(f"backward finished: {len(self.stepper.steps)} nodes run; .grad set on {len(leaves)} leaves")
        for index, leaf in enumerate(leaves):
            if leaf.grad is not None:
                self.say(describe_array(f".grad of {leaf.name or f'leaf {index}'}", leaf.grad.data))

    def find_node(self, text):
        """A node by its number (`3` or `#3`) or op name (the first in backward order); the current if empty."""
        if not text:
            if self.stepper.current is None:
                raise ValueError("no current node yet: step first, or name a node (a number from `list` or an op)")
            return self.stepper.current.node
        number = text.lstrip("#")
        if number.isdigit():
            if int(number) >= len(self.stepper.nodes):
                self.mistakes += 1
                raise ValueError(f"no node #{number}; this graph has nodes #0 to #{len(self.stepper.nodes) - 1}")
            return self.stepper.nodes[int(number)]
        for node in self.stepper.nodes:
            if node.op_name.lower() == text.lower():
                return node
        names = ", ".join(sorted({node.op_name for node in self.stepper.nodes}))
        self.mistakes += 1
        raise ValueError(f"no node {text!r}: give a number from `list` or an op name ({names})")

    def step_of(self, node):
        for step in self.stepper.steps:
            if step.node is node:
                return step
        raise ValueError(f"{self.label(node)} has not run yet: `step` or `continue` to reach it")

    # ---- the commands ----
    def do_step(self, arg):
        """step [n]: run the next n nodes of backward (default 1) and show what came in and what went out."""
        if arg.strip() and not arg.strip().isdigit():
            self.say(f"step takes a count of nodes, e.g. `step 3`; got {arg.strip()!r}")
            return
        count = int(arg) if arg.strip() else 1
        if self.stepper.finished:
            self.say("backward has finished; nothing left to step (`quit` to leave)")
            return
        for _ in range(count):
            step = self.stepper.step()
            if step is None:
                break
            self.show_step(step)
        if self.stepper.finished:
            self.show_finished()

    def do_continue(self, arg):
        """continue: run until a node whose op has a breakpoint (see `break`) has run, or to the end."""
        if self.stepper.finished:
            self.say("backward has finished; nothing left to run")
            return
        for step in self.stepper:
            if step.op_name in self.breakpoints:
                self.say(f"breakpoint at {step.op_name}:")
                self.show_step(step)
                return
            largest = float(np.abs(step.grad_output).max()) if step.grad_output.size else 0.0
            self.say(f"{self.label(step.node)}  output shape {step.shape}  grad_output max |value| {largest:.4f}")
        self.show_finished()


    def do_break(self, arg):
        """break OP: stop `continue` after the next node of op OP (e.g. Softmax) has run; `break` lists them."""
        name = arg.strip()
        if not name:
            self.say("breakpoints: " + (", ".join(sorted(self.breakpoints)) or "none"))
            return
        names = {node.op_name.lower(): node.op_name for node in self.stepper.nodes}
        if name.lower() not in names:
            self.say(f"no op {name!r} in this graph; its ops: {', '.join(sorted(names.values()))}")
            return
        self.breakpoints.add(names[name.lower()])
        self.say(f"breakpoint set on {names[name.lower()]}")

    def do_print(self, arg):
        """print [NODE]: the value and shape of NODE's output (a number from `list`, or an op name); default current."""
        node = self.find_node(arg.strip())
        self.say(f"{self.label(node)}  {self.where_made(node)}")
        self.say(describe_array("output", self.stepper.outputs[id(node)].data))


    def do_grad(self, arg):
        """grad [NODE]: the gradient that came into NODE and what it sent to each input; default current."""
        self.show_step(self.step_of(self.find_node(arg.strip())))

    def do_jacobian(self, arg):
        """jacobian [NODE]: the node's full Jacobian d output / d input (up to 4,096 entries each); default current."""
        step = self.step_of(self.find_node(arg.strip()))
        matrices = step.local_jacobian()
        matrices = matrices if isinstance(matrices, tuple) else (matrices,)
        self.say(f"{self.label(step.node)}: Jacobian of the output (size {int(np.prod(step.shape))}) per input")
        for index, matrix in enumerate(matrices):
            if matrix is not None:
                self.say(describe_array(f"d output / d input {index}", matrix))

    def do_check(self, arg):
        """check [NODE]: the node's backward against finite differences of its forward, in float64; default current."""
        step = self.step_of(self.find_node(arg.strip()))
        result = step.check()
        self.failed_checks += not result.ok
        self.say(f"check {result}")

    def do_graph(self, arg):
        """graph FILE: write the picture, current node highlighted, to FILE (.svg, .png, .pdf or .dot)."""
        from tinygrad_sm.viz import write_graph  # rendering sits above the engine: imported only when drawn

        words = shlex.split(arg)
        if len(words) != 1:
            self.say("graph needs one FILE, e.g. `graph backward.svg` (.svg, .png, .pdf or .dot)")
            return
        self.say(f"wrote {write_graph(self.stepper.graph(), words[0])}")

    def do_list(self, arg):
        """list: the nodes backward has still to run, in order."""
        pending = self.stepper.pending
        if not pending:
            self.say("no nodes left: backward has finished")
            return
        for node in pending:
            shape = self.stepper.outputs[id(node)].shape
            self.say(f"{self.label(node)}  output shape {shape}  {self.where_made(node)}")


    def do_where(self, arg):
        """where: the current node, where user code made it, and how far backward has got."""
        stepper, pending = self.stepper, self.stepper.pending
        upcoming = f"; next: {self.label(pending[0])}" if pending else ""
        if stepper.current is None:
            self.say(f"backward has not started: {len(stepper.nodes)} nodes to run{upcoming}")
            return
        node = stepper.current.node
        progress = f"step {len(stepper.steps)} of {len(stepper.nodes)}{upcoming}"
        self.say(f"{self.label(node)}  {self.where_made(node)}  ({progress})")


    def do_help(self, arg):
        """help [COMMAND]: every command in one line each, or the one COMMAND."""
        name = arg.strip()
        if name:
            command = getattr(self, f"do_{name}", None)
            if command is None:
                self.mistakes += 1
            self.say(command.__doc__ if command is not None else f"no command {name!r}; `help` lists them")
            return
        for name in COMMANDS:
            self.say("  " + getattr(self, f"do_{name}").__doc__)
        self.say("  NODE is a number from `list` (#0 is the output's node) or an op name; numbers show 4 decimals")

    def do_quit(self, arg):
        """quit: leave the debugger."""
        return True
