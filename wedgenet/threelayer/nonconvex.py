"""An independent non-convex trainer of three-layer networks of blocks (evidence).

Trains ``f(x) = sum_j w3_j relu(w2_j relu(x . w1_j + b1_j) + b2_j) + b3`` directly on

    P = L(f(X), y) + (lam / 3) sum_j (||w1_j||_1^3 + |w2_j|^3 + |w3_j|^3)

by L-BFGS-B from many random starts. It uses neither the dictionary nor the convex programs
nor :mod:`wedgenet.losses`: the losses and gradients are written here from their definitions
(squared ``0.5 sum (f - y)^2``; logistic ``sum log(1 + exp(-y f))`` with the larger label as
``+1``). Its values are objectives of actual networks, hence upper bounds on the optimum: a
value below a certified lower bound would expose a bug.

``||w1||_1`` is handled as in :mod:`wedgenet.nonconvex`: ``w1 = w_plus - w_minus`` with both
parts bounded below by 0 and the regularizer ``(sum w_plus + w_minus)^3``, smooth on the box
and never below ``||w1||_1^3``; the returned objective is ``P`` of the returned network.
``|w|^3`` is twice differentiable. The ReLUs use the one-sided subgradient at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from wedgenet.exceptions import WedgeNetError
from wedgenet.interrupt import checkpoint
from wedgenet.threelayer.network import ThreeLayerNetwork
from wedgenet.validation import check_lam

FloatArray = NDArray[np.float64]


@dataclass
class NonConvexThreeLayerResult:
    """Best network over the restarts, its objective, and every run's objective."""

    network: ThreeLayerNetwork
    objective: float
    objectives: list[float] = field(default_factory=list)


def _unpack(theta: FloatArray, m: int, d: int, bias: bool) -> tuple[FloatArray, ...]:
    i = 0
    wp = theta[i : i + m * d].reshape(d, m)
    i += m * d
    wm = theta[i : i + m * d].reshape(d, m)
    i += m * d
    if bias:
        b1 = theta[i : i + m]
        i += m
    else:
        b1 = np.zeros(m)
    w2, b2, w3 = theta[i : i + m], theta[i + m : i + 2 * m], theta[i + 2 * m : i + 3 * m]
    b3 = theta[i + 3 * m : i + 3 * m + 1]
    return wp, wm, b1, w2, b2, w3, b3


def _objective(
    theta: FloatArray, X: FloatArray, y: FloatArray, lam: float, m: int, bias: bool, loss: str
) -> tuple[float, FloatArray]:
    d = X.shape[1]
    wp, wm, b1, w2, b2, w3, b3 = _unpack(theta, m, d, bias)
    W1 = wp - wm
    h1 = X @ W1 + b1
    a1 = np.maximum(h1, 0.0)
    h2 = a1 * w2 + b2
    a2 = np.maximum(h2, 0.0)
    f = a2 @ w3 + b3[0]
    if loss == "squared":
        res = f - y
        val = 0.5 * float(res @ res)
        r = res
    else:
        z = y * f
        val = float(-np.sum(log_expit(z)))
        r = -y * expit(-z)
    S = (wp + wm).sum(axis=0)
    val += lam / 3.0 * float(np.sum(S**3) + np.sum(np.abs(w2) ** 3) + np.sum(np.abs(w3) ** 3))
    g_w3 = a2.T @ r + lam * np.abs(w3) * w3
    g_b3 = np.array([r.sum()])
    g2 = (r[:, None] * w3[None, :]) * (h2 > 0)
    g_w2 = np.sum(g2 * a1, axis=0) + lam * np.abs(w2) * w2
    g_b2 = g2.sum(axis=0)
    g1 = g2 * w2[None, :] * (h1 > 0)
    g_W1 = X.T @ g1
    reg1 = lam * S**2
    g_wp = g_W1 + reg1[None, :]
    g_wm = -g_W1 + reg1[None, :]
    parts = [g_wp.ravel(), g_wm.ravel()]
    if bias:
        parts.append(g1.sum(axis=0))
    parts += [g_w2, g_b2, g_w3, g_b3]
    return val, np.concatenate(parts)


