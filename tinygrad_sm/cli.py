"""`tinygrad-sm` (also `python -m tinygrad_sm`): demo, train, gradcheck, graph, debug.

A user's mistake prints one line and exits 2; exit 1 means "the check ran and failed".
`--debug` shows the traceback instead.
"""

import argparse
import importlib
import importlib.util
import json
import os
import signal
import sys

import numpy as np

from tinygrad_sm import functional as F
from tinygrad_sm import nn
from tinygrad_sm.cases import MODEL_CASES, OP_CASES
from tinygrad_sm.gradcheck import gradcheck, jacobian, localize, model_fn, numerical_jacobian
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


def target_output(spec):
    """Call the factory `spec` names, then its fn on the inputs as leaves `x0, x1, ...`; floating-point ones
    require gradients. A mistake in the target becomes a one-line UsageError."""
    fn, inputs = gradcheck_target(spec)
    tensors = []
    for index, value in enumerate(inputs if isinstance(inputs, (list, tuple)) else [inputs]):
        tensor = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
        if tensor.is_leaf and tensor.dtype.kind == "f":
            tensor.requires_grad = True
        tensor.name = tensor.name or f"x{index}"
        tensors.append(tensor)
    output = _checked(f"the function of {spec}", lambda: fn(*tensors))
    if not isinstance(output, Tensor):
        raise UsageError(f"{spec}: fn must return a Tensor, got {type(output).__name__}")
    return output


def cmd_demo(args):
    """Train the MLP, gradient-check the trained model, and draw its graph with every gradient on it."""
    from tinygrad_sm.viz import render_with_gradients

    result = train("mlp", seed=args.seed)
    print(result.summary(), flush=True)
    _, X_test, _, y_test = load_task("mlp")
    print()
    ok = demo_gradcheck(result.model, X_test, y_test, seed=args.seed)
    images, labels = Tensor(X_test[:32], name="images"), Tensor(y_test[:32], name="labels")
    loss = F.softmax_cross_entropy(result.model(images), labels)
    os.makedirs(os.path.dirname(args.graph) or ".", exist_ok=True)
    path = render_with_gradients(loss, args.graph)
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
        raise UsageError(f"{spec}: fn must return a Tensor computed from a floating-point input")
    return output, None if output.size == 1 else np.ones(output.shape, dtype=output.dtype)


def cmd_debug(args):
    from tinygrad_sm.debug import BackwardStepper
    from tinygrad_sm.shell import DebuggerShell

    output, grad = debug_output(args.target, batch_size=args.batch_size, seed=args.seed)
    stepper = BackwardStepper(output, grad)
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


def _suite_row(name, max_abs_error, max_rel_error, ok, faulty_op=None):
    return {"name": name, "max_abs_error": max_abs_error, "max_rel_error": max_rel_error, "ok": bool(ok),
            "faulty_op": faulty_op}


def _report_row(name, report, fn, inputs, args):
    faulty_op = None
    if not report.ok:
        first = localize(fn, inputs, eps=args.eps, atol=args.atol, rtol=args.rtol, seed=args.seed).first_failure
        faulty_op = None if first is None else first.op_name  # made inside the package: no user line to show
    return _suite_row(name, report.max_abs_error, report.max_rel_error, report.ok, faulty_op)


def _compared_row(name, first, second, atol, rtol):
    error = np.abs(first - second)
    relative = error / np.maximum(np.abs(second), atol)
    return _suite_row(name, float(error.max()), float(relative.max()), np.all(error <= atol + rtol * np.abs(second)))


def gradcheck_suite(args):
    """One row per check: every case of OP_CASES and MODEL_CASES, and the softmax Jacobian three ways."""
    options = {"eps": args.eps, "atol": args.atol, "rtol": args.rtol, "fast": args.fast, "seed": args.seed}
    rows = []
    for case in OP_CASES:
        inputs = case.inputs(seed=args.seed)
        rows.append(_report_row(case.name, gradcheck(case.fn, inputs, **options), case.fn, inputs, args))
    z = np.random.default_rng(args.seed).standard_normal(5)
    formula = F.softmax_jacobian(F.softmax(Tensor(z)).data)
    autograd = jacobian(lambda t: t.softmax(), z)
    numerical = numerical_jacobian(lambda t: t.softmax(), z, eps=args.eps)
    rows.append(_compared_row("softmax Jacobian: formula vs autograd", formula, autograd, args.atol, args.rtol))
    rows.append(_compared_row("softmax Jacobian: formula vs finite diff.", formula, numerical, args.atol, args.rtol))
    rows.append(_compared_row("softmax Jacobian: autograd vs finite diff.", autograd, numerical, args.atol, args.rtol))
    for case in MODEL_CASES:
        model, loss_fn = case.build(seed=args.seed)
        fn, params = model_fn(model, loss_fn)
        rows.append(_report_row(case.name, gradcheck(fn, params, **options), fn, params, args))
    return rows


def _json_row(row):
    finite = {key: row[key] if np.isfinite(row[key]) else None for key in ("max_abs_error", "max_rel_error")}
    return {**row, **finite}


def _print_suite(rows, args):
    mode = "fast (uᵀJv)" if args.fast else "full Jacobian"
    width = max(len(row["name"]) for row in rows) + 2
    print(f"{'check':<{width}}{'max abs err':>13}{'max rel err':>13}  result")
    for row in rows:
        faulty = f"  faulty op: {row['faulty_op']}" if row["faulty_op"] else ""
        print(f"{row['name']:<{width}}{row['max_abs_error']:>13.2e}{row['max_rel_error']:>13.2e}  "
              f"{'pass' if row['ok'] else 'FAIL'}{faulty}")
    failed = sum(not row["ok"] for row in rows)
    print(f"{len(rows)} checks: {len(rows) - failed} passed, {failed} failed ({mode} in float64, eps={args.eps:g} "
          f"atol={args.atol:g} rtol={args.rtol:g})")


