"""Optimisers with PyTorch's update rules; weight decay is added to the gradient, as PyTorch's SGD and Adam do."""

import math

import numpy as np

from tinygrad_sm.tensor import Tensor


class Optimizer:
    """Holds the parameters and their per-parameter state; `step()` updates each parameter's array in place."""

    def __init__(self, params, lr, weight_decay):
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors, got a single Tensor")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty list of parameters")
        for index, param in enumerate(self.params):
            if not isinstance(param, Tensor) or param.dtype.kind != "f":
                raise TypeError(
                    f"{type(self).__name__}: parameter {index} must be a floating-point Tensor, got {param!r:.60}"
                )
        if len({id(param) for param in self.params}) != len(self.params):
            raise ValueError(f"{type(self).__name__}: a parameter appears more than once in the list")
        check_at_least_zero(f"{type(self).__name__}: learning rate", lr)
        check_at_least_zero(f"{type(self).__name__}: weight_decay", weight_decay)
        self.lr = lr
        self.weight_decay = weight_decay
        self.state = {}

    def zero_grad(self):
        for param in self.params:
            param.grad = None

    def _gradients(self):
        """(param, g) for every param with a gradient, g = grad + weight_decay * param."""
        for param in self.params:
            if param.grad is not None:
                grad = param.grad.data.astype(param.dtype, copy=False)
                if self.weight_decay:
                    grad = grad + self.weight_decay * param.data
                yield param, grad


class SGD(Optimizer):
    """b ← μ b + g (b = g at the first step), p ← p - lr b; without momentum p ← p - lr g; g = ∇ + λ p."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        check_momentum(f"{type(self).__name__}: momentum", momentum)
        self.momentum = momentum

    def step(self):
        for param, grad in self._gradients():
            if self.momentum:
                state = self.state.setdefault(id(param), {})
                if "momentum_buffer" in state:
                    grad = self.momentum * state["momentum_buffer"] + grad
                else:
                    grad = grad.copy()
                state["momentum_buffer"] = grad
            param.data = param.data - self.lr * grad  # a new array: graphs and callers keep the old values


class Adam(Optimizer):
    """m ← β₁m + (1-β₁)g, v ← β₂v + (1-β₂)g², p ← p - lr/(1-β₁ᵗ) · m / (sqrt(v)/sqrt(1-β₂ᵗ) + ε)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        if len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        for index, beta in enumerate(betas):
            check_momentum(f"Adam: betas[{index}]", beta)
        check_at_least_zero(f"{type(self).__name__}: eps", eps)
        self.betas = tuple(betas)
        self.eps = eps

    def step(self):
        beta1, beta2 = self.betas
        for param, grad in self._gradients():
            state = self.state.setdefault(id(param), {})
            if not state:
                state.update(step=0, exp_avg=np.zeros_like(param.data), exp_avg_sq=np.zeros_like(param.data))
            state["step"] += 1
            state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * grad
            state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad * grad
            step_size = self.lr / (1 - beta1 ** state["step"])
            denominator = np.sqrt(state["exp_avg_sq"]) / math.sqrt(1 - beta2 ** state["step"]) + self.eps
            param.data = param.data - step_size * state["exp_avg"] / denominator


def check_at_least_zero(name, value):
    """The rule for every hyperparameter here (and for a training recipe's): a finite number >= 0."""
    if not 0 <= value < math.inf:
        raise ValueError(f"{name} must be >= 0 and finite, got {value}")


def check_momentum(name, value):
    """Momentum and Adam's betas: a number in [0, 1); at 1 or above the running averages never forget and diverge."""
    if not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
