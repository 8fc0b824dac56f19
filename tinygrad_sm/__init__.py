"""tinygrad_sm: a small reverse-mode autograd engine on numpy, built to see and trust backprop."""

from tinygrad_sm import autograd, functional, nn, optim
from tinygrad_sm.function import Function
from tinygrad_sm.grad_mode import enable_grad, no_grad, set_grad_enabled
from tinygrad_sm.tensor import Tensor

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "set_grad_enabled", "autograd", "functional", "nn", "optim"]
