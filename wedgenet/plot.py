"""Figures for 2-D inputs: prediction regions, breaklines and index-set samples (Figs 7, 11)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError
from wedgenet.solve import SolveResult


def plot_network(result: SolveResult, X: NDArray[np.float64], y: Any, path: str) -> None:
    """Draw the network's prediction regions, each active neuron's breakline
    ``w . x + b = 0`` and the samples of its index set; save a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = np.asarray(X, dtype=float)
    if X.shape[1] != 2:
        raise WedgeNetError(f"plot needs 2-D inputs, got d = {X.shape[1]}")
    net = result.network
    pad = 0.15 * (X.max(axis=0) - X.min(axis=0) + 1e-9)
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    out = net.decision_function(grid)
    if out.ndim == 2:
        out = np.argmax(out, axis=1).astype(float)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.contourf(gx, gy, out.reshape(gx.shape), levels=30, cmap="RdBu_r", alpha=0.55)
    if result.params.get("loss") in ("logistic", "hinge"):
        ax.contour(gx, gy, out.reshape(gx.shape), levels=[0.0], colors="k", linewidths=1.5)
    ys = np.asarray(y)
    ax.scatter(
        X[:, 0],
        X[:, 1],
        c=ys if ys.dtype.kind in "biuf" else None,
        cmap="RdBu_r",
        edgecolors="k",
        s=28,
        zorder=3,
    )
    used: set[int] = set()
    for nr in net.neurons:
        w, b = nr.weight, nr.bias
        if abs(w[1]) > abs(w[0]):
            xs = np.array([lo[0], hi[0]])
            ax.plot(xs, -(w[0] * xs + b) / w[1], color="tab:blue", lw=0.9)
        elif abs(w[0]) > 0:
            ys_line = np.array([lo[1], hi[1]])
            ax.plot(-(w[1] * ys_line + b) / w[0], ys_line, color="tab:blue", lw=0.9)
        if nr.index_set is not None:
            used.update(nr.index_set.samples)
    if used:
        idx = sorted(used)
        ax.scatter(
            X[idx, 0],
            X[idx, 1],
            s=110,
            facecolors="none",
            edgecolors="gold",
            linewidths=2,
            zorder=4,
            label="index-set samples",
        )
        ax.legend(loc="upper right")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    cert = "certified" if result.certified else "not certified"
    ax.set_title(f"{len(net.neurons)} neurons, objective {result.primal_objective:.4g} ({cert})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
