"""Three-layer ReLU networks as convex programs (paper Theorems 12 and 13; docs/threelayer.md).

* :class:`ThreeLayerDictionary`: the dictionary as a spec (generator pool, first-layer
  directions, bias and threshold samples, canonical columns, size);
* :class:`ThreeLayerColumns`: its streamed pricing (one sort per direction prices every
  threshold and shape), a :class:`wedgenet.pricing.ColumnSource`;
* :func:`solve_three_layer`: certified solve and reconstruction of the network of blocks
  ``f(x) = sum_j w3_j relu(w2_j relu(x . w1_j + b1_j) + b2_j) + b3``;
* :func:`train_three_layer_nonconvex`: an independent non-convex trainer (evidence).
"""

from wedgenet.threelayer.dictionary import (
    FirstLayerIndexSet,
    ThreeLayerDictionary,
    n_direction_subsets,
    threelayer_dictionary_size,
)
from wedgenet.threelayer.network import Block, ThreeLayerNetwork
from wedgenet.threelayer.nonconvex import (
    NonConvexThreeLayerResult,
    train_three_layer_nonconvex,
)
from wedgenet.threelayer.pricing import ThreeLayerColumns, direction_scores
from wedgenet.threelayer.solve import (
    ThreeLayerResult,
    network_objective,
    solve_three_layer,
)

__all__ = [
    "Block",
    "FirstLayerIndexSet",
    "NonConvexThreeLayerResult",
    "ThreeLayerColumns",
    "ThreeLayerDictionary",
    "ThreeLayerNetwork",
    "ThreeLayerResult",
    "direction_scores",
    "n_direction_subsets",
    "network_objective",
    "solve_three_layer",
    "threelayer_dictionary_size",
    "train_three_layer_nonconvex",
]
