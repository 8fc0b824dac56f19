"""`tinygrad-sm` (also `python -m tinygrad_sm`): demo, train, gradcheck, graph, debug.

A user's mistake prints one line and exits 2; exit 1 means "the check ran and failed"; Ctrl-C exits 130.
`--debug` (before or after the command) shows the traceback too. Warnings are one line each, in the CLI's words.
"""

import argparse
import importlib
import importlib.util
import json
import math
import os
import signal
import sys
import traceback
import warnings
from dataclasses import replace

import numpy as np

from tinygrad_sm import autograd, nn
from tinygrad_sm import functional as F
from tinygrad_sm.cases import MODEL_CASES, OP_CASES
from tinygrad_sm.files import check_writable
from tinygrad_sm.gradcheck import (
    gradcheck,
    gradgradcheck,
    gradient_fn,
    hessian,
    jacobian,
    localize,
    model_fn,
    numerical_jacobian,
)
from tinygrad_sm.tensor import Tensor
from tinygrad_sm.train import LOGISTIC_DIGITS, MODELS, OPTIMIZERS, RECIPES, build_model, load_task, recipe_for, train
from tinygrad_sm.walk import backward_order


class UsageError(Exception):
    """A user's mistake: one line, exit 2."""


def load_target(spec):
    """`path/to/file.py:name` or `package.module:name` -> the object `name` in that file or module."""
    if ":" not in spec:
        raise UsageError(f"target {spec!r} must look like path/to/file.py:name or package.module:name")
    location, _, name = spec.rpartition(":")
    if not location or not name:
        raise UsageError(f"target {spec!r} needs a file or module before the colon and a name after it, "
                         f"like path/to/file.py:name or package.module:name")
    if location.endswith(".py"):
        if not os.path.isfile(location):
            raise UsageError(f"target file {location!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"tinygrad_sm_target_{abs(hash(location))}", location)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            raise UsageError(f"target file {location!r} raised {type(error).__name__}: {error}") from error
    else:
        if os.getcwd() not in sys.path:  # like `python -m`, a module in the working directory can be named
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(location)
        except ImportError as error:
            raise UsageError(
                f"cannot import module {location!r} ({error}); expected path/to/file.py:name or package.module:name"
            ) from error
    if not hasattr(module, name):
        raise UsageError(f"{location!r} has no name {name!r}")
    return getattr(module, name)


def builtin_loss(name, batch_size=32, seed=0):
    """A built-in model's loss on a batch of digits: (loss, model), with its inputs and parameters named."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; expected one of {', '.join(MODELS)} or a file.py:name target")
    model = build_model(name, rng=np.random.default_rng(seed))
    for path, parameter in model.named_parameters():
        parameter.name = path
    X, _, y, _ = load_task(name)
    if batch_size > len(X):
        raise UsageError(f"--batch-size {batch_size} is more than the {len(X)} training rows of {name}")
    images, labels = Tensor(X[:batch_size], name="images"), Tensor(y[:batch_size], name="labels")
    loss = F.binary_cross_entropy_with_logits if name == "logistic" else F.softmax_cross_entropy
    output = loss(model(images), labels)
    for node in backward_order(output):  # made by the package, not by user code: `made outside user code`
        node.made_at = None
    return output, model


def _requires_gradient(value):
    """gradcheck's rule, for every command: Tensors with requires_grad=True and float numpy arrays get gradients;
    everything else (a Tensor without requires_grad included) is a constant."""
    if isinstance(value, Tensor):
        return value.requires_grad
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def target_inputs(spec):
    """The factory's (fn, inputs as a list), or a UsageError when no input would get a gradient."""
    fn, inputs = gradcheck_target(spec)
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not any(_requires_gradient(value) for value in inputs):
        raise UsageError(
            f"target {spec}: no input requires a gradient; return Tensors with requires_grad=True or float numpy "
            f"arrays (a Tensor without requires_grad is a constant)"
        )
    return fn, inputs


def target_output(spec):
    """Call the factory `spec` names, then its fn on the inputs named `x0, x1, ...`: float numpy arrays become
    leaves that require gradients, Tensors keep their requires_grad (`_requires_gradient`, as gradcheck).
    A mistake in the target becomes a one-line UsageError."""
    fn, inputs = target_inputs(spec)
    tensors = []
    for index, value in enumerate(inputs):
        if not isinstance(value, Tensor):
            value = Tensor(np.asarray(value), requires_grad=_requires_gradient(value))
        tensor = value
        tensor.name = tensor.name or f"x{index}"
        tensors.append(tensor)
    output = _checked(f"the function of {spec}", lambda: fn(*tensors))
    if not isinstance(output, Tensor):
        raise UsageError(f"{spec}: fn must return a Tensor, got {type(output).__name__}")
    return output


DEMO_GRAPH = os.path.join("out", "demo_graph.svg")


def check_graph_path(path, format=None):
    """Before any work: `path` can be written (`check_writable`) and, without `format`, its suffix names one."""
    from tinygrad_sm.viz import FORMATS

    check_writable(path)
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if format is None and suffix not in FORMATS:
        raise UsageError(f"cannot tell the format of {path!r} from its suffix; expected a file ending in "
                         f"{', '.join('.' + name for name in FORMATS)}")
    return format or suffix


def cmd_demo(args):
    """Train the MLP, gradient-check the trained model, and draw its graph with every gradient on it."""
    import graphviz

    from tinygrad_sm.viz import INSTALL_DOT, render_with_gradients

    if args.graph is None:  # the documented place, made for the default only
        os.makedirs(os.path.dirname(DEMO_GRAPH), exist_ok=True)
    graph_path = args.graph or DEMO_GRAPH
    if check_graph_path(graph_path) != "dot":
        try:
            graphviz.version()
        except graphviz.ExecutableNotFound:
            raise UsageError(f"the demo draws {graph_path} with graphviz's `dot` program, which was not found: "
                             f"{INSTALL_DOT}, or give --graph FILE.dot") from None
    result = train("mlp", seed=args.seed)
    print(result.summary(), flush=True)
    _, X_test, _, y_test = load_task("mlp")
    print()
    ok = demo_gradcheck(result.model, X_test, y_test, seed=args.seed)
    images, labels = Tensor(X_test[:32], name="images"), Tensor(y_test[:32], name="labels")
    loss = F.softmax_cross_entropy(result.model(images), labels)
    path = render_with_gradients(loss, graph_path)
    print(f"\nthe trained network's graph, collapsed by module, with its gradients: {path}")
    return 0 if ok else 1


def cmd_train(args):
    if args.hidden is not None and args.model != "mlp":
        raise UsageError(f"--hidden sets the hidden layer of the mlp; the {args.model} model has none")
    if args.momentum is not None and (args.optimizer or RECIPES[args.model].optimizer) != "sgd":
        raise UsageError("--momentum applies to --optimizer sgd only (adam has its betas)")
    recipe = recipe_for(args.model, optimizer=args.optimizer, lr=args.lr, epochs=args.epochs,
                        batch_size=args.batch_size, weight_decay=args.weight_decay, momentum=args.momentum)
    result = train(args.model, recipe, hidden=args.hidden or 128, seed=args.seed, load=args.load, save=args.save)
    print(result.summary())
    if args.save is not None:
        print(f"saved the model to {args.save}")
    return 0


def debug_output(spec, batch_size=8, seed=0):
    """The tensor to step backward from, and its start gradient (None for a one-element loss).

    `spec` is a built-in model (its loss on a batch of digits) or `file.py:name`, a factory returning
    (fn, inputs): floating-point inputs become leaves `x0, x1, ...` that require gradients.
    """
    if ":" not in spec:
        loss, _ = builtin_loss(spec, batch_size=batch_size, seed=seed)
        return loss, None
    output = target_output(spec)
    if not output.requires_grad:
        raise UsageError(f"{spec}: fn's output was not computed from an input that requires a gradient, so backward "
                         f"has nothing to step through (does fn rewrap an input in Tensor(...)?)")
    return output, None if output.size == 1 else np.ones(output.shape, dtype=output.dtype)


def cmd_debug(args):
    from tinygrad_sm.debug import BackwardStepper
    from tinygrad_sm.shell import DebuggerShell

    if args.html is not None:
        if args.commands is not None:
            raise UsageError("--html writes the page and --commands runs the prompt: give one of them")
        check_writable(args.html)
    output, grad = debug_output(args.target, batch_size=args.batch_size, seed=args.seed)
    stepper = BackwardStepper(output, grad)
    if args.html is not None:
        print(f"wrote {stepper.to_html(args.html)}: {len(stepper.steps)} backward steps of {args.target}")
        return 0
    start = "1" if grad is None else "ones (the output has more than one element)"
    nodes = f"{len(stepper.nodes)} node{'' if len(stepper.nodes) == 1 else 's'}"
    print(f"debugging backward of {args.target}: output shape {output.shape} {output.dtype}, "
          f"{nodes}, starting gradient {start}; `help` lists the commands")
    shell = DebuggerShell(stepper)
    if args.commands is None and sys.stdin.isatty():
        shell.cmdloop()  # Ctrl-C drops the line, as in pdb
        return 1 if shell.failed_checks else 0
    shell.run_script([args.commands] if args.commands is not None else sys.stdin)
    return 2 if shell.mistakes else 1 if shell.failed_checks else 0  # a script with a mistake is a usage error


def gradcheck_target(spec):
    """Load the factory `spec` names and call it: (fn, inputs), or a UsageError saying what was wrong."""
    factory = load_target(spec)
    if not callable(factory):
        raise UsageError(
            f"target {spec} is a {type(factory).__name__}; expected a function taking no arguments that returns "
            f"(fn, inputs)"
        )
    try:
        made = factory()
    except Exception as error:
        raise UsageError(f"target {spec} raised {type(error).__name__}: {error}") from error
    if not (isinstance(made, tuple) and len(made) == 2 and callable(made[0])
            and isinstance(made[1], (list, tuple, Tensor, np.ndarray))):
        raise UsageError(
            f"target {spec} must return (fn, inputs): a function and a list of its input Tensors or arrays, "
            f"got {type(made).__name__}"
        )
    return made


def _checked(what, run):
    """Run one check; an exception from the user's function becomes a one-line UsageError naming it."""
    try:
        return run()
    except Exception as error:
        raise UsageError(f"{what} raised {type(error).__name__}: {error}") from error


def _suite_row(name, max_abs_error, max_rel_error, ok, faulty_op=None, nodes=None):
    return {"name": name, "max_abs_error": max_abs_error, "max_rel_error": max_rel_error, "ok": bool(ok),
            "faulty_op": faulty_op, "nodes": nodes}


def _as_tensor_inputs(fn, inputs):
    """(fn, tensors, positions): fn and its inputs as gradgradcheck takes them, by gradcheck's rule: float arrays
    become Tensors that require a gradient, float Tensors stay as they are, any other value (integer labels, say)
    is held fixed inside fn; `positions` are the tensors' places among the inputs."""
    positions = [index for index, value in enumerate(inputs)
                 if _requires_gradient(value) or isinstance(value, Tensor) and value.dtype.kind == "f"]
    tensors = [value if isinstance(value, Tensor) else Tensor(value, requires_grad=True)
               for value in (inputs[index] for index in positions)]
    if len(positions) == len(inputs):
        return fn, tensors, positions

    def with_constants(*values):
        arguments = list(inputs)
        for index, value in zip(positions, values):
            arguments[index] = value
        return fn(*arguments)

    return with_constants, tensors, positions


def _numbered_as_given(report, positions, count):
    """The report with its inputs numbered as the target gave them, the upstream gradient v after them all."""
    numbers = [*positions, count]
    return replace(report, inputs=[replace(check, index=numbers[check.index]) for check in report.inputs],
                   upcast=[numbers[index] for index in report.upcast])


def _placed_in_user_code(gradient):
    """gradient, with the nodes a built-in backward makes placed nowhere, as builtin_loss's: no user code is running
    then, and the caller found would be Python's machinery (`<frozen runpy>`)."""

    def run(*values):
        output = gradient(*values)
        for node in backward_order(output):
            if node.made_at is not None and node.made_at[0].co_filename.startswith("<"):
                node.made_at = None
        return output

    return run


def _check_options(args):
    """eps, atol, rtol, fast and seed from the command line, as gradcheck, gradgradcheck and localize take them."""
    return {"eps": args.eps, "atol": args.atol, "rtol": args.rtol, "fast": args.fast, "seed": args.seed}


def _check(fn, inputs, args):
    """(report, (fn, inputs) the report is about): gradcheck of fn, or with --second-order gradgradcheck, whose
    report is about the gradient (`gradient_fn`), so that the per-node check localises in its graph."""
    options = _check_options(args)
    if not args.second_order:
        return gradcheck(fn, inputs, **options), (fn, inputs)
    held_fn, tensors, positions = _as_tensor_inputs(fn, list(inputs))
    report = _numbered_as_given(gradgradcheck(held_fn, tensors, **options), positions, len(inputs))
    gradient, gradient_inputs = gradient_fn(held_fn, tensors, seed=args.seed)
    return report, (_placed_in_user_code(gradient), gradient_inputs)


def _report_row(name, fn, inputs, args):
    """A check's row; the per-node check runs when it failed (to name the op) or with --localize (its table)."""
    report, (fn, inputs) = _check(fn, inputs, args)
    faulty_op = nodes = None
    if args.localize or not report.ok:
        nodes = localize(fn, inputs, **_check_options(args))
        first = nodes.first_failure
        faulty_op = None if first is None else first.op_name  # made inside the package: no user line to show
    return _suite_row(name, report.max_abs_error, report.max_rel_error, report.ok, faulty_op,
                      nodes if args.localize else None)


def _compared_row(name, first, second, atol, rtol):
    error = np.abs(first - second)
    relative = error / np.maximum(np.abs(second), atol)
    return _suite_row(name, float(error.max()), float(relative.max()), np.all(error <= atol + rtol * np.abs(second)))


def gradcheck_suite(args):
    """One row per check: every case of OP_CASES and MODEL_CASES, and the softmax Jacobian three ways (with
    --second-order: the Hessian of logsumexp, the same matrix diag(a) - a aᵀ)."""
    rows = []
    for case in OP_CASES:
        rows.append(_report_row(case.name, case.fn, case.inputs(seed=args.seed), args))
    z = np.random.default_rng(args.seed).standard_normal(5)
    formula = F.softmax_jacobian(F.softmax(Tensor(z)).data)
    if args.second_order:
        name = "logsumexp Hessian"
        exact = autograd.hessian(lambda t: t.logsumexp(), Tensor(z)).data
        numerical = hessian(lambda t: t.logsumexp(), z, eps=args.eps)
    else:
        name = "softmax Jacobian"
        exact = jacobian(lambda t: t.softmax(), z)
        numerical = numerical_jacobian(lambda t: t.softmax(), z, eps=args.eps)
    rows.append(_compared_row(f"{name}: formula vs autograd", formula, exact, args.atol, args.rtol))
    rows.append(_compared_row(f"{name}: formula vs finite diff.", formula, numerical, args.atol, args.rtol))
    rows.append(_compared_row(f"{name}: autograd vs finite diff.", exact, numerical, args.atol, args.rtol))
    for case in MODEL_CASES:
        model, loss_fn = case.build(seed=args.seed)
        rows.append(_report_row(case.name, *model_fn(model, loss_fn), args))
    return rows


def _json_row(row):
    finite = {key: row[key] if np.isfinite(row[key]) else None for key in ("max_abs_error", "max_rel_error")}
    return {**row, **finite, "nodes": None if row["nodes"] is None else row["nodes"].to_dict()}


def _print_suite(rows, args):
    mode = "fast (uᵀJv)" if args.fast else "full Jacobian"
    if args.second_order:
        mode = f"second order (gradgradcheck), {mode} of the gradient"
    width = max(len(row["name"]) for row in rows) + 2
    print(f"{'check':<{width}}{'max abs err':>13}{'max rel err':>13}  result")
    for row in rows:
        faulty = f"  faulty op: {row['faulty_op']}" if row["faulty_op"] else ""
        print(f"{row['name']:<{width}}{row['max_abs_error']:>13.2e}{row['max_rel_error']:>13.2e}  "
              f"{'pass' if row['ok'] else 'FAIL'}{faulty}")
    failed = sum(not row["ok"] for row in rows)
    summary = (f"{len(rows)} checks: {len(rows) - failed} passed, {failed} failed ({mode} in float64, "
               f"eps={args.eps:g} atol={args.atol:g} rtol={args.rtol:g})")
    print(summary)
    if args.localize:
        matrices = "logsumexp Hessian" if args.second_order else "softmax Jacobian"
        print("\nevery node's backward against differences of its own forward, check by check "
              f"(the {matrices} rows compare matrices and have no nodes):")
        for row in rows:
            if row["nodes"] is not None:
                print(f"\n{row['name']}:\n{row['nodes']}")
        print(f"\n{summary}")


def cmd_gradcheck(args):
    if args.target is None:
        rows = gradcheck_suite(args)
        ok = all(row["ok"] for row in rows)
        if args.json:
            print(json.dumps({"ok": ok, "second_order": args.second_order,
                              "checks": [_json_row(row) for row in rows]}, indent=2))
        else:
            _print_suite(rows, args)
        return 0 if ok else 1
    fn, inputs = target_inputs(args.target)
    what = f"{'gradgradcheck' if args.second_order else 'gradcheck'} of {args.target}"
    report, (fn, inputs) = _checked(what, lambda: _check(fn, inputs, args))
    nodes = nodes_error = None
    if args.localize or not report.ok:
        try:  # the target ran once already: what fails here is the graph (say, an input rewrapped), not the target
            nodes = localize(fn, inputs, **_check_options(args))
        except Exception as error:
            nodes_error = f"the per-node check could not run: {error}"
    if args.json:
        print(json.dumps({"target": args.target, "ok": report.ok, "second_order": args.second_order,
                          "gradcheck": report.to_dict(), "nodes": None if nodes is None else nodes.to_dict(),
                          "nodes_error": nodes_error}, indent=2))
    else:
        print(f"{args.target}: {report}")
        if nodes_error is not None:
            print(nodes_error)
        elif args.localize:
            print(f"\nevery node's backward against differences of its own forward:\n{nodes}")
        elif nodes is not None:
            print(nodes.summary())
        if args.second_order and not report.ok and nodes is not None and nodes.ok:
            print("every node of the gradient's graph is right, so a backward is not differentiable as written: "
                  "it detaches a value or uses one saved as an array (see the Function docstring)")
    return 0 if report.ok else 1


def demo_gradcheck(model, X, y, n_samples=16, seed=0):
    """Gradient-check a trained model briefly: its loss on `n_samples` rows against every parameter (fast mode),
    then every node's backward on its own; prints a few lines and returns True when all pass."""
    loss = F.binary_cross_entropy_with_logits if isinstance(model, nn.LogisticRegression) else F.softmax_cross_entropy
    features, targets = Tensor(np.asarray(X[:n_samples], dtype=np.float64)), np.asarray(y)[:n_samples]
    fn, params = model_fn(model, lambda m: loss(m(features), targets))
    report = gradcheck(fn, params, fast=True, seed=seed)
    nodes = localize(fn, params, seed=seed)
    print(f"gradient check of the trained {type(model).__name__} on {len(targets)} rows "
          f"(float64 copies; autograd uᵀJv against central differences):")
    for (name, _), check in zip(model.named_parameters(), report.inputs):
        print(f"  {name:<18} autograd {check.analytical:+.10f}   finite differences {check.numerical:+.10f}   "
              f"{'pass' if check.ok else 'FAIL'}")
    print(f"  {nodes.summary()}")
    return report.ok and nodes.ok


def graph_output(spec, batch_size=32, seed=0):
    """The tensor to draw for `tinygrad-sm graph`, after its backward, and the gradients that backward reached.

    `spec` is a built-in model (its loss on a batch of digits) or `file.py:name`, a factory returning
    (fn, inputs): floating-point inputs become leaves `x0, x1, ...` that require gradients; a one-element
    output is run backward, a bigger one is drawn as it is.
    """
    from tinygrad_sm.walk import backward_recording_grads

    if ":" not in spec:
        loss, _ = builtin_loss(spec, batch_size=batch_size, seed=seed)
        return loss, backward_recording_grads(loss)
    output = target_output(spec)
    if output.requires_grad and output.size == 1:
        return output, _checked(f"backward of {spec}", lambda: backward_recording_grads(output))
    return output, {}


def backward_graph_output(spec, batch_size=32, seed=0):
    """For `tinygrad-sm graph --backward`: the gradient of a built-in model's loss wrt its first layer's weight,
    made with create_graph, so the backward pass itself is the graph drawn."""
    if ":" in spec:
        raise UsageError(f"--backward draws a built-in model's backward pass ({', '.join(MODELS)}), not {spec!r}")
    loss, model = builtin_loss(spec, batch_size=batch_size, seed=seed)
    name, weight = next(iter(model.named_parameters()))
    (gradient,) = autograd.grad(loss, [weight], create_graph=True)
    gradient.name = f"d loss / d {name}"
    return gradient, {}


def cmd_graph(args):
    from tinygrad_sm.viz import MAX_LAYOUT_NODES, GraphTooLargeError, render

    check_graph_path(args.out, args.format)
    max_nodes = MAX_LAYOUT_NODES if args.max_nodes is None else args.max_nodes or None
    make_output = backward_graph_output if args.backward else graph_output
    output, grads = make_output(args.target, batch_size=args.batch_size, seed=args.seed)
    try:
        path = render(
            output, args.out, format=args.format, show_data=not args.no_data, show_grad=not args.no_grad,
            rankdir=args.rankdir, collapse=args.collapse, grads=grads, max_nodes=max_nodes,
        )
    except GraphTooLargeError as error:
        collapse = "" if args.collapse else "--collapse modules, "
        raise UsageError(
            f"not drawing {args.out}: {error.nodes:,} nodes, more than --max-nodes {error.limit:,} (`dot` takes "
            f"minutes or crashes past that); the DOT text is in {error.dot_path}. Try {collapse}--format dot, "
            f"or --max-nodes 0 to run dot anyway"
        ) from None
    print(path)
    return 0


def whole_number_at_least(smallest):
    """argparse type: a whole number >= `smallest`, or a one-line message saying so."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < smallest:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {smallest}, got {text}")
        return value

    return parse


non_negative_int, positive_int = whole_number_at_least(0), whole_number_at_least(1)


def finite_number(name, positive, meaning=""):
    """argparse type: a finite number > 0 (`positive`) or >= 0, or a one-line message naming `name` saying so."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 < value < math.inf if positive else 0 <= value < math.inf):
            raise argparse.ArgumentTypeError(f"{name} must be {'>' if positive else '>='} 0 and finite{meaning}, "
                                             f"got {text}")
        return value

    return parse


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit 2), without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    parser = ArgumentParser(prog="tinygrad-sm", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    debug_flag = ArgumentParser(add_help=False)  # so that --debug works after the command too
    debug_flag.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    parser.subcommands = commands.choices

    demo = commands.add_parser("demo", parents=[debug_flag], help="the main job: train, check and draw a network")
    demo.add_argument("--seed", type=non_negative_int, default=0)
    demo.add_argument("--graph", help=f"where to draw the trained network's graph, in an existing directory "
                                      f"(default {DEMO_GRAPH}, its directory made if missing)")
    demo.set_defaults(run=cmd_demo)

    debug = commands.add_parser("debug", parents=[debug_flag],
                                help="step through backward node by node at a pdb-like prompt")
    debug.add_argument("target", nargs="?", default="softmax",
                       help="a built-in model (softmax, logistic, mlp; default softmax) or file.py:name, "
                            "a factory returning (fn, inputs)")
    debug.add_argument("--commands", help='commands to run without a prompt, separated by ";", e.g. "step; print"')
    debug.add_argument("--html", metavar="PATH", help="write the step-through page (one offline HTML file) and exit")
    debug.add_argument("--batch-size", type=positive_int, default=8, help="rows of digits for a built-in model")
    debug.add_argument("--seed", type=non_negative_int, default=0)
    debug.set_defaults(run=cmd_debug)

    check = commands.add_parser("gradcheck", parents=[debug_flag],
                                help="check gradients against finite differences (suite or TARGET)")
    check.add_argument("target", nargs="?",
                       help="file.py:name or package.module:name, a function taking no arguments that returns "
                            "(fn, inputs); without it the built-in suite runs")
    check.add_argument("--eps", type=finite_number("eps", True, " (the finite-difference step)"), default=1e-6,
                       help="finite-difference step (> 0, default 1e-6)")
    check.add_argument("--atol", type=finite_number("atol", False), default=1e-5,
                       help="absolute tolerance (default 1e-5)")
    check.add_argument("--rtol", type=finite_number("rtol", False), default=1e-3,
                       help="relative tolerance (default 1e-3)")
    check.add_argument("--fast", action="store_true", help="check random projections uᵀJv instead of the Jacobian")
    check.add_argument("--second-order", action="store_true",
                       help="check second derivatives: the gradient (create_graph) against its own finite "
                            "differences, as gradgradcheck")
    check.add_argument("--localize", action="store_true",
                       help="add the per-node table (for the suite: one per check) and name the faulty op")
    check.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")
    check.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of the random inputs, projections and upstream grads")
    check.set_defaults(run=cmd_gradcheck)

    graph = commands.add_parser("graph", parents=[debug_flag], help="draw the computation graph (svg, png, pdf or dot)")
    graph.add_argument("target", nargs="?", default="mlp",
                       help="a built-in model (softmax, logistic, mlp; default mlp), run forward and backward on "
                            "a batch of digits, or file.py:name, a factory returning (fn, inputs)")
    graph.add_argument("--out", required=True, help="the file to write, e.g. graph.svg")
    graph.add_argument("--format", choices=("svg", "png", "pdf", "dot"),
                       help="default: from the suffix of --out")
    graph.add_argument("--no-data", action="store_true", help="leave out the values")
    graph.add_argument("--no-grad", action="store_true", help="leave out the gradients")
    graph.add_argument("--collapse", choices=("modules",), help="draw each module (layer) as one node")
    graph.add_argument("--rankdir", choices=("TB", "LR"), default="TB", help="top to bottom (default) or left to right")
    graph.add_argument("--max-nodes", type=non_negative_int,
                       help="refuse to lay out more nodes than this (default 10,000; 0: no limit)")
    graph.add_argument("--batch-size", type=positive_int, default=32, help="rows of digits for a built-in model")
    graph.add_argument("--seed", type=non_negative_int, default=0)
    graph.add_argument("--backward", action="store_true",
                       help="draw the backward pass instead: the gradient of a built-in model's loss wrt its first "
                            "weight, built with create_graph")
    graph.set_defaults(run=cmd_graph)

    recipes = "\n".join(
        f"  {name:<9} {r.optimizer}, lr {r.lr:g}, {r.epochs} epochs, batch size {r.batch_size}, "
        f"weight decay {r.weight_decay:g}" for name, r in RECIPES.items()
    )
    trainer = commands.add_parser(
        "train", parents=[debug_flag], help="train a built-in model on the digits and report train and test accuracy",
        description="Train a built-in model on the 8x8 digits (shipped in the package; a fixed stratified 80/20\n"
                    "split) showing each epoch's loss and accuracy (a bar on a terminal, else one line per epoch),\n"
                    "then print the train and test accuracy.\n"
                    "`logistic` is binary: digit {} (label 0) against digit {} (label 1).".format(*LOGISTIC_DIGITS),
        epilog=f"default recipes (--optimizer, --lr, --epochs, --batch-size, --weight-decay override them):\n{recipes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trainer.add_argument("--model", choices=MODELS, default="mlp",
                       help="softmax: 64-10 softmax regression; logistic: 64-1 logistic regression, digit "
                            "{} against {}; mlp: 64-hidden-10 with ReLU (default)".format(*LOGISTIC_DIGITS))
    trainer.add_argument("--hidden", type=positive_int, help="hidden units of the mlp (default 128)")
    trainer.add_argument("--epochs", type=non_negative_int,
                         help="passes over the training set (0 with --load: evaluate only)")
    trainer.add_argument("--lr", type=float, help="learning rate (>= 0)")
    trainer.add_argument("--batch-size", type=positive_int, help="rows per optimiser step")
    trainer.add_argument("--weight-decay", type=float, help="L2 penalty added to the gradient, as PyTorch does")
    trainer.add_argument("--optimizer", choices=OPTIMIZERS)
    trainer.add_argument("--momentum", type=float, help="momentum of sgd, in [0, 1) (default 0.9)")
    trainer.add_argument("--seed", type=non_negative_int, default=0,
                         help="initial weights and batch order (the split is fixed)")
    trainer.add_argument("--save", metavar="PATH",
                         help="write the trained parameters to this .npz file (its directory must exist)")
    trainer.add_argument("--load", metavar="PATH", help="start from parameters saved with --save")
    trainer.set_defaults(run=cmd_train)
    return parser


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, so the message names the command
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    with warnings.catch_warnings():
        for category in (RuntimeWarning, UserWarning):  # shown once per place, whatever filters a caller set
            warnings.filterwarnings("default", category=category)
        warnings.showwarning = _warning_printer(args.command)
        return _run(args)


def _run(args):
    try:
        status = args.run(args)
        sys.stdout.flush()  # so that a closed pipe shows up here, not as a warning when Python exits
        return status
    except BrokenPipeError:  # the reader stopped early (`| head`): end quietly, as a tool killed by SIGPIPE does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:  # Ctrl-C: files are written atomically, so nothing is left half-written
        if sys.stderr.isatty():
            print(file=sys.stderr)  # off a progress bar's line
        print(f"tinygrad-sm {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except ModuleNotFoundError as error:
        if args.debug:
            traceback.print_exc()
        print(f"tinygrad-sm {args.command}: error: {error}; a dependency of tinygrad_sm is missing: "
              f"pip install tinygrad_sm again (in a checkout: make setup)", file=sys.stderr)
        return 2
    except (UsageError, ValueError, TypeError, OSError) as error:
        if args.debug:
            traceback.print_exc()
        print(f"tinygrad-sm {args.command}: error: {error}", file=sys.stderr)
        return 2


PACKAGE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def _warning_printer(command):
    """warnings.showwarning for the CLI: one line on stderr; numpy's floating-point warnings name the op whose forward
    or backward raised them and the user's line that led there, never a path inside the package or numpy."""

    def show(message, category, filename, lineno, file=None, line=None):
        origin = _warning_origin() if issubclass(category, RuntimeWarning) else ""
        print(f"tinygrad-sm {command}: warning: {message}{origin}", file=sys.stderr)

    return show


def _warning_origin():
    """", in Log's forward (from target.py:5)" for the frames now running: the innermost op, else the innermost
    package module ("inside tinygrad_sm.gradcheck"), and the user's line that called into the package, if any."""
    place = user_line = None
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if os.path.abspath(code.co_filename).startswith(PACKAGE_DIRECTORY + os.sep):
            if code.co_name in ("forward", "backward") and "ctx" in frame.f_locals:
                place = place or f"in {getattr(frame.f_locals['ctx'].op, '__name__', 'an op')}'s {code.co_name}"
            place = place or f"inside {frame.f_globals.get('__name__')}"
        elif place and f"{os.sep}numpy{os.sep}" not in code.co_filename:
            if _is_user_code(frame):  # else Python's machinery (the debugger's prompt, runpy) called the package
                user_line = f"{os.path.relpath(code.co_filename)}:{frame.f_lineno}"
            break
        frame = frame.f_back
    if place is None:
        return ""
    return f", {place}" + (f" (from {user_line})" if user_line else "")


STANDARD_LIBRARY = os.path.dirname(os.__file__)


def _is_user_code(frame):
    """A frame of the user's own files: not the standard library, not frozen (<frozen runpy>), not the entry script."""
    filename = frame.f_code.co_filename
    return not (filename.startswith("<") or os.path.abspath(filename).startswith(STANDARD_LIBRARY + os.sep)
                or frame.f_globals.get("__name__") == "__main__")
