"""Certified three-layer solves: data -> three-layer dictionary -> Lasso -> network.

:func:`solve_three_layer` solves the program of Theorems 12 and 13 by column generation
(:func:`wedgenet.workingset.solve_working_set`, unchanged) over the streamed dictionary
(:class:`~wedgenet.threelayer.pricing.ThreeLayerColumns`), certifies it with
:func:`wedgenet.certificate.certify` (independent re-check:
:mod:`wedgenet.threelayer.recheck`) and reads the three-layer network off the solution with
balanced scaling (:mod:`wedgenet.threelayer.network`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wedgenet.certificate import certify
from wedgenet.dictionary import Atoms
from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import Loss, get_loss
from wedgenet.programs import ProgramSolution, group_norms
from wedgenet.threelayer.dictionary import (
    SHAPES,
    GeneratorSet,
    ThreeLayerDictionary,
)
from wedgenet.threelayer.network import Block, ThreeLayerNetwork
from wedgenet.threelayer.pricing import ThreeLayerColumns
from wedgenet.threelayer.recheck import recheck_max_columns
from wedgenet.validation import check_inputs, check_lam
from wedgenet.workingset import solve_working_set

FloatArray = NDArray[np.float64]
Progress = Callable[[float, str], None]

#: Default limit on the number of first-layer directions (generator subsets).
MAX_DIRECTIONS = 2_000_000


@dataclass
class ThreeLayerResult:
    """A solved three-layer program and the network read off it.

    Attributes
    ----------
    network : ThreeLayerNetwork
        Balanced scaling: its training objective equals ``primal_objective``.
    primal_objective : float
    dual_objective : float
        A lower bound on the program over every column (the larger of the scan's and the
        re-check's maximum scores).
    relative_gap : float
    certified : bool
        Every column was priced, the gap is at most ``tol``, no generator subset was
        undecided and the independent re-check confirms the bound
        (:func:`wedgenet.certificate.certify`). By Theorems 12 and 13 the program equals the
        three-layer training problem of any width, so the network is then certified globally
        optimal to ``tol``.
    certificate_note : str
    n_columns : int
        Columns of the dictionary before merging (:attr:`ThreeLayerDictionary.size`).
    n_directions : int
        Generator subsets (candidate first-layer directions).
    solver : str
    solve_time : float
    params : dict
    history : list of dict
    classes : ndarray or None
    """

    network: ThreeLayerNetwork
    primal_objective: float
    dual_objective: float
    relative_gap: float
    certified: bool
    certificate_note: str
    n_columns: int
    n_directions: int
    solver: str
    solve_time: float
    params: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    classes: np.ndarray | None = None
    scanned: str = "all"
    exact: bool = True

    @property
    def blocks(self) -> list[Block]:
        return self.network.blocks

    @property
    def certifies_network(self) -> bool:
        return self.certified and self.exact

    def decision_function(self, X: Any) -> FloatArray:
        return self.network.decision_function(np.asarray(X, dtype=float))

    def predict(self, X: Any) -> np.ndarray:
        """Outputs (squared loss) or class labels (logistic, hinge)."""
        f = self.decision_function(X)
        if self.classes is None:
            return f
        return self.classes[(f > 0).astype(np.int64)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "primal_objective": float(self.primal_objective),
            "dual_objective": float(self.dual_objective),
            "relative_gap": float(self.relative_gap),
            "certified": bool(self.certified),
            "certificate_note": self.certificate_note,
            "n_columns": int(self.n_columns),
            "n_directions": int(self.n_directions),
            "solver": self.solver,
            "solve_time": float(self.solve_time),
            "params": dict(self.params),
            "depth": 3,
            "scanned": self.scanned,
            "exact": bool(self.exact),
            "certifies_network": bool(self.certifies_network),
            "classes": None if self.classes is None else self.classes.tolist(),
            "network": self.network.to_dict(),
        }


def solve_three_layer(
    X: Any,
    y: Any,
    *,
    lam: float,
    bias: bool = True,
    loss: str | Loss = "squared",
    generators: GeneratorSet = "threshold",
    tol: float = 1e-6,
    max_directions: int | None = MAX_DIRECTIONS,
    chunk_size: int = 8192,
    max_time: float | None = None,
    progress: Progress | None = None,
) -> ThreeLayerResult:
    """Train a three-layer ReLU network of parallel blocks to certified global optimality.

    Objective (docs/threelayer.md): ``L(f(X), y) + (lam / 3) sum_j (||w1_j||_1^3 + |w2_j|^3 +
    |w3_j|^3)`` with ``f(x) = sum_j w3_j relu(w2_j relu(x . w1_j + b1_j) + b2_j) + b3``, the
    loss summed over samples and every bias free (``b1_j = 0`` when ``bias=False``).

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,)
        Real targets (``squared``) or two class labels (``logistic``, ``hinge``).
    lam : float
        Regularization strength, > 0.
    bias : bool, default True
        First-layer biases (Theorem 13); ``False``: Theorem 12.
    loss : {"squared", "logistic", "hinge"}
    generators : {"threshold", "pairwise"}, default "threshold"
        Generator subsets of the first-layer directions
        (:mod:`wedgenet.threelayer.dictionary`); both give the same optimum.
    tol : float, default 1e-6
        Target relative duality gap over the whole dictionary.
    max_directions : int, optional
        Refuse dictionaries with more generator subsets (default 2,000,000).
    chunk_size : int
    max_time : float, optional
        Seconds after which column generation stops (the result is then not certified
        unless the gap was reached).
    progress : callable, optional
        ``progress(fraction, stage)``.

    Returns
    -------
    ThreeLayerResult
    """
    lam = check_lam(lam)
    if not (0 < tol < 1):
        raise WedgeNetError(f"tol must be in (0, 1), got {tol}")
    loss_obj = get_loss(loss)
    if loss_obj.name not in ("squared", "logistic", "hinge"):
        raise WedgeNetError(
            f"three-layer networks have one output: loss must be squared, logistic or hinge, "
            f"got {loss_obj.name!r}"
        )
    X, Y, classes = check_inputs(X, y, loss_obj)
    if Y.shape[1] != 1:
        raise WedgeNetError(f"three-layer networks have one output; y has shape {Y.shape}")
    start = time.perf_counter()
    dictionary = ThreeLayerDictionary(
        X, bias=bias, generators=generators, max_directions=max_directions
    )
    source = ThreeLayerColumns(dictionary, chunk_size=chunk_size)
    ws = solve_working_set(
        source, Y, loss_obj, lam, fit_offset=True, tol=tol, progress=progress, max_time=max_time
    )
    sol = ws.solution
    network = reconstruct(dictionary, ws.atoms, sol)
    cert = certify(
        dictionary,
        sol,
        Y,
        loss_obj,
        lam,
        tol,
        scanned="all",
        free_offset=True,
        max_columns=recheck_max_columns(dictionary),
    )
    result = ThreeLayerResult(
        network=network,
        primal_objective=sol.primal,
        dual_objective=cert.dual_objective,
        relative_gap=cert.relative_gap,
        certified=cert.certified,
        certificate_note=cert.note,
        n_columns=dictionary.size,
        n_directions=dictionary.n_subsets,
        solver=sol.solver,
        solve_time=time.perf_counter() - start,
        params={
            "loss": loss_obj.name,
            "lam": lam,
            "bias": bool(bias),
            "generators": generators,
            "tol": float(tol),
            "max_time": max_time,
        },
        history=ws.history,
        classes=classes,
    )
    verify(result, dictionary, X, Y, loss_obj, lam, ws.atoms, sol)
    return result


def reconstruct(
    dictionary: ThreeLayerDictionary, atoms: Atoms, sol: ProgramSolution
) -> ThreeLayerNetwork:
    """The network of a program solution, with balanced scaling (module
    :mod:`wedgenet.threelayer.network`)."""
    d, k = dictionary.n_features, dictionary.subset_size_
    norms = group_norms(sol.Z) if sol.Z.shape[0] else np.zeros(0)
    blocks: list[Block] = []
    if len(atoms):
        U = np.maximum(dictionary.X @ atoms.normals[:, :d].T + atoms.normals[:, d], 0.0)
    for j in np.flatnonzero(norms > 0):
        z = float(sol.Z[j, 0])
        a = abs(z) ** (1.0 / 3.0)
        row = atoms.subsets[j]
        lb, j0, shape = int(row[k]), int(row[k + 1]), int(row[k + 2])
        sign = int(atoms.signs[j])
        w, b = atoms.normals[j, :d], float(atoms.normals[j, d])
        uj = float(U[j0, j])
        s2 = 1.0 if shape == 0 else -1.0
        blocks.append(
            Block(
                w1=a * w,
                b1=a * b,
                w2=s2 * a,
                b2=-s2 * a * a * uj,
                w3=z / (a * a),
                index_set=dictionary.index_set(row[:k], sign),
                bias_sample=lb if dictionary.bias else None,
                threshold_sample=j0,
                shape=SHAPES[shape],
                formula=dictionary.formula(row, sign),
                residual=dictionary.residual(row[:k], w),
            )
        )
    return ThreeLayerNetwork(blocks, float(np.asarray(sol.t).reshape(-1)[0]), d)


def verify(
    result: ThreeLayerResult,
    dictionary: ThreeLayerDictionary,
    X: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    atoms: Atoms,
    sol: ProgramSolution,
) -> None:
    """The network reproduces the program: outputs to 1e-9, objective to 1e-9 (relative).

    Raises
    ------
    RuntimeError
        If the reconstruction is inconsistent (a bug, never a user error).
    """
    f = result.network.decision_function(X)
    U = dictionary.columns(atoms) @ sol.Z[:, 0] + sol.t[0] if len(atoms) else np.full(
        X.shape[0], float(sol.t[0])
    )
    scale = max(1.0, float(np.max(np.abs(U))))
    if np.max(np.abs(f - U)) > 1e-9 * scale:
        raise RuntimeError("three-layer network output differs from K z + t")
    obj = loss.value(f[:, None], Y) + lam * result.network.regularization()
    if abs(obj - result.primal_objective) > 1e-9 * max(1.0, abs(result.primal_objective)):
        raise RuntimeError(
            f"three-layer network objective {obj} differs from the program's "
            f"{result.primal_objective}"
        )


def network_objective(
    network: ThreeLayerNetwork, X: Any, y: Any, *, lam: float, loss: str | Loss = "squared"
) -> float:
    """Training objective of any three-layer network of blocks."""
    loss_obj = get_loss(loss)
    X, Y, _ = check_inputs(X, y, loss_obj)
    f = network.decision_function(X)
    return float(loss_obj.value(f[:, None], Y) + lam * network.regularization())


__all__ = ["MAX_DIRECTIONS", "ThreeLayerResult", "network_objective", "reconstruct",
           "solve_three_layer", "verify"]
