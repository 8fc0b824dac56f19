"""Modules: parameters found by walking attributes, layers, and the two linear classifiers of the softmax story."""

import os
import warnings
import zipfile

import numpy as np

from tinygrad_sm import functional as F
from tinygrad_sm.files import write_atomically
from tinygrad_sm.grad_mode import settings
from tinygrad_sm.tensor import Tensor

_default_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed the generator every layer draws its initial weights from (when no `rng` is given)."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def _generator(rng):
    if rng is None:
        return _default_rng
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class Module:
    """Base of every layer and model: `__call__` runs `forward`; parameters are the attributes (and
    the items of list attributes) that are Tensors requiring a gradient, in the order they were set."""

    training = True

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *inputs, **kwargs):
        settings.module_stack.append(self)
        try:
            return self.forward(*inputs, **kwargs)
        finally:
            settings.module_stack.pop()

    def _named_members(self):
        for name, value in vars(self).items():
            if isinstance(value, (list, tuple)):
                for index, item in enumerate(value):
                    yield f"{name}.{index}", item
            else:
                yield name, value

    def named_modules(self, prefix=""):
        """(dotted path, module) for this module ("" for itself) and every module inside it."""
        yield prefix, self
        for name, value in self._named_members():
            if isinstance(value, Module):
                yield from value.named_modules(f"{prefix}{name}.")

    def named_parameters(self):
        """(dotted path, parameter) pairs such as ("layers.0.weight", Tensor); a shared parameter comes once."""
        seen = set()
        for path, module in self.named_modules():
            for name, value in module._named_members():
                if isinstance(value, Tensor) and value.requires_grad and id(value) not in seen:
                    seen.add(id(value))
                    yield path + name, value

    def parameters(self):
        return [parameter for _, parameter in self.named_parameters()]

    def zero_grad(self):
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode=True):
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        """{dotted path: a copy of the parameter's array}, in the order of `named_parameters()`."""
        return {name: param.data.copy() for name, param in self.named_parameters()}

    def load_state_dict(self, state_dict):
        """Copy every array of `state_dict` into the parameter of that name; all checked before any is changed."""
        params = dict(self.named_parameters())
        arrays = {name: np.asarray(getattr(value, "data", value)) for name, value in state_dict.items()}
        problems = []
        for name, param in params.items():
            if name not in arrays:
                problems.append(f"missing key {name!r} (shape {param.shape})")
            elif arrays[name].shape != param.shape:
                problems.append(f"shape mismatch for {name!r}: the model has {param.shape}, got {arrays[name].shape}")
            elif arrays[name].dtype.kind not in "fiu":
                problems.append(f"{name!r} holds dtype {arrays[name].dtype}; expected numbers")
            elif not np.all(np.isfinite(arrays[name])):
                bad = int(np.sum(~np.isfinite(arrays[name])))
                problems.append(f"{name!r} holds {bad} NaN or infinite value{'s' if bad != 1 else ''}")
        problems += [f"unexpected key {name!r} (shape {arrays[name].shape})" for name in arrays if name not in params]
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        cast = [f"{name!r} from {arrays[name].dtype} to {param.dtype}" for name, param in params.items()
                 if arrays[name].dtype != param.dtype]
        if cast:
            warnings.warn(f"{type(self).__name__}.load_state_dict: cast {', '.join(cast)}", stacklevel=2)
        for name, param in params.items():
            param.data = arrays[name].astype(param.dtype)
        return self

    def save(self, path):
        """Write `state_dict()` to the .npz file `path` (as `np.savez` does): a temporary file, then a rename."""
        state = self.state_dict()

        def write_npz(file):
            with zipfile.ZipFile(file, "w") as archive:
                for name, array in state.items():
                    with archive.open(f"{name}.npy", "w") as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)

        write_atomically(path, write_npz)

    def load(self, path):
        """Read a file written by `save` (never unpickling) and `load_state_dict` it; returns the module."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise IsADirectoryError(f"cannot load {path!r}: it is a directory; expected an .npz file written by save")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cannot load {path!r}: no such file")
        with open(path, "rb") as file:
            if file.read(4) != b"PK\x03\x04":
                raise ValueError(f"cannot load {path!r}: it is not an .npz file (no zip header)")
            file.seek(0)
            try:
                with np.load(file, allow_pickle=False) as saved:
                    state = {name: saved[name] for name in saved.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(f"cannot load {path!r} as a saved model (.npz): {error}") from error
        try:
            return self.load_state_dict(state)
        except ValueError as error:
            raise ValueError(f"{path!r} does not fit this model: {error}") from error


class Linear(Module):
    """y = x Wᵀ + b, W of shape (out_features, in_features); PyTorch's init, uniform in ±1/sqrt(in_features)."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        for name, size in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
                raise ValueError(f"Linear: {name} must be a positive integer, got {size!r}")
        bound = 1 / np.sqrt(in_features)
        generator = _generator(rng)
        self.weight = Tensor(
            generator.uniform(-bound, bound, (out_features, in_features)).astype(dtype), requires_grad=True
        )
        self.bias = None
        if bias:
            self.bias = Tensor(generator.uniform(-bound, bound, (out_features,)).astype(dtype), requires_grad=True)

    def forward(self, x):
        try:
            return F.linear(x, self.weight, self.bias)
        except ValueError:
            if x.ndim == 0 or x.shape[-1] != self.weight.shape[1]:  # said again, named after the model
                raise ValueError(
                    f"{type(self).__name__}: expected inputs with {self.weight.shape[1]} features in the last axis, "
                    f"got shape {x.shape}"
                ) from None
            raise


class ReLU(Module):
    def forward(self, x):
        return x.relu()


class Tanh(Module):
    def forward(self, x):
        return x.tanh()


class Sigmoid(Module):
    def forward(self, x):
        return x.sigmoid()


class Sequential(Module):
    """Runs its layers in order; their parameters are named `layers.<index>.<name>`."""

    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}


class MLP(Sequential):
    """Linear layers of the given sizes with an activation between them (none after the last)."""

    def __init__(self, sizes, activation="relu", rng=None, dtype=np.float32):
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if len(sizes) < 2:
            raise ValueError(f"MLP: sizes needs at least an input and an output size, got {sizes}")
        generator = _generator(rng)
        layers = []
        for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(n_in, n_out, rng=generator, dtype=dtype))
            if index < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)


class SoftmaxRegression(Linear):
    """Logits z = W x + b with W (n_classes, n_features); p(y = k | x) = softmax(z)_k."""

    def __init__(self, n_features, n_classes, rng=None, dtype=np.float32):
        super().__init__(n_features, n_classes, rng=rng, dtype=dtype)

    def predict_proba(self, x):
        return F.softmax(self(x), axis=-1)


class LogisticRegression(Linear):
    """Logit z = w·x + b with weight (1, n_features), returned with shape (N,); p(y = 1 | x) = σ(z)."""

    def __init__(self, n_features, rng=None, dtype=np.float32):
        super().__init__(n_features, 1, rng=rng, dtype=dtype)

    def forward(self, x):
        return super().forward(x).reshape(-1)

    def predict_proba(self, x):
        return self(x).sigmoid()
