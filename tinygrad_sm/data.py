"""The digits data set (8x8 images, 10 classes; it ships with scikit-learn, no download), splits and batches."""

import numpy as np


def load_digits(seed=0, test_size=0.2):
    """(X_train, X_test, y_train, y_test): features in [0, 1] as float32, int64 labels, a fixed stratified split."""
    features, targets = _digits()
    return _split(features, targets.astype(np.int64), seed, test_size)


def load_binary_digits(negative=4, positive=9, seed=0, test_size=0.2):
    """The digits `negative` (label 0) and `positive` (label 1) only, split like `load_digits`; labels float32."""
    for name, digit in (("negative", negative), ("positive", positive)):
        if digit not in range(10):
            raise ValueError(f"load_binary_digits: {name} must be a digit 0-9, got {digit!r}")
    if negative == positive:
        raise ValueError(f"load_binary_digits: negative and positive must differ, got {negative} twice")
    features, targets = _digits()
    chosen = (targets == negative) | (targets == positive)
    return _split(features[chosen], (targets[chosen] == positive).astype(np.float32), seed, test_size)


def batches(X, y, batch_size, shuffle=True, seed=0):
    """Yield (X_batch, y_batch) pairs that cover the data once; the last batch may be smaller."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive integer, got {batch_size!r}")
    if len(X) != len(y):
        raise ValueError(f"batches: X has {len(X)} rows but y has {len(y)}")
    order = np.random.default_rng(seed).permutation(len(X)) if shuffle else np.arange(len(X))
    for start in range(0, len(X), batch_size):
        chosen = order[start : start + batch_size]
        yield X[chosen], y[chosen]


def _digits():
    """All 1797 images as (features scaled from 0..16 to [0, 1] as float32, labels 0-9)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target


def _split(features, labels, seed, test_size):
    """A stratified split: each class keeps its share in both parts; the same seed gives the same split."""
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(features, labels, test_size=test_size, random_state=seed, stratify=labels))
