"""`tinygrad-sm debug`'s pdb-like prompt over a `debug.BackwardStepper`: `cmdloop()` at a terminal,
`run_script(lines)` for `--commands` and piped input."""

import cmd
import collections
import itertools
import shlex

import numpy as np

from tinygrad_sm.debug import describe_array
from tinygrad_sm.viz_labels import made_at_text
from tinygrad_sm.walk import ModuleIndex, topo_order

__all__ = ["DebuggerShell", "ScriptMistake"]

COMMANDS = (
    "step", "continue", "break", "clear", "print", "grad", "jacobian", "check", "graph", "list", "where", "up", "down",
    "help", "quit",
)
SHORT_FORMS = {  # pdb's: backward has no calls to step over, so `next` is `step`
    "s": "step", "n": "step", "next": "step", "c": "continue", "cont": "continue", "b": "break", "cl": "clear",
    "p": "print", "l": "list", "w": "where", "bt": "where", "u": "up", "d": "down", "h": "help", "q": "quit",
}
LINES_SHOWN = 10  # a long listing shows this many lines at its start and at its end
STEPS_SHOWN = 3  # `step N` shows this many steps in full at the start and at the end
LIST_WINDOW = 20  # `list #N` shows this many nodes from #N on


class ScriptMistake(ValueError):
    """A command that names no command, node or op of this graph, takes other arguments, or cannot write its
    file: one line at the prompt; a script with one exits 2."""


