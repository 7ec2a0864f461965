"""Figures for 2-D inputs: prediction regions, breaklines and index-set samples (Figs 7, 11).

:func:`render` returns the figure as PNG or SVG bytes (the CLI writes them to a file, the
service serves them); :func:`figure` returns the matplotlib figure itself.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError

FloatArray = NDArray[np.float64]
ImageFormat = Literal["png", "svg"]


def _units(network: Any, X: FloatArray) -> list[tuple[FloatArray, float, set[int], float | None,
                                                    int | None]]:
    """Per neuron (two layers) or block (three layers): first-layer ``(w, b)``, the samples
    its index set names, the first-layer value where its second-layer unit switches (three
    layers: ``relu(x . w + b)`` equals sample ``j0``'s) and ``j0``."""
    out: list[tuple[FloatArray, float, set[int], float | None, int | None]] = []
    for unit in getattr(network, "neurons", None) or getattr(network, "blocks", []):
        if hasattr(unit, "w1"):  # a three-layer block
            w, b = np.asarray(unit.w1, dtype=float), float(unit.b1)
            iset = unit.index_set
            named: set[int] = set()
            if iset is not None:
                named.update(iset.samples)
                for i, j in iset.differences:
                    named.update((i, j))
            for k in (unit.bias_sample, unit.threshold_sample):
                if k is not None:
                    named.add(int(k))
            j0 = unit.threshold_sample
            level = None if j0 is None else max(float(X[int(j0)] @ w + b), 0.0)
            out.append((w, b, named, level, None if j0 is None else int(j0)))
        else:
            named = set() if unit.index_set is None else set(unit.index_set.samples)
            out.append((np.asarray(unit.weight, dtype=float), float(unit.bias), named, None,
                        None))
    return out


def figure(
    network: Any,
    X: Any,
    y: Any | None = None,
    *,
    loss: str | None = None,
    classes: Any | None = None,
    title: str | None = None,
    highlight: int | None = None,
) -> Any:
    """The network's prediction regions over the data's box, each neuron's breakline
    ``w . x + b = 0``, the samples (coloured by ``y``) and the samples of the index sets.

    Parameters
    ----------
    network : TwoLayerNetwork or ThreeLayerNetwork
        A network with 2 inputs. For a three-layer network, each block's first-layer
        breakline is drawn solid and the line where its second-layer unit switches
        (``x . w1 + b1`` equal to the threshold sample ``j0``'s value, when positive)
        dashed; ``j0`` is marked with a square.
    X : array-like of shape (n, 2)
        The samples (their box sets the axes; index sets refer to their rows).
    y : array-like of shape (n,), optional
        Targets or labels, for the samples' colours.
    loss : str, optional
        ``logistic``/``hinge``: the decision boundary is drawn and the colour bar shows the
        score; ``softmax``: regions are the predicted classes (``classes`` names them).
    title : str, optional
    highlight : int, optional
        Index of one neuron whose breakline and index-set samples are drawn emphasized.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2 or int(network.n_features) != 2:
        raise WedgeNetError(
            f"plots need 2-D inputs, got data of shape {X.shape} and a network with "
            f"{network.n_features} inputs"
        )
    pad = 0.15 * (X.max(axis=0) - X.min(axis=0) + 1e-9)
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    out = network.decision_function(grid)
    multiclass = out.ndim == 2 and out.shape[1] > 1
    if out.ndim == 2 and not multiclass:
        out = out[:, 0]
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    if multiclass:
        labels = np.argmax(out, axis=1).reshape(gx.shape)
        k = out.shape[1]
        mesh = ax.contourf(gx, gy, labels, levels=np.arange(k + 1) - 0.5, cmap="tab10",
                           alpha=0.45, vmin=0, vmax=9)
        bar = fig.colorbar(mesh, ax=ax, ticks=np.arange(k))
        names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(k)]
        bar.ax.set_yticklabels(names)
        bar.set_label("predicted class")
    else:
        mesh = ax.contourf(gx, gy, out.reshape(gx.shape), levels=30, cmap="RdBu_r", alpha=0.55)
        bar = fig.colorbar(mesh, ax=ax)
        bar.set_label("network output f(x)" if loss in (None, "squared") else "score f(x)")
        if loss in ("logistic", "hinge"):
            ax.contour(gx, gy, out.reshape(gx.shape), levels=[0.0], colors="k", linewidths=1.5)
    if y is not None:
        ys = np.asarray(y)
        if ys.ndim == 2:
            ys = ys[:, 0] if ys.shape[1] == 1 else np.argmax(ys, axis=1)
        numeric = ys.dtype.kind in "biuf"
        colours = ys if numeric else np.unique(ys, return_inverse=True)[1]
        ax.scatter(X[:, 0], X[:, 1], c=colours, cmap="tab10" if multiclass else "RdBu_r",
                   edgecolors="k", s=28, zorder=3)
    else:
        ax.scatter(X[:, 0], X[:, 1], color="0.3", edgecolors="k", s=22, zorder=3)
    used: set[int] = set()
    thresholds: set[int] = set()
    for j, (w, b, named, level, j0) in enumerate(_units(network, X)):
        strong = highlight == j
        colour, width = ("tab:orange", 2.4) if strong else ("tab:blue", 0.9)
        for offset, style in ((0.0, "-"), (level, "--")):
            if offset is None or (style == "--" and offset <= 0.0):
                continue  # no second-layer switch inside the active side
            if abs(w[1]) > abs(w[0]):
                xs = np.array([lo[0], hi[0]])
                ax.plot(xs, (offset - b - w[0] * xs) / w[1], color=colour, lw=width, ls=style)
            elif abs(w[0]) > 0:
                ys_line = np.array([lo[1], hi[1]])
                ax.plot((offset - b - w[1] * ys_line) / w[0], ys_line, color=colour, lw=width,
                        ls=style)
        if highlight is None or strong:
            used.update(i for i in named if 0 <= i < X.shape[0])
            if j0 is not None and 0 <= j0 < X.shape[0]:
                thresholds.add(j0)
    if used:
        idx = sorted(used)
        ax.scatter(X[idx, 0], X[idx, 1], s=110, facecolors="none", edgecolors="gold",
                   linewidths=2, zorder=4, label="index-set samples")
    if thresholds:
        idx = sorted(thresholds)
        ax.scatter(X[idx, 0], X[idx, 1], s=150, marker="s", facecolors="none",
                   edgecolors="tab:green", linewidths=2, zorder=5,
                   label="threshold samples j0")
    if used or thresholds:
        ax.legend(loc="upper right")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    n_units = len(getattr(network, "neurons", None) or getattr(network, "blocks", []))
    kind = "blocks" if hasattr(network, "blocks") else "neurons"
    ax.set_title(title or f"{n_units} {kind}")
    fig.tight_layout()
    return fig


def render(
    network: Any,
    X: Any,
    y: Any | None = None,
    *,
    format: ImageFormat = "png",
    **kwargs: Any,
) -> bytes:
    """:func:`figure` as PNG or SVG bytes (keyword arguments as for :func:`figure`)."""
    if format not in ("png", "svg"):
        raise WedgeNetError(f"image format must be 'png' or 'svg', got {format!r}")
    import matplotlib.pyplot as plt

    fig = figure(network, X, y, **kwargs)
    buf = io.BytesIO()
    fig.savefig(buf, format=format, dpi=110)
    plt.close(fig)
    return buf.getvalue()


def solve_title(result: Any) -> str:
    """``"m neurons, objective ... (certified | not certified)"`` for a solve result (``m
    blocks`` for three layers)."""
    cert = "certified" if result.certified else "not certified"
    net = result.network
    units = (f"{len(net.blocks)} blocks" if hasattr(net, "blocks")
             else f"{len(net.neurons)} neurons")
    return f"{units}, objective {result.primal_objective:.4g} ({cert})"