def _encode(y: Any, loss: str) -> FloatArray:
    y = np.asarray(y)
    if loss == "squared":
        return np.asarray(y, dtype=float).reshape(-1)
    labels = np.unique(y)
    if labels.size != 2:
        raise WedgeNetError("the logistic loss needs two class labels")
    return np.where(y == labels[1], 1.0, -1.0)


def train_three_layer_nonconvex(
    X: Any,
    y: Any,
    *,
    lam: float,
    bias: bool = True,
    loss: Literal["squared", "logistic"] = "squared",
    width: int = 8,
    restarts: int = 10,
    seed: int = 0,
    max_iter: int = 3000,
    init: list[ThreeLayerNetwork] | None = None,
    init_noise: float = 0.0,
) -> NonConvexThreeLayerResult:
    """Minimize the three-layer objective from ``restarts`` random starts (and ``init``).

    Parameters
    ----------
    X, y
        Data (``y`` real for ``squared``, two labels for ``logistic``).
    lam : float
    bias : bool
        Train first-layer biases (else ``b1 = 0``).
    width : int
        Blocks per random start.
    restarts : int
    seed : int
    max_iter : int
        L-BFGS-B iterations per start.
    init : list of ThreeLayerNetwork, optional
        Extra starting points (padded with zero blocks to ``width``), perturbed by
        ``init_noise`` times a standard normal.

    Returns
    -------
    NonConvexThreeLayerResult
    """
    lam = check_lam(lam)
    if loss not in ("squared", "logistic"):
        raise WedgeNetError(f"loss must be squared or logistic, got {loss!r}")
    X = np.asarray(X, dtype=float)
    yv = _encode(y, loss)
    n, d = X.shape
    rng = np.random.default_rng(seed)
    starts: list[tuple[FloatArray, int]] = []
    for _ in range(restarts):
        m = width
        W1 = rng.normal(size=(d, m)) / np.sqrt(d)
        b1 = rng.normal(size=m) * 0.5 if bias else np.zeros(0)
        parts = [np.maximum(W1, 0).ravel(), np.maximum(-W1, 0).ravel()]
        if bias:
            parts.append(b1)
        parts += [
            rng.normal(size=m),
            rng.normal(size=m) * 0.5,
            rng.normal(size=m) / np.sqrt(m),
            np.array([float(np.mean(yv))]),
        ]
        starts.append((np.concatenate(parts), m))
    for net in init or []:
        arr = net.to_arrays()
        m = max(width, arr["W1"].shape[1])
        pad = m - arr["W1"].shape[1]
        W1 = np.pad(arr["W1"], ((0, 0), (0, pad)))
        W1 = W1 + init_noise * rng.normal(size=W1.shape)
        vecs = [np.pad(arr[k], (0, pad)) + init_noise * rng.normal(size=m)
                for k in ("b1", "w2", "b2", "w3")]
        parts = [np.maximum(W1, 0).ravel(), np.maximum(-W1, 0).ravel()]
        if bias:
            parts.append(vecs[0])
        parts += [vecs[1], vecs[2], vecs[3], arr["b3"]]
        starts.append((np.concatenate(parts), m))
    best: tuple[float, ThreeLayerNetwork] | None = None
    values: list[float] = []
    for theta0, m in starts:
        checkpoint("non-convex three-layer restart")
        nw = 2 * m * d
        bounds = [(0.0, None)] * nw + [(None, None)] * (theta0.size - nw)
        res = minimize(
            _objective,
            theta0,
            args=(X, yv, lam, m, bias, loss),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": max_iter, "maxcor": 20, "ftol": 1e-15, "gtol": 1e-12},
        )
        wp, wm, b1, w2, b2, w3, b3 = _unpack(res.x, m, d, bias)
        net = ThreeLayerNetwork.from_arrays(wp - wm, b1, w2, b2, w3, float(b3[0]))
        f = net.decision_function(X)
        if loss == "squared":
            val = 0.5 * float(np.sum((f - yv) ** 2))
        else:
            val = float(-np.sum(log_expit(yv * f)))
        val += lam * net.regularization()
        values.append(val)
        if best is None or val < best[0]:
            best = (val, net)
    assert best is not None
    return NonConvexThreeLayerResult(best[1], best[0], values)


__all__ = ["NonConvexThreeLayerResult", "train_three_layer_nonconvex"]