def plural(count, word, many=None):
    """`1 node`, `3 nodes`; `many` for an irregular plural (`leaf`, `leaves`)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


class DebuggerShell(cmd.Cmd):
    """A pdb-like prompt over a BackwardStepper. `cmdloop()` at a terminal, `run_script(lines)` otherwise."""

    prompt = "(tgsm) "

    def __init__(self, stepper, stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.stepper = stepper
        self.breakpoints = {}  # number -> ("op", op name) or ("node", index in backward order)
        self.breakpoint_numbers = itertools.count(1)
        self.failed_checks = 0
        self.mistakes = 0  # unknown commands, nodes and ops, wrong arguments, files not written: a script exits 2
        self.modules = ModuleIndex(topo_order(stepper.output, requiring_grad=False))
        self.frame = None  # the node `up`/`down` selected (None: the current one)
        self._chain_via = None

    # ---- running commands ----
    def cmdloop(self, intro=None):
        """The prompt; Ctrl-C drops the line being typed (or stops the command running) and prompts again."""
        while True:
            try:
                super().cmdloop(intro)
                return
            except KeyboardInterrupt:
                self.say("\n--KeyboardInterrupt-- " + (self.stopped_early() or "(`quit` or Ctrl-D leaves)"))
                intro = ""

    def stopped_early(self):
        """What to say when backward's loop was stopped inside (Ctrl-C while it ran a node): it cannot resume."""
        ran, total = len(self.stepper.steps), len(self.stepper.nodes)
        if self.stepper.finished and ran < total:
            return f"backward was stopped after {ran:,} of {total:,} nodes and cannot go on; `quit` and start again"
        return None

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

    def parseline(self, line):
        name, arg, line = super().parseline(line)
        return SHORT_FORMS.get(name, name), arg, line

    def onecmd(self, line):
        if line == "EOF":  # Ctrl-D at the prompt, or the end of piped input
            self.say("")
            return True
        name = self.parseline(line)[0] or line
        try:
            return super().onecmd(line)
        except ScriptMistake as error:
            self.mistakes += 1
            self.say(f"{name}: {error}")
        except (ValueError, RuntimeError, OSError, FloatingPointError, ImportError) as error:
            self.say(f"{name}: {error}")
        return False

    def say(self, text):
        print(text, file=self.stdout)

    def say_paged(self, texts, hidden, head=LINES_SHOWN, tail=LINES_SHOWN):
        """Print the first `head` and the last `tail` of `texts` (an iterable, consumed once: it may run steps) and
        one line for those between, `... 99,983 nodes not shown (how to see them) ...`; `hidden` is (the word
        for one, for several, how to see them)."""
        last, count = collections.deque(maxlen=tail), 0
        for count, text in enumerate(texts, 1):
            if count <= head:
                self.say(text)
            else:
                last.append(text)
        left_out = count - head - len(last)
        if left_out > 0:
            self.say(f"... {plural(left_out, hidden[0], hidden[1])} not shown ({hidden[2]}) ...")
        for text in last:
            self.say(text)

    def default(self, line):
        self.mistakes += 1
        self.say(f"unknown command {line.split()[0]!r}; commands: {self.summary()}")

    def summary(self):
        return ("step [n], continue, break [OP|NODE], clear [N|OP|#NODE], print [NODE], grad [NODE], jacobian [NODE], "
                "check [NODE], graph FILE, list [all|NODE], where, up [n], down [n], help [COMMAND], quit")

    def emptyline(self):
        """An empty line repeats the last command, as in pdb."""
        return self.onecmd(self.lastcmd) if self.lastcmd else False

    def words(self, arg, command, most, expected):
        """The arguments, or a ScriptMistake when there are more than `most` (saying what `command` takes)."""
        words = arg.split()
        if len(words) > most:
            raise ScriptMistake(f"{command} takes {expected}; got {arg.strip()!r}")
        return words

    def count(self, arg, command):
        """A count argument (default 1), or a ScriptMistake saying a positive whole number was expected."""
        (text,) = self.words(arg, command, 1, "one count, e.g. `" + command + " 3`") or ["1"]
        if not text.isdigit() or int(text) < 1:
            raise ScriptMistake(f"{command} takes a count of nodes of at least 1, e.g. `{command} 3`; got {text!r}")
        return int(text)

    # ---- describing nodes ----
    def where_made(self, node):
        """`made at file:line in layers.0: Linear` (the innermost module whose forward made it), or `made outside
        user code` (as the picture's tooltips say)."""
        module = f" in {self.modules.label(node.scope[-1])}" if node.scope else ""
        return made_at_text(node) + module

    def label(self, node):
        return f"#{self.stepper.index_of(node)} {node.op_name}"

    def node_line(self, node):
        shape = self.stepper.outputs[id(node)].shape
        return f"{self.label(node)}  output shape {shape}  {self.where_made(node)}"

    def parent_label(self, parent):
        if parent.grad_fn is not None:
            return self.label(parent.grad_fn)
        kind = "leaf" if parent.requires_grad else "constant"
        return f"{kind} {parent.name}" if parent.name else kind

    def step_text(self, step):
        lines = [self.node_line(step.node), describe_array("grad_output", step.grad_output)]
        for index, (parent, grad) in enumerate(zip(step.parents, step.grad_inputs)):
            target = f"to input {index} ({self.parent_label(parent)})"
            if grad is None:
                lines.append(f"  {target}: shape {parent.shape} {parent.dtype}, takes no gradient")
            else:
                lines.append(describe_array(target, grad))
        return "\n".join(lines)

    def show_finished(self):
        leaves = [t for t in topo_order(self.stepper.output, requiring_grad=False) if t.is_leaf and t.requires_grad]
        self.say(f"backward finished: {plural(len(self.stepper.steps), 'node')} run; "
                 f".grad set on {plural(len(leaves), 'leaf', 'leaves')}")
        for index, leaf in enumerate(leaves):
            if leaf.grad is not None:
                self.say(describe_array(f".grad of {leaf.name or f'leaf {index}'}", leaf.grad.data))

    def node_number(self, text):
        """The index of node `3` or `#3`, or None if `text` is not a number; a ScriptMistake past the last node."""
        number = text.lstrip("#")
        if not number.isdigit():
            return None
        if int(number) >= len(self.stepper.nodes):
            raise ScriptMistake(f"no node #{number}; this graph has nodes #0 to #{len(self.stepper.nodes) - 1}")
        return int(number)

    def op_name(self, text):
        """The op name `text` means (any case), or a ScriptMistake listing this graph's ops."""
        names = {node.op_name.lower(): node.op_name for node in self.stepper.nodes}
        if text.lower() not in names:
            raise ScriptMistake(f"no op {text!r} in this graph; its ops: {', '.join(sorted(names.values()))}")
        return names[text.lower()]

    def find_node(self, arg, command):
        """A node by its number (`3` or `#3`) or op name (the first in backward order); without one, the node
        `up`/`down` selected, else the current one."""
        words = self.words(arg, command, 1, "at most one NODE (a number from `list` or an op name)")
        if not words:
            if self.frame is not None:
                return self.frame
            if self.stepper.current is None:
                raise ValueError("no current node yet: step first, or name a node (a number from `list` or an op)")
            return self.stepper.current.node
        number = self.node_number(words[0])
        if number is not None:
            return self.stepper.nodes[number]
        for node in self.stepper.nodes:
            if node.op_name.lower() == words[0].lower():
                return node
        names = ", ".join(sorted({node.op_name for node in self.stepper.nodes}))
        raise ScriptMistake(f"no node {words[0]!r}: give a number from `list` or an op name ({names})")

    def step_of(self, node):
        for step in self.stepper.steps:
            if step.node is node:
                return step
        raise ValueError(f"{self.label(node)} has not run yet: `step` or `continue` to reach it")

    def chain(self, node):
        """The nodes from the output's (#0) down to `node`, each the input of the one before: the shortest such
        path, as gradients came down it."""
        if self._chain_via is None:
            depth, self._chain_via = {}, {}
            for consumer in self.stepper.nodes:  # backward order: every node comes after all its consumers
                depth.setdefault(id(consumer), 0)
                for parent in consumer.parents:
                    below, length = parent.grad_fn, depth[id(consumer)] + 1
                    if below is not None and length < depth.get(id(below), float("inf")):
                        depth[id(below)] = length
                        self._chain_via[id(below)] = consumer
        chain = [node]
        while id(chain[-1]) in self._chain_via:
            chain.append(self._chain_via[id(chain[-1])])
        return chain[::-1]

    def ran(self, step):
        """A step has just run: `up`/`down` start again from it."""
        self.frame = None
        return step

    # ---- the commands ----
    def do_step(self, arg):
        """step [n] (s, n, next): run the next n nodes of backward (default 1); show what came in and went out."""
        count = self.count(arg, "step")
        if self.stepper.finished:
            self.say(self.stopped_early() or "backward has finished; nothing left to step (`quit` to leave)")
            return
        steps = (self.step_text(self.ran(self.stepper.step())) for _ in range(min(count, len(self.stepper.pending))))
        self.say_paged(steps, ("step", "steps", "`grad NODE` shows any node that has run"), STEPS_SHOWN, STEPS_SHOWN)
        if self.stepper.finished:
            self.show_finished()

    def do_continue(self, arg):
        """continue (c, cont): run until a node with a breakpoint (see `break`) has run, or to the end."""
        self.words(arg, "continue", 0, "no arguments")
        if self.stepper.finished:
            self.say(self.stopped_early() or "backward has finished; nothing left to run")
            return
        stopped = []

        def lines():
            for step in self.stepper:
                self.ran(step)
                hits = [number for number, (kind, value) in self.breakpoints.items()
                        if value == (step.op_name if kind == "op" else step.index)]
                if hits:
                    stopped.append((hits[0], step))
                    return
                largest = float(np.abs(step.grad_output).max()) if step.grad_output.size else 0.0
                yield f"{self.label(step.node)}  output shape {step.shape}  grad_output max |value| {largest:.4f}"

        self.say_paged(lines(), ("node", "nodes", "`grad NODE` shows any node that has run"))
        if stopped:
            number, step = stopped[0]
            self.say(f"breakpoint {number} at {self.breakpoint_text(number)}:")
            self.say(self.step_text(step))
            return
        self.show_finished()

    def do_break(self, arg):
        """break [OP|NODE] (b): stop `continue` after the next node of op OP (e.g. Softmax), or node #NODE of
        backward order, has run; `break` lists the breakpoints by number."""
        words = self.words(arg, "break", 1, "one op name or node number, e.g. `break Softmax` or `break 3`")
        if not words:
            listed = [f"{number} {self.breakpoint_text(number)}" for number in self.breakpoints]
            self.say("breakpoints: " + (", ".join(listed) or "none"))
            return
        number = self.node_number(words[0])
        if number is not None:
            node = self.stepper.nodes[number]
            if node not in self.stepper.pending:
                self.say(f"{self.label(node)} has already run; `list` shows the nodes still to run")
                return
            wanted = ("node", number)
        else:
            wanted = ("op", self.op_name(words[0]))
        for existing, breakpoint in self.breakpoints.items():
            if breakpoint == wanted:
                self.say(f"breakpoint {existing} is already at {self.breakpoint_text(existing)}")
                return
        number = next(self.breakpoint_numbers)
        self.breakpoints[number] = wanted
        self.say(f"breakpoint {number} at {self.breakpoint_text(number)}")

    def breakpoint_text(self, number):
        kind, value = self.breakpoints[number]
        return f"op {value}" if kind == "op" else f"node {self.label(self.stepper.nodes[value])}"

    def do_clear(self, arg):
        """clear [N|OP|#NODE] (cl): remove breakpoint number N, those on op OP or node #NODE; all without one."""
        words = self.words(arg, "clear", 1, "one breakpoint number, op name or #NODE, e.g. `clear 1`")
        if not words:
            chosen = list(self.breakpoints)
        elif words[0].isdigit():
            if int(words[0]) not in self.breakpoints:
                numbers = ", ".join(map(str, self.breakpoints)) or "none"
                raise ScriptMistake(f"no breakpoint {words[0]}; breakpoints: {numbers} (`break` lists them)")
            chosen = [int(words[0])]
        else:
            number = self.node_number(words[0])
            wanted = ("op", self.op_name(words[0])) if number is None else ("node", number)
            chosen = [existing for existing, breakpoint in self.breakpoints.items() if breakpoint == wanted]
            if not chosen:
                raise ScriptMistake(f"no breakpoint at {words[0]}; `break` lists them")
        for number in chosen:
            self.say(f"cleared breakpoint {number} at {self.breakpoint_text(number)}")
            del self.breakpoints[number]
        if not chosen:
            self.say("no breakpoints to clear")

    def do_print(self, arg):
        """print [NODE] (p): the value and shape of NODE's output (a number from `list`, or an op name); default
        the current node (or the one `up`/`down` selected)."""
        node = self.find_node(arg, "print")
        self.say(f"{self.label(node)}  {self.where_made(node)}")
        self.say(describe_array("output", self.stepper.outputs[id(node)].data))

    def do_grad(self, arg):
        """grad [NODE]: the gradient that came into NODE and what it sent to each input; default current."""
        self.say(self.step_text(self.step_of(self.find_node(arg, "grad"))))

    def do_jacobian(self, arg):
        """jacobian [NODE]: the node's full Jacobian d output / d input (up to 4,096 entries each); default current."""
        step = self.step_of(self.find_node(arg, "jacobian"))
        matrices = step.local_jacobian()
        matrices = matrices if isinstance(matrices, tuple) else (matrices,)
        self.say(f"{self.label(step.node)}: Jacobian of the output (size {int(np.prod(step.shape))}) per input")
        for index, matrix in enumerate(matrices):
            if matrix is not None:
                self.say(describe_array(f"d output / d input {index}", matrix))

    def do_check(self, arg):
        """check [NODE]: the node's backward against finite differences of its forward, in float64; default current."""
        step = self.step_of(self.find_node(arg, "check"))
        result = step.check()
        self.failed_checks += not result.ok
        self.say(f"check {result}")

    def do_graph(self, arg):
        """graph FILE: write the picture, current node highlighted, to FILE (.svg, .png, .pdf or .dot)."""
        from tinygrad_sm.viz import write_graph  # rendering sits above the engine: imported only when drawn

        words = shlex.split(arg)
        if len(words) != 1:
            raise ScriptMistake("graph takes one FILE, e.g. `graph backward.svg` (.svg, .png, .pdf or .dot)")
        try:
            self.say(f"wrote {write_graph(self.stepper.graph(), words[0])}")
        except (OSError, ValueError) as error:
            raise ScriptMistake(str(error)) from None

    def do_list(self, arg):
        """list [all|NODE] (l): the nodes backward has still to run, in order (a long list: its start and end);
        `list all` every one, `list #N` those from node #N on."""
        words = self.words(arg, "list", 1, "`all` or one node number, e.g. `list #40`")
        pending = self.stepper.pending
        if not pending:
            self.say("no nodes left: backward has finished")
            return
        if words and words[0] != "all":
            number = self.node_number(words[0])
            if number is None:
                raise ScriptMistake(f"list takes `all` or a node number, e.g. `list #40`; got {words[0]!r}")
            later = [node for node in pending if self.stepper.index_of(node) >= number]
            for node in later[:LIST_WINDOW]:
                self.say(self.node_line(node))
            if len(later) > LIST_WINDOW:
                after = self.stepper.index_of(later[LIST_WINDOW])
                self.say(f"... {plural(len(later) - LIST_WINDOW, 'more node')} (`list #{after}` goes on) ...")
            elif not later:
                self.say(f"no node from #{number} on is still to run; `list` shows those that are")
            return
        texts = (self.node_line(node) for node in pending)
        if words:
            for text in texts:
                self.say(text)
            return
        self.say_paged(texts, ("node", "nodes", "`list all` shows every one, `list #N` from node #N"))

    def do_where(self, arg):
        """where (w, bt): the chain of nodes that led to the current one, from the output's down (the shortest
        path gradients took), `>` at the one `up`/`down` selected; and how far backward has got."""
        self.words(arg, "where", 0, "no arguments")
        stepper, pending = self.stepper, self.stepper.pending
        upcoming = f"; next: {self.label(pending[0])}" if pending else ""
        if stepper.current is None:
            self.say(f"backward has not started: {plural(len(stepper.nodes), 'node')} to run{upcoming}")
            return
        chain = self.chain(stepper.current.node)
        selected = self.frame or stepper.current.node
        texts = (f"{'>' if node is selected else ' '} {self.node_line(node)}" for node in chain)
        self.say_paged(texts, ("node", "nodes", "`up N` and `down N` walk the chain"))
        self.say(f"(step {len(stepper.steps)} of {len(stepper.nodes)}{upcoming})")

    def move(self, arg, command, toward_output):
        count = self.count(arg, command)
        if self.stepper.current is None:
            raise ValueError("backward has not started: no chain of nodes yet (`step` first)")
        chain = self.chain(self.stepper.current.node)
        position = chain.index(self.frame or self.stepper.current.node)
        wanted = max(0, position - count) if toward_output else min(len(chain) - 1, position + count)
        if wanted == position:
            self.say("already at the output's node (#0)" if toward_output else "already at the current node")
            return
        self.frame = None if wanted == len(chain) - 1 else chain[wanted]
        self.say(f"> {self.node_line(chain[wanted])}")

    def do_up(self, arg):
        """up [n] (u): select the node n places toward the output's in `where`'s chain; print, grad, jacobian and
        check then default to it."""
        self.move(arg, "up", toward_output=True)

    def do_down(self, arg):
        """down [n] (d): select the node n places back toward the current one in `where`'s chain."""
        self.move(arg, "down", toward_output=False)

    def do_help(self, arg):
        """help [COMMAND] (h): every command in one line each, or the one COMMAND."""
        words = self.words(arg, "help", 1, "at most one COMMAND")
        if words:
            name = SHORT_FORMS.get(words[0], words[0])
            command = getattr(self, f"do_{name}", None)
            if command is None:
                raise ScriptMistake(f"no command {words[0]!r}; `help` lists them")
            self.say(command.__doc__)
            return
        for name in COMMANDS:
            self.say("  " + " ".join(getattr(self, f"do_{name}").__doc__.split()))
        self.say("  NODE is a number from `list` (#0 is the output's node) or an op name; numbers show 4 decimals; "
                 "Ctrl-C drops the line")

    def do_quit(self, arg):
        """quit (q): leave the debugger."""
        self.words(arg, "quit", 0, "no arguments")
        return True
