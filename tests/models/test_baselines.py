"""The scikit-learn models' own promises (the registry tests cover what every model shares)."""

from __future__ import annotations

import numpy as np

from medtorch.registry import create_model


def test_extra_trees_keep_their_size_bounded_on_a_large_table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 5))
    y = (X[:, 0] + rng.normal(size=4000) > 0).astype(int)  # noisy: fully grown trees would take ~1000 leaves each
    model = create_model("extra_trees", task_type="binary", seed=0, n_estimators=5).fit(X, y)
    assert max(tree.tree_.n_leaves for tree in model.estimators_) <= 256
    unbounded = create_model("extra_trees", task_type="binary", seed=0, n_estimators=5, max_leaf_nodes=None).fit(X, y)
    assert min(tree.tree_.n_leaves for tree in unbounded.estimators_) > 256
