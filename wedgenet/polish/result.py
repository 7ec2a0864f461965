"""What polishing returns: the network, its objectives and metrics, and one report per
neuron (index set, formula, angle to the original, residual)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wedgenet.layers import Layer
from wedgenet.network import IndexSet, TwoLayerNetwork

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

@dataclass
class NeuronReport:
    """What became of one candidate neuron (see :class:`PolishResult`)."""

    layer: int
    kind: str  # "polished" or "original"
    source: int  # index of the neuron of the input network it comes from
    index_set: IndexSet | None
    formula: str
    angle_deg: float | None
    weight_angle_deg: float | None
    residual: float | None
    survived: bool
    output_norm: float | None
    normal: FloatArray | None = None  # unit (w, b) on the layer input

    def to_dict(self) -> dict[str, Any]:
        def f(v: float | None) -> float | None:
            return None if v is None or not np.isfinite(v) else float(v)

        return {
            "layer": int(self.layer),
            "kind": self.kind,
            "source": int(self.source),
            "index_set": None if self.index_set is None else self.index_set.to_dict(),
            "formula": self.formula,
            "angle_deg": f(self.angle_deg),
            "weight_angle_deg": f(self.weight_angle_deg),
            "residual": f(self.residual),
            "survived": bool(self.survived),
            "output_norm": f(self.output_norm),
        }


@dataclass
class PolishResult:
    """The polished network and the report (all objectives use docs/conventions.md section 2).

    Attributes
    ----------
    network : TwoLayerNetwork or None
        The result as a two-layer network (``None`` for deep inputs; see ``layers``).
        Surviving polished neurons carry their :class:`IndexSet` and formula; surviving
        original neurons have ``index_set=None`` and ``extra["kind"] == "original"``.
    layers : list of (W, b)
        The result as (in, out) layers (any depth).
    objective_before : float
        ``P`` of the given weights, as given.
    objective_rebalanced : float
        ``P`` of the given network after the optimal rescaling alone (Sec. 9.12): the
        feasible point of the refit. ``<= objective_before``.
    objective_after : float
        ``P`` of the result. ``<= objective_rebalanced`` for ``refit`` in ``{"union",
        "original"}``; for ``"polished"`` it may be higher (``price``).
    metrics : dict
        ``{"train": {"before": {...}, "after": {...}}, "validation": {...}}``: mean loss and
        MSE (squared loss) or accuracy (classification).
    neurons : list of NeuronReport
        Every candidate neuron: polished ones (with index set, formula, angle to the
        original, residual) and the original ones of the refit layer.
    selected : str
        Which candidate was returned: ``"refit"`` (the requested refit);
        ``"feasible_point"`` (the solver's point was no better than the input network's own
        point in the program); for deep nets with ``refit="union"`` also
        ``"refit_polished_only"`` / ``"refit_original_only"`` (one path alone had the lower
        ``P``) or ``"input_rebalanced"`` (the input network, rescaled, was best). The ``P``
        of every candidate is in ``extra["candidates"]``.
    refit_gap : float
        Relative duality gap of the refit program over its columns.
    """

    network: TwoLayerNetwork | None
    layers: list[Layer]
    objective_before: float
    objective_rebalanced: float
    objective_after: float
    metrics: dict[str, Any]
    neurons: list[NeuronReport]
    refit: str
    selected: str
    refit_gap: float
    refit_solver: str
    params: dict[str, Any]
    timings: dict[str, float]
    train_indices: IntArray | None = None
    validation_indices: IntArray | None = None
    classes: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def price(self) -> float:
        """``objective_after - objective_before`` (negative: an improvement)."""
        return self.objective_after - self.objective_before

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def summary(self) -> dict[str, Any]:
        pol = [r for r in self.neurons if r.kind == "polished"]
        orig = [r for r in self.neurons if r.kind == "original"]
        last = max((r.layer for r in self.neurons), default=1)
        return {
            "n_polished": len(pol),
            "n_polished_ok": sum(r.index_set is not None for r in pol),
            "n_surviving_polished": sum(r.survived for r in pol if r.layer == last),
            "n_surviving_original": sum(r.survived for r in orig if r.layer == last),
            "max_residual": max((r.residual for r in pol if r.residual is not None
                                 and np.isfinite(r.residual)), default=0.0),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (plain floats, lists and strings)."""

        def plain(v: Any) -> Any:
            return v.item() if hasattr(v, "item") else v

        return {
            "objective_before": float(self.objective_before),
            "objective_rebalanced": float(self.objective_rebalanced),
            "objective_after": float(self.objective_after),
            "price": float(self.price),
            "refit": self.refit,
            "selected": self.selected,
            "refit_gap": float(self.refit_gap),
            "refit_solver": self.refit_solver,
            "metrics": _plain_tree(self.metrics),
            "summary": _plain_tree(self.summary()),
            "neurons": [r.to_dict() for r in self.neurons],
            "params": _plain_tree(self.params),
            "timings": {k: float(v) for k, v in self.timings.items()},
            "classes": None if self.classes is None else [plain(c) for c in self.classes],
            "network": None if self.network is None else self.network.to_dict(),
            "layers": [
                {"W": np.asarray(W).tolist(), "b": np.asarray(b).tolist()} for W, b in self.layers
            ],
            "extra": _plain_tree(self.extra),
        }


def _plain_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_tree(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj



_X_SAMPLE = re.compile(r"x\[(\d+)\]")
_X_ALONE = re.compile(r"(?<![\w\[])x(?![\w\[])")


def layer_formula(base: str, layer: int) -> str:
    """Rewrite a first-layer formula for the activations ``a{layer-1}`` of a deeper layer."""
    if layer <= 1:
        return base
    a = f"a{layer - 1}"
    s = _X_SAMPLE.sub(lambda mt: f"{a}(x[{mt.group(1)}])", base)
    return _X_ALONE.sub(f"{a}(x)", s)


