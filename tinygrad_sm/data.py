"""The digits data set (8x8 images, 10 classes), shipped in the package as digits.npz, splits and batches.

digits.npz is scikit-learn's copy of the UCI optical recognition of handwritten digits test set (E. Alpaydin and
C. Kaynak, 1998; CC BY 4.0): `images` (1797, 8, 8) uint8 pixels 0..16 and `labels` (1797,) uint8 digits 0-9.
"""

from importlib import resources

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
    """All 1797 images as (features scaled from 0..16 to [0, 1] as float32, shape (1797, 64); labels 0-9)."""
    with resources.files("tinygrad_sm").joinpath("digits.npz").open("rb") as file, np.load(file) as saved:
        images, labels = saved["images"], saved["labels"]
    return (images.reshape(len(images), -1) / np.float32(16.0)).astype(np.float32), labels


def _split(features, labels, seed, test_size):
    """A stratified split: ceil(test_size * N) test rows, each class keeping its share (within one row) in both
    parts, both parts in random order; the same seed gives the same split."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie strictly between 0 and 1, got {test_size!r}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    shares = counts * test_size
    per_class = np.floor(shares).astype(int)
    missing = int(np.ceil(test_size * len(labels))) - per_class.sum()
    per_class[np.argsort(per_class - shares, kind="stable")[:missing]] += 1  # the largest remainders get one more
    test = []
    for label, count in zip(classes, per_class):
        test.extend(rng.permutation(np.flatnonzero(labels == label))[:count])
    test = rng.permutation(np.array(test))
    train = rng.permutation(np.setdiff1d(np.arange(len(labels)), test))
    return features[train], features[test], labels[train], labels[test]
