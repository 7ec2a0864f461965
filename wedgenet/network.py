"""Two-layer ReLU networks with interpretable neurons, and solve results.

Conventions (docs/conventions.md section 2): a network with ``m`` hidden ReLU units and ``c``
outputs is

    f(x) = sum_j a_j * relu(w_j . x + b_j) + c0

stored as ``W`` of shape (d, m), ``b`` of shape (m,), ``A`` of shape (m, c) and ``c0`` of
shape (c,). Its training objective for a loss ``L`` and strength ``lam`` is

    P = L(f(X), y) + (lam / 2) * sum_j ( ||w_j||_p^2 + ||a_j||_2^2 )

with biases unregularized. Every neuron carries its :class:`IndexSet`: the training samples
(row indices into the dataset as given) and basis directions whose hyperplane it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class IndexSet:
    """The training samples and basis directions that define a neuron.

    Attributes
    ----------
    samples : tuple of int
        Row indices into the dataset (0-based, ascending) of the samples the neuron's
        hyperplane passes through (for biased neurons: through the lifted points ``[x_i, 1]``).
    directions : tuple of int
        Basis directions ``e_k`` (0-based, ascending) contained in the hyperplane.
    sign : int
        Orientation, +1 or -1: the neuron is ``relu(sign * cross(generators) . [x, 1])``.
    """

    samples: tuple[int, ...]
    directions: tuple[int, ...] = ()
    sign: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": list(self.samples),
            "directions": list(self.directions),
            "sign": int(self.sign),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSet:
        return cls(
            samples=tuple(int(i) for i in data.get("samples", ())),
            directions=tuple(int(k) for k in data.get("directions", ())),
            sign=int(data.get("sign", 1)),
        )


@dataclass
class Neuron:
    """One hidden unit of a two-layer network, with its closed form.

    Attributes
    ----------
    weight : ndarray of shape (d,)
        First-layer weight ``w_j`` (balanced scaling, Sec. 9.12).
    bias : float
        Hidden bias ``b_j`` (0 for bias-free networks).
    output_weight : ndarray of shape (c,)
        Output weights ``a_j``.
    index_set : IndexSet or None
        Samples and directions defining the neuron; ``None`` for a neuron that is not a
        closed form (e.g. an unpolished neuron kept by a refit).
    formula : str
        Human-readable closed form, e.g. ``dist+(x, Aff(x[3], x[17]))``.
    residual : float
        Orthogonality residual ``max_i |g_i . (w, b)| / (||g_i|| ||(w, b)||)`` over the
        generators of the index set (0 when exact).
    """

    weight: FloatArray
    bias: float
    output_weight: FloatArray
    index_set: IndexSet | None
    formula: str = ""
    residual: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weight": [float(v) for v in self.weight],
            "bias": float(self.bias),
            "output_weight": [float(v) for v in np.atleast_1d(self.output_weight)],
            "index_set": None if self.index_set is None else self.index_set.to_dict(),
            "formula": self.formula,
            "residual": float(self.residual),
        }
        out.update(self.extra)
        return out


@dataclass
class TwoLayerNetwork:
    """A two-layer ReLU network ``f(x) = relu(x W + b) A + c0``.

    Attributes
    ----------
    neurons : list of Neuron
        The hidden units, in order.
    output_bias : ndarray of shape (c,)
        The free output bias ``c0``.
    n_features : int
        Input dimension ``d``.
    """

    neurons: list[Neuron]
    output_bias: FloatArray
    n_features: int

    @property
    def n_outputs(self) -> int:
        return int(np.atleast_1d(self.output_bias).shape[0])

    @property
    def W(self) -> FloatArray:  # noqa: N802 - paper notation
        if not self.neurons:
            return np.zeros((self.n_features, 0))
        return np.stack([nr.weight for nr in self.neurons], axis=1)

    @property
    def b(self) -> FloatArray:
        return np.array([nr.bias for nr in self.neurons], dtype=float)

    @property
    def A(self) -> FloatArray:  # noqa: N802 - paper notation
        if not self.neurons:
            return np.zeros((0, self.n_outputs))
        return np.stack([np.atleast_1d(nr.output_weight) for nr in self.neurons], axis=0)

    def hidden(self, X: FloatArray) -> FloatArray:
        """Hidden activations ``relu(X W + b)``, shape (n, m)."""
        X = np.asarray(X, dtype=float)
        return np.maximum(X @ self.W + self.b, 0.0)

    def decision_function(self, X: FloatArray) -> FloatArray:
        """Network output, shape (n, c) (or (n,) when c == 1)."""
        out = self.hidden(X) @ self.A + np.atleast_1d(self.output_bias)
        return out[:, 0] if self.n_outputs == 1 else out

    def regularization(self, p: int) -> float:
        """``(1/2) sum_j ||w_j||_p^2 + ||a_j||_2^2`` (multiply by ``lam``)."""
        total = 0.0
        for nr in self.neurons:
            total += float(np.linalg.norm(nr.weight, ord=p)) ** 2
            total += float(np.linalg.norm(np.atleast_1d(nr.output_weight))) ** 2
        return 0.5 * total

    def to_arrays(self) -> dict[str, FloatArray]:
        """Plain arrays ``W1`` (d, m), ``b1`` (m,), ``W2`` (m, c), ``b2`` (c,)."""
        return {
            "W1": np.ascontiguousarray(self.W, dtype=float),
            "b1": np.ascontiguousarray(self.b, dtype=float),
            "W2": np.ascontiguousarray(self.A, dtype=float),
            "b2": np.ascontiguousarray(np.atleast_1d(self.output_bias), dtype=float),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_features": int(self.n_features),
            "n_outputs": self.n_outputs,
            "n_neurons": len(self.neurons),
            "output_bias": [float(v) for v in np.atleast_1d(self.output_bias)],
            "neurons": [nr.to_dict() for nr in self.neurons],
        }
