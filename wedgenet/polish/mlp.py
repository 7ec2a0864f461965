"""The MLP objective of polishing and the assembly of polished paths into one MLP
(pruning, layer-wise rescaling by the optimal positive factors)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wedgenet.layers import Layer, forward
from wedgenet.losses import Loss, get_loss
from wedgenet.programs import group_norms
from wedgenet.validation import check_inputs

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Coefficient rows of the refit below this fraction of the largest are set to zero.
ZERO_REL_TOL = 1e-9


def mlp_objective(
    layers: Sequence[Layer], X: Any, y: Any, *, loss: str | Loss = "squared", lam: float, p: int
) -> float:
    """``P(theta)`` of an MLP given as (in, out) layers (module docstring; docs/conventions.md
    section 2)."""
    loss_obj = get_loss(loss)
    X, Y, _ = check_inputs(X, y, loss_obj)
    return mlp_value(list(layers), X, Y, loss_obj, lam, p)


def regularization(layers: Sequence[Layer], p: int) -> float:
    total = 0.0
    for W, _ in layers[:-1]:
        total += float(np.sum(np.linalg.norm(W, ord=p, axis=0) ** 2))
    total += float(np.sum(layers[-1][0] ** 2))
    return 0.5 * total


def mlp_value(
    layers: Sequence[Layer], X: FloatArray, Y: FloatArray, loss: Loss, lam: float, p: int
) -> float:
    _, U = forward(layers, X)
    return loss.value(U, Y) + lam * regularization(layers, p)



def drop_small_rows(Z: FloatArray) -> FloatArray:
    g = group_norms(Z) if Z.shape[0] else np.zeros(0)
    if g.size and g.max() > 0:
        Z = Z.copy()
        Z[g <= ZERO_REL_TOL * g.max()] = 0.0
    return Z



@dataclass
class NetworkPath:
    """One path of the result network: inner hidden layers, then the last hidden layer.

    ``inner[l]`` is an (in, out) layer acting on the path's previous layer (the first on
    ``X``); ``last`` holds the unit normals ``(w, b)`` of the last hidden layer, one row per
    neuron, acting on the path's last inner layer (or ``X``); ``Z`` their coefficients.
    ``ids[l]`` names the neurons of each hidden layer (indices of the input network's
    neurons they come from).
    """

    name: str
    inner: list[Layer]
    last: FloatArray
    Z: FloatArray
    ids: list[IntArray]


def prune_and_scale(path: NetworkPath, p: int) -> NetworkPath | None:
    """Drop neurons that do not reach the output, then rescale the path (Sec. 9.12, Lemma 27).

    A path with ``k`` inner layers of squared p-norm sums ``R_l`` and last-layer weight
    ``S = sum_j ||Z_j||`` (unit last-layer neurons) has, after scaling inner layer ``l`` by
    ``alpha_l`` (biases by the running product) and balancing the last block, the
    regularization ``sum_l alpha_l^2 R_l + 2 S / prod_l alpha_l``, minimized at
    ``alpha_l^2 R_l = v = (S^2 prod_l R_l)^(1/(k+2))`` with value ``(k + 2) v``. For ``k = 0``
    this is the two-layer balanced rescaling ``2 S``.
    """
    g = group_norms(path.Z) if path.Z.shape[0] else np.zeros(0)
    keep = np.flatnonzero(g > 0)
    if keep.size == 0:
        return None
    last = path.last[keep]
    Z = path.Z[keep]
    ids_last = path.ids[-1][keep]
    k = len(path.inner)
    inner: list[Layer] = []
    inner_ids: list[IntArray] = []
    if k:
        needed = np.flatnonzero(np.any(last[:, :-1] != 0, axis=0))
        last = np.concatenate([last[:, needed], last[:, -1:]], axis=1)
        for li in range(k - 1, -1, -1):
            W, b = path.inner[li]
            W, b = W[:, needed], b[needed]
            inner_ids.append(path.ids[li][needed])
            if li > 0:
                needed = np.flatnonzero(np.any(W != 0, axis=1))
                W = W[needed]
            inner.append((W, b))
        inner.reverse()
        inner_ids.reverse()
    S = float(np.sum(g[keep]))
    R = [float(np.sum(np.linalg.norm(W, ord=p, axis=0) ** 2)) for W, _ in inner]
    alphas = [1.0] * k
    if k and S > 0 and all(r > 0 for r in R):
        logv = (2.0 * math.log(S) + sum(math.log(r) for r in R)) / (k + 2)
        alphas = [math.exp(0.5 * (logv - math.log(r))) for r in R]
    scaled: list[Layer] = []
    cum = 1.0
    for (W, b), a in zip(inner, alphas, strict=True):
        cum *= a
        scaled.append((W * a, b * cum))
    beta = cum
    gk = g[keep]
    last = last.copy()
    last[:, -1] *= beta
    last *= np.sqrt(gk / beta)[:, None]
    A_out = Z / np.sqrt(gk * beta)[:, None]
    return NetworkPath(name=path.name, inner=scaled, last=last, Z=A_out, ids=inner_ids + [ids_last])


def assemble(
    paths: Sequence[NetworkPath], t: FloatArray, n_hidden: int, n_features: int
) -> list[Layer]:
    """Paths side by side as one MLP (first layer concatenated, deeper ones block-diagonal).

    Without any path the network is the constant ``t``: zero-width hidden layers.
    """
    c = t.shape[0]
    if not paths:
        empty = [(np.zeros((n_features if i == 0 else 0, 0)), np.zeros(0))
                 for i in range(n_hidden)]
        return [*empty, (np.zeros((0, c)), t.reshape(c).copy())]
    layers: list[Layer] = []
    for li in range(n_hidden):
        blocks: list[Layer] = []
        for q in paths:
            if li < n_hidden - 1:
                blocks.append(q.inner[li])
            else:
                blocks.append((q.last[:, :-1].T, q.last[:, -1]))
        if li == 0:
            W = np.concatenate([B[0] for B in blocks], axis=1)
        else:
            W = np.zeros((sum(B[0].shape[0] for B in blocks), sum(B[0].shape[1] for B in blocks)))
            r0 = c0 = 0
            for B in blocks:
                W[r0 : r0 + B[0].shape[0], c0 : c0 + B[0].shape[1]] = B[0]
                r0 += B[0].shape[0]
                c0 += B[0].shape[1]
        layers.append((np.ascontiguousarray(W), np.concatenate([B[1] for B in blocks])))
    layers.append((np.concatenate([q.Z for q in paths], axis=0), t.reshape(c).copy()))
    return layers


