"""Training the built-in models on the digits: the default recipes, the loop, accuracy."""

import sys
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from tinygrad_sm import data, nn, optim
from tinygrad_sm import functional as F
from tinygrad_sm.files import check_writable
from tinygrad_sm.grad_mode import no_grad
from tinygrad_sm.tensor import Tensor

LOGISTIC_DIGITS = (4, 9)
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: the optimiser, its learning rate, epochs, batch size and weight decay."""

    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    weight_decay: float = 0.0
    momentum: float = 0.9

    def check(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        optim.check_at_least_zero("the learning rate", self.lr)
        optim.check_momentum("the momentum", self.momentum)
        optim.check_at_least_zero("the weight decay", self.weight_decay)
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, got {self.batch_size}")
        return self


RECIPES = {
    "softmax": Recipe(optimizer="adam", lr=0.02, epochs=30, batch_size=32),
    "logistic": Recipe(optimizer="adam", lr=0.05, epochs=20, batch_size=32),
    "mlp": Recipe(optimizer="adam", lr=0.003, epochs=30, batch_size=32),
}
MODELS = tuple(RECIPES)


@dataclass
class Result:
    """A finished run: the model, (mean loss, accuracy) of each epoch's batches, and both final accuracies."""

    name: str
    model: nn.Module
    history: list
    train_accuracy: float
    test_accuracy: float

    def summary(self):
        return f"{self.name}: train accuracy {self.train_accuracy:.2%}, test accuracy {self.test_accuracy:.2%}"


def recipe_for(name, **overrides):
    """The default recipe of model `name` with the given fields replaced (None keeps the default), checked."""
    chosen = {field: value for field, value in overrides.items() if value is not None}
    return replace(RECIPES[_check_model_name(name)], **chosen).check()


def describe(name, recipe, hidden=128):
    """One line saying what is trained, on what, and how."""
    negative, positive = LOGISTIC_DIGITS
    task = f"digit {negative} (label 0) against digit {positive} (label 1)" if name == "logistic" else "ten digits"
    shape = {"softmax": "64-10 softmax regression", "logistic": "64-1 logistic regression",
             "mlp": f"64-{hidden}-10 MLP"}
    if recipe.epochs == 0:
        return f"evaluating the {shape[name]} on the {task} (0 epochs: no training)"
    decay = f", weight decay {recipe.weight_decay:g}" if recipe.weight_decay else ""
    momentum = f" with momentum {recipe.momentum:g}" if recipe.optimizer == "sgd" and recipe.momentum else ""
    epochs = f"{recipe.epochs} epoch{'s' if recipe.epochs != 1 else ''}"
    return (
        f"training the {shape[name]} on the {task}: {recipe.optimizer}{momentum} at lr {recipe.lr:g}, "
        f"{epochs} of batches of {recipe.batch_size}{decay}"
    )


def load_task(name):
    """(X_train, X_test, y_train, y_test) for a model: the ten digits, or 4 (label 0) against 9 for `logistic`."""
    _check_model_name(name)
    if name == "logistic":
        negative, positive = LOGISTIC_DIGITS
        return data.load_binary_digits(negative=negative, positive=positive)
    return data.load_digits()


def build_model(name, n_features=64, hidden=128, rng=None):
    """softmax: 64 -> 10 linear; logistic: 64 -> 1 linear; mlp: 64 -> hidden -> 10 with ReLU."""
    _check_model_name(name)
    if name == "logistic":
        return nn.LogisticRegression(n_features, rng=rng)
    if name == "softmax":
        return nn.SoftmaxRegression(n_features, 10, rng=rng)
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"the hidden layer size must be a positive integer, got {hidden!r}")
    return nn.MLP([n_features, hidden, 10], rng=rng)


def make_optimizer(model, recipe):
    if recipe.optimizer == "adam":
        return optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def loss_and_predictions(model, X, y):
    """The fused loss of the model's logits on (X, y) and the predicted labels."""
    logits = model(Tensor(X))
    if isinstance(model, nn.LogisticRegression):
        return F.binary_cross_entropy_with_logits(logits, y), (logits.data > 0).astype(y.dtype)
    return F.softmax_cross_entropy(logits, y), logits.data.argmax(axis=1)


def accuracy(model, X, y):
    """The share of rows of X whose predicted label is y."""
    with no_grad():
        _, predicted = loss_and_predictions(model, X, y)
    return float(np.mean(predicted == y))


def fit(model, X, y, recipe, rng, progress=True):
    """Mini-batch training. With `progress`, each epoch shows its running loss and accuracy on stderr: a tqdm bar
    on a terminal, else (a log, a pipe) one plain line when the epoch ends."""
    optimizer = make_optimizer(model, recipe)
    history = []
    model.train()
    for epoch in range(recipe.epochs):
        total_loss, correct, seen = 0.0, 0, 0
        bar = _epoch_bar(X, recipe, epoch, progress)
        for X_batch, y_batch in data.batches(X, y, recipe.batch_size, shuffle=True, seed=rng):
            optimizer.zero_grad()
            loss, predicted = loss_and_predictions(model, X_batch, y_batch)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(X_batch)
            correct += int(np.sum(predicted == y_batch))
            seen += len(X_batch)
            if bar is not None:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", accuracy=f"{correct / seen:.4f}", refresh=False)
                bar.update()
        if bar is not None:
            bar.close()
        elif progress:
            print(f"epoch {epoch + 1:>2}/{recipe.epochs}: loss {total_loss / seen:.4f}, accuracy {correct / seen:.4f}",
                  file=sys.stderr, flush=True)
        history.append((total_loss / seen, correct / seen))
    model.eval()
    return history


def _epoch_bar(X, recipe, epoch, progress):
    """A tqdm bar for one epoch when `progress` is on and stderr is a terminal, else None."""
    if not (progress and sys.stderr.isatty()):
        return None
    return tqdm(total=-(-len(X) // recipe.batch_size), desc=f"epoch {epoch + 1:>2}/{recipe.epochs}", unit="batch")


def train(name, recipe=None, hidden=128, seed=0, load=None, save=None, progress=True):
    """Build (or `load`) a model, train it with `recipe` (default: its own), evaluate it, and `save` it.

    With `progress`, print what is trained (`describe`) and each epoch's progress (on stderr; see `fit`).
    The split is fixed; `seed` sets the initial weights and the batch order, so the same seed gives the same numbers.
    A bad save path or a file that does not fit the model is reported before any training or writing.
    """
    recipe = (recipe or RECIPES[_check_model_name(name)]).check()
    if save is not None:
        check_writable(save)
    rng = np.random.default_rng(seed)
    model = build_model(name, hidden=hidden, rng=rng)
    if load is not None:
        model.load(load)
    if progress:
        print(describe(name, recipe, hidden=hidden), flush=True)
    X_train, X_test, y_train, y_test = load_task(name)
    history = fit(model, X_train, y_train, recipe, rng, progress=progress)
    if save is not None:
        model.save(save)
    return Result(name, model, history, accuracy(model, X_train, y_train), accuracy(model, X_test, y_test))


def _check_model_name(name):
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return name

