"""Optimisers with PyTorch's update rules; weight decay is added to the gradient, as PyTorch's SGD and Adam do."""

import numpy as np


class Optimizer:
    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty list of parameters")
        if not lr >= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = lr

    def zero_grad(self):
        for param in self.params:
            param.grad = None

    def _gradients(self, weight_decay):
        """(param, g) for every param with a gradient, g = grad + weight_decay * param."""
        for param in self.params:
            if param.grad is not None:
                grad = param.grad.data
                yield param, grad + weight_decay * param.data if weight_decay else grad


class SGD(Optimizer):
    """b ← μ b + g (b = g at the first step); p ← p - lr b, with g = ∇ + λ p."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.velocity = {}

    def step(self):
        for param, grad in self._gradients(self.weight_decay):
            if self.momentum:
                key = id(param)
                self.velocity[key] = grad if key not in self.velocity else self.momentum * self.velocity[key] + grad
                grad = self.velocity[key]
            param.data -= self.lr * grad


class Adam(Optimizer):
    """m ← β₁m + (1-β₁)g, v ← β₂v + (1-β₂)g², p ← p - lr m̂ / (sqrt(v̂) + ε), hats bias-corrected."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.steps = 0
        self.moments = {}

    def step(self):
        self.steps += 1
        beta1, beta2 = self.betas
        for param, grad in self._gradients(self.weight_decay):
            first, second = self.moments.get(id(param), (np.zeros_like(param.data), np.zeros_like(param.data)))
            first = beta1 * first + (1 - beta1) * grad
            second = beta2 * second + (1 - beta2) * grad * grad
            self.moments[id(param)] = (first, second)
            first_hat = first / (1 - beta1**self.steps)
            second_hat = second / (1 - beta2**self.steps)
            param.data -= self.lr * first_hat / (np.sqrt(second_hat) + self.eps)
