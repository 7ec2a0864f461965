"""Three-layer networks of parallel blocks, read off a three-layer program.

``f(x) = sum_j w3_j relu(w2_j relu(x . w1_j + b1_j) + b2_j) + b3`` with the objective

    P = L(f(X), y) + (lam / 3) sum_j (||w1_j||_1^3 + |w2_j|^3 + |w3_j|^3)

(biases unregularized). A column ``(w, b, j0, shape)`` of the dictionary with coefficient
``z`` becomes the block with balanced scaling ``a = |z|^(1/3)`` (Lemma 27):

    w1 = a w,  b1 = a b,  w2 = +-a,  b2 = -+a^2 u_j0,  w3 = z / a^2

so that ``w3 relu(w2 relu(x . w1 + b1) + b2) = z * column(x)`` and each of the three norms is
``|z|^(1/3)``: the block's regularizer is ``lam |z|``, the program's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wedgenet.threelayer.dictionary import FirstLayerIndexSet

FloatArray = NDArray[np.float64]


@dataclass
class Block:
    """One block: a first-layer neuron followed by one second-layer unit.

    Attributes
    ----------
    w1 : ndarray of shape (d,)
    b1, w2, b2, w3 : float
    index_set : FirstLayerIndexSet or None
        The generators the first-layer direction is orthogonal to (None for a block that is
        not a closed form, e.g. from the non-convex trainer).
    bias_sample : int or None
        ``l`` with ``b1 = -x_l . w1`` (Theorem 13), None without first-layer bias.
    threshold_sample : int or None
        ``j0``: the second-layer unit switches where the first-layer value equals sample
        ``j0``'s.
    shape : {"up", "down"} or None
        ``up``: ``(u - u_j0)_+`` (``w2 > 0``); ``down``: ``(u_j0 - u)_+`` (``w2 < 0``).
    formula : str
    residual : float
        Orthogonality residual of ``w1`` to its generators (0 when exact).
    """

    w1: FloatArray
    b1: float
    w2: float
    b2: float
    w3: float
    index_set: FirstLayerIndexSet | None = None
    bias_sample: int | None = None
    threshold_sample: int | None = None
    shape: str | None = None
    formula: str = ""
    residual: float = 0.0

    def hidden(self, X: FloatArray) -> FloatArray:
        """The block's second-layer activation ``relu(w2 relu(X w1 + b1) + b2)``, shape (n,)."""
        u = np.maximum(np.asarray(X, dtype=float) @ self.w1 + self.b1, 0.0)
        return np.asarray(np.maximum(self.w2 * u + self.b2, 0.0))

    def regularization(self) -> float:
        """``(1/3) (||w1||_1^3 + |w2|^3 + |w3|^3)``."""
        return (float(np.abs(self.w1).sum()) ** 3 + abs(self.w2) ** 3 + abs(self.w3) ** 3) / 3.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "w1": [float(v) for v in self.w1],
            "b1": float(self.b1),
            "w2": float(self.w2),
            "b2": float(self.b2),
            "w3": float(self.w3),
            "index_set": None if self.index_set is None else self.index_set.to_dict(),
            "bias_sample": self.bias_sample,
            "threshold_sample": self.threshold_sample,
            "shape": self.shape,
            "formula": self.formula,
            "residual": float(self.residual),
        }


@dataclass
class ThreeLayerNetwork:
    """``f(x) = sum_j w3_j relu(w2_j relu(x . w1_j + b1_j) + b2_j) + b3`` (scalar output).

    Attributes
    ----------
    blocks : list of Block
    output_bias : float
        ``b3``.
    n_features : int
    """

    blocks: list[Block]
    output_bias: float
    n_features: int
    extra: dict[str, Any] = field(default_factory=dict)

    def decision_function(self, X: FloatArray) -> FloatArray:
        """Network output, shape (n,)."""
        X = np.asarray(X, dtype=float)
        out = np.full(X.shape[0], float(self.output_bias))
        for blk in self.blocks:
            out += blk.w3 * blk.hidden(X)
        return out

    def regularization(self) -> float:
        """``(1/3) sum_j (||w1_j||_1^3 + |w2_j|^3 + |w3_j|^3)`` (multiply by ``lam``)."""
        return float(sum(blk.regularization() for blk in self.blocks))

    def to_arrays(self) -> dict[str, FloatArray]:
        """``W1`` (d, m), ``b1``, ``w2``, ``b2``, ``w3`` (m,) and ``b3`` (1,)."""
        m = len(self.blocks)
        W1 = (
            np.stack([b.w1 for b in self.blocks], axis=1)
            if m
            else np.zeros((self.n_features, 0))
        )
        return {
            "W1": W1,
            "b1": np.array([b.b1 for b in self.blocks], dtype=float),
            "w2": np.array([b.w2 for b in self.blocks], dtype=float),
            "b2": np.array([b.b2 for b in self.blocks], dtype=float),
            "w3": np.array([b.w3 for b in self.blocks], dtype=float),
            "b3": np.array([float(self.output_bias)]),
        }

    def to_layers(self) -> list[tuple[FloatArray, FloatArray]]:
        """The network as three dense layers ``[(W, b), ...]`` in (d_in, d_out) layout, ReLU
        between them: ``W1`` (d, m), ``b1``; a diagonal ``diag(w2)`` (m, m), ``b2``; ``w3``
        (m, 1), ``[b3]``. Any tool that runs ``relu(x W1 + b1) ... W3 + b3`` (``wedgenet.export``,
        ONNX, ``torch.nn.Sequential``) computes :meth:`decision_function`."""
        a = self.to_arrays()
        m = a["w2"].shape[0]
        return [(a["W1"], a["b1"]), (np.diag(a["w2"]).reshape(m, m), a["b2"]),
                (a["w3"].reshape(m, 1), a["b3"])]

    @classmethod
    def from_arrays(
        cls,
        W1: FloatArray,
        b1: FloatArray,
        w2: FloatArray,
        b2: FloatArray,
        w3: FloatArray,
        b3: float,
    ) -> ThreeLayerNetwork:
        """A network without index sets from plain arrays (as :meth:`to_arrays`)."""
        W1 = np.asarray(W1, dtype=float)
        blocks = [
            Block(W1[:, j].copy(), float(b1[j]), float(w2[j]), float(b2[j]), float(w3[j]))
            for j in range(W1.shape[1])
        ]
        return cls(blocks, float(b3), int(W1.shape[0]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_features": int(self.n_features),
            "n_blocks": len(self.blocks),
            "output_bias": float(self.output_bias),
            "blocks": [b.to_dict() for b in self.blocks],
        }


__all__ = ["Block", "ThreeLayerNetwork"]
