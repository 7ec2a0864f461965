"""wedgenet: certifiably optimal, interpretable two-layer ReLU networks.

Pipeline: data -> :class:`~wedgenet.dictionary.WedgeDictionary` -> convex program
(:mod:`wedgenet.programs`, :mod:`wedgenet.workingset`) -> solution -> network
(:class:`~wedgenet.network.TwoLayerNetwork`), each neuron with its index set.
"""

from wedgenet.arrangement import (
    ArrangementBound,
    TooManyPatterns,
    arrangement_lower_bound,
    l2_gap_report,
)
from wedgenet.dictionary import Atoms, WedgeDictionary, dictionary_size
from wedgenet.exceptions import DictionaryTooLarge, SolveAborted, WedgeNetError
from wedgenet.interrupt import stop_when
from wedgenet.layers import as_layers
from wedgenet.network import IndexSet, Neuron, TwoLayerNetwork
from wedgenet.polish import PolishResult, polish, polish_layer
from wedgenet.solve import (
    SolveResult,
    dictionary_for,
    network_objective,
    price_range,
    sample_index_sets,
    seed_index_sets,
    solve,
    solve_path,
)
from wedgenet.threelayer import ThreeLayerResult, solve_three_layer

__all__ = [
    "ArrangementBound",
    "TooManyPatterns",
    "arrangement_lower_bound",
    "as_layers",
    "l2_gap_report",
    "Atoms",
    "DictionaryTooLarge",
    "IndexSet",
    "Neuron",
    "PolishResult",
    "SolveAborted",
    "SolveResult",
    "TwoLayerNetwork",
    "WedgeDictionary",
    "WedgeNetError",
    "dictionary_size",
    "network_objective",
    "polish",
    "polish_layer",
    "solve",
    "solve_path",
    "solve_three_layer",
    "ThreeLayerResult",
    "sample_index_sets",
    "seed_index_sets",
    "price_range",
    "dictionary_for",
    "stop_when",
]

__version__ = "0.1.0"
