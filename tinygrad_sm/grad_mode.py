"""Grad mode: whether ops record nodes (`no_grad`, `enable_grad`, `set_grad_enabled`), and which nn.Modules'
forwards are running (the scope a node keeps). The engine (tensor.py) reads `settings` at every op."""


class _Settings:
    """What recording depends on: grad mode (`no_grad`) and the nn.Modules whose forward is running."""

    def __init__(self):
        self.grad_enabled = True
        self.module_stack = []  # outermost first


settings = _Settings()


class set_grad_enabled:
    """`with set_grad_enabled(mode):` records ops inside the block (mode True) or not (False), then restores."""

    def __init__(self, mode):
        self.mode = mode
        self.previous = []

    def __enter__(self):
        self.previous.append(settings.grad_enabled)
        settings.grad_enabled = self.mode

    def __exit__(self, *exc_info):
        settings.grad_enabled = self.previous.pop()


class no_grad(set_grad_enabled):
    """`with no_grad():` runs ops without recording nodes (inference, optimiser updates)."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """`with enable_grad():` records ops again inside no_grad (a gradient taken within a no_grad forward)."""

    def __init__(self):
        super().__init__(True)
