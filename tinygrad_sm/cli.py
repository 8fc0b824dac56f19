"""`tinygrad-sm` (also `python -m tinygrad_sm`): demo, train, gradcheck, graph, debug.

A user's mistake prints one line and exits 2; exit 1 means "the check ran and failed".
`--debug` shows the traceback instead.
"""

import argparse
import importlib
import importlib.util
import os
import sys

import numpy as np

from tinygrad_sm import functional as F
from tinygrad_sm import nn
from tinygrad_sm.gradcheck import numerical_jacobian
from tinygrad_sm.tensor import Tensor


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
        try:
            module = importlib.import_module(location)
        except ImportError as error:
            raise UsageError(f"cannot import module {location!r}: {error}") from error
    if not hasattr(module, name):
        raise UsageError(f"{location!r} has no name {name!r}")
    return getattr(module, name)


BUILTIN_MODELS = ("softmax", "logistic", "mlp")


def builtin_loss(name, batch_size=32, seed=0):
    """A built-in model run forward on a batch of digits: (loss, model). `logistic` tells 4 from 9."""
    from tinygrad_sm import data

    if name not in BUILTIN_MODELS:
        expected = ", ".join(BUILTIN_MODELS)
        raise UsageError(f"unknown model {name!r}; expected one of {expected} or a file.py:name target")
    rng = np.random.default_rng(seed)
    if name == "logistic":
        X, _, y, _ = data.load_binary_digits(seed=seed)
        model = nn.LogisticRegression(X.shape[1], rng=rng)
        return F.binary_cross_entropy_with_logits(model(Tensor(X[:batch_size])), y[:batch_size]), model
    X, _, y, _ = data.load_digits(seed=seed)
    model = nn.SoftmaxRegression(64, 10, rng=rng) if name == "softmax" else nn.MLP([64, 128, 10], rng=rng)
    return F.softmax_cross_entropy(model(Tensor(X[:batch_size])), y[:batch_size]), model


def demo_gradients(seed=0):
    """A 3-5-2 tanh network on random data: every parameter's gradient next to its finite-difference estimate."""
    rng = np.random.default_rng(seed)
    model = nn.MLP([3, 5, 2], activation="tanh", rng=rng, dtype=np.float64)
    x = rng.standard_normal((8, 3))
    labels = rng.integers(0, 2, 8)
    loss = F.softmax_cross_entropy(model(Tensor(x)), labels)
    loss.backward()
    print(f"loss {loss.item():.6f}; each parameter's gradient against central differences (float64):")
    for name, param in model.named_parameters():
        original = param.data.copy()

        def loss_of(values, param=param, shape=original.shape):
            param.data = values.data.reshape(shape)
            return F.softmax_cross_entropy(model(Tensor(x)), labels)

        numerical = numerical_jacobian(loss_of, original).reshape(original.shape)
        param.data = original
        error = np.max(np.abs(numerical - param.grad.data))
        print(f"  {name:<16} shape {str(param.shape):<8} max |autograd - numerical| = {error:.2e}")
        for analytic, estimate in list(zip(param.grad.data.flat, numerical.flat))[:3]:
            print(f"      {analytic:+.8f}   {estimate:+.8f}")
    return 0


def cmd_demo(args):
    return demo_gradients(seed=args.seed)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit 2), without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    parser = ArgumentParser(prog="tinygrad-sm", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the main job: train, check and draw a network")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, ValueError, TypeError, OSError) as error:
        if args.debug:
            raise
        print(f"tinygrad-sm {args.command}: error: {error}", file=sys.stderr)
        return 2
