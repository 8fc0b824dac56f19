"""`tinygrad-sm debug`'s pdb-like prompt over a `debug.BackwardStepper`: `cmdloop()` at a terminal,
`run_script(lines)` for `--commands` and piped input."""

import cmd
import shlex

import numpy as np

from tinygrad_sm.debug import describe_array
from tinygrad_sm.walk import ModuleIndex, topo_order

__all__ = ["DebuggerShell"]

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