def cmd_gradcheck(args):
    if args.target is None:
        rows = gradcheck_suite(args)
        ok = all(row["ok"] for row in rows)
        if args.json:
            print(json.dumps({"ok": ok, "checks": [_json_row(row) for row in rows]}, indent=2))
        else:
            _print_suite(rows, args)
        return 0 if ok else 1
    fn, inputs = gradcheck_target(args.target)
    options = {"eps": args.eps, "atol": args.atol, "rtol": args.rtol, "fast": args.fast, "seed": args.seed}
    report = _checked(f"gradcheck of {args.target}", lambda: gradcheck(fn, inputs, **options))
    nodes = None
    if args.localize or not report.ok:
        nodes = _checked(f"the per-node check of {args.target}", lambda: localize(fn, inputs, **options))
    if args.json:
        print(json.dumps({"target": args.target, "ok": report.ok, "gradcheck": report.to_dict(),
                          "nodes": None if nodes is None else nodes.to_dict()}, indent=2))
    else:
        print(f"{args.target}: {report}")
        if args.localize:
            print(f"\nevery node's backward against differences of its own forward:\n{nodes}")
        elif nodes is not None:
            print(nodes.summary())
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


def cmd_graph(args):
    from tinygrad_sm.viz import MAX_LAYOUT_NODES, GraphTooLargeError, render

    max_nodes = MAX_LAYOUT_NODES if args.max_nodes is None else args.max_nodes or None
    output, grads = graph_output(args.target, batch_size=args.batch_size, seed=args.seed)
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit 2), without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    parser = ArgumentParser(prog="tinygrad-sm", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    parser.subcommands = commands.choices

    demo = commands.add_parser("demo", help="the main job: train, check and draw a network")
    demo.add_argument("--seed", type=non_negative_int, default=0)
    demo.add_argument("--graph", default=os.path.join("out", "demo_graph.svg"),
                      help="where to draw the trained network's graph (default out/demo_graph.svg)")
    demo.set_defaults(run=cmd_demo)

    debug = commands.add_parser("debug", help="step through backward node by node at a pdb-like prompt")
    debug.add_argument("target", nargs="?", default="softmax",
                       help="a built-in model (softmax, logistic, mlp; default softmax) or file.py:name, "
                            "a factory returning (fn, inputs)")
    debug.add_argument("--commands", help='commands to run without a prompt, separated by ";", e.g. "step; print"')
    debug.add_argument("--batch-size", type=positive_int, default=8, help="rows of digits for a built-in model")
    debug.add_argument("--seed", type=non_negative_int, default=0)
    debug.set_defaults(run=cmd_debug)

    check = commands.add_parser("gradcheck", help="check gradients against finite differences (suite or TARGET)")
    check.add_argument("target", nargs="?",
                       help="file.py:name or package.module:name, a function taking no arguments that returns "
                            "(fn, inputs); without it the built-in suite runs")
    check.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (default 1e-6)")
    check.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    check.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (default 1e-3)")
    check.add_argument("--fast", action="store_true", help="check random projections uᵀJv instead of the Jacobian")
    check.add_argument("--localize", action="store_true", help="add the per-node table and name the faulty op")
    check.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")
    check.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of the random inputs, projections and upstream grads")
    check.set_defaults(run=cmd_gradcheck)

    graph = commands.add_parser("graph", help="draw the computation graph (svg, png, pdf or dot)")
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
    graph.set_defaults(run=cmd_graph)

    recipes = "\n".join(
        f"  {name:<9} {r.optimizer}, lr {r.lr:g}, {r.epochs} epochs, batch size {r.batch_size}, "
        f"weight decay {r.weight_decay:g}" for name, r in RECIPES.items()
    )
    trainer = commands.add_parser(
        "train", help="train a built-in model on the digits and report train and test accuracy",
        description="Train a built-in model on scikit-learn's 8x8 digits (a fixed stratified 80/20 split)\n"
                    "with a progress bar per epoch, then print the train and test accuracy.\n"
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
    trainer.add_argument("--momentum", type=float, help="momentum of sgd (default 0.9)")
    trainer.add_argument("--seed", type=non_negative_int, default=0,
                         help="initial weights and batch order (the split is fixed)")
    trainer.add_argument("--save", metavar="PATH", help="write the trained parameters to this .npz file")
    trainer.add_argument("--load", metavar="PATH", help="start from parameters saved with --save")
    trainer.set_defaults(run=cmd_train)
    return parser


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, so the message names the command
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        status = args.run(args)
        sys.stdout.flush()  # so that a closed pipe shows up here, not as a warning when Python exits
        return status
    except BrokenPipeError:  # the reader stopped early (`| head`): end quietly, as a tool killed by SIGPIPE does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except ModuleNotFoundError as error:
        if args.debug:
            raise
        print(f"tinygrad-sm {args.command}: error: {error}; the digits, training and notebooks need the extras: "
              f"pip install 'tinygrad_sm[dev]' (in a checkout: make setup)", file=sys.stderr)
        return 2
    except (UsageError, ValueError, TypeError, OSError) as error:
        if args.debug:
            raise
        print(f"tinygrad-sm {args.command}: error: {error}", file=sys.stderr)
        return 2
