"""An independent non-convex trainer: evidence for (and against) the convex programs.

This module trains a two-layer ReLU network directly, with L-BFGS-B from many random
starts, on exactly the training objective of docs/conventions.md section 2,

    P(theta) = L(f(X), y) + (lam / 2) * sum_j ( ||w_j||_p^2 + ||a_j||_2^2 ),
    f(x)     = sum_j a_j * relu(w_j . x + b_j) + c,

with the loss *summed* over samples and the biases ``b_j`` and ``c`` unregularized. It is
deliberately independent of the convex machinery: it uses neither the wedge dictionary nor
:mod:`wedgenet.losses` (the losses and their gradients are re-implemented here from their
definitions), only numpy and scipy. Its results are upper bounds on the global optimum of
``P`` (it returns a network, and ``P`` of that network), so for the exact ``p = 1``
dictionaries a non-convex value below the certified convex optimum would expose a bug.

Nonsmooth terms are handled as follows.

* ``p = 1``: ``||w_j||_1^2`` is not differentiable where a coordinate of ``w_j`` vanishes.
  Each first-layer weight is split as ``w = w_plus - w_minus`` with bounds ``w_plus >= 0``,
  ``w_minus >= 0`` (which L-BFGS-B supports), and the regularizer is replaced by
  ``(sum_k w_plus_k + w_minus_k)^2``, which is smooth on the box and equals ``||w||_1^2``
  whenever ``min(w_plus_k, w_minus_k) = 0`` (it is never smaller, so the minimum over the box
  is the minimum of ``P``). The returned objective is always ``P`` of the returned network
  ``w = w_plus - w_minus``, never the split surrogate.
* The ReLU itself is nonsmooth on the hyperplanes ``w_j . x_i + b_j = 0``; the gradient used
  there is the usual one-sided subgradient (``relu'(0) = 0``). L-BFGS-B's line search only
  accepts steps that decrease the (surrogate) objective, so each run ends at or below its start.

Losses (labels encoded as in :mod:`wedgenet.losses`, re-implemented here):

=========  ==============================================  ===========================
squared    0.5 * sum_i ||f(x_i) - y_i||^2                  y real, shape (n,) or (n, c)
logistic   sum_i log(1 + exp(-y_i f(x_i)))                 two labels; the larger is +1
softmax    sum_i logsumexp(f(x_i)) - f(x_i)[y_i]           labels; one output per class
=========  ==============================================  ===========================
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logsumexp

from wedgenet.interrupt import checkpoint
from wedgenet.network import Neuron, TwoLayerNetwork
from wedgenet.validation import DEFAULT_LAM, check_lam

FloatArray = NDArray[np.float64]
#: L-BFGS-B memory (number of stored corrections).
MAXCOR = 20


def _single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to one thread while training, when ``threadpoolctl`` is importable.

    The matrices here are tiny; multi-threaded BLAS calls inside L-BFGS-B cost far more in
    thread synchronization than they compute (40x slower on a loaded 2-core machine).
    ``threadpoolctl`` is optional: without it nothing is limited and results are identical.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional speed-up only
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
LossName = Literal["squared", "logistic", "softmax"]

__all__ = [
    "NonConvexResult",
    "encode_targets",
    "loss_value",
    "nonconvex_objective",
    "train_nonconvex",
]


# --------------------------------------------------------------------------- losses
def encode_targets(y: Any, loss: LossName) -> tuple[FloatArray, np.ndarray | None]:
    """Encode targets as an ``(n, c)`` float matrix for ``loss``.

    Parameters
    ----------
    y : array-like of shape (n,) or (n, c)
        Real targets (``squared``) or class labels (``logistic``, ``softmax``).
    loss : {"squared", "logistic", "softmax"}

    Returns
    -------
    Y : ndarray of shape (n, c)
        ``squared``: the targets; ``logistic``: ``+1`` for the larger of the two labels
        (``np.unique`` order), ``-1`` for the other, ``c = 1``; ``softmax``: one-hot rows over
        the sorted labels.
    classes : ndarray or None
        The sorted labels (classification), else ``None``.
    """
    y_arr = np.asarray(y)
    if loss == "squared":
        Y = np.asarray(y_arr, dtype=float)
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2:
            raise ValueError(f"y must be 1-D or 2-D for the squared loss, got {Y.shape}")
        return Y, None
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = y_arr[:, 0]
    if y_arr.ndim != 1:
        raise ValueError(f"y must be 1-D class labels for the {loss} loss, got {y_arr.shape}")
    classes, inverse = np.unique(y_arr, return_inverse=True)
    if loss == "logistic":
        if classes.size != 2:
            raise ValueError(f"the logistic loss needs exactly 2 labels, got {classes.size}")
        return np.where(inverse == 1, 1.0, -1.0)[:, None], classes
    if loss == "softmax":
        if classes.size < 2:
            raise ValueError("the softmax loss needs at least 2 labels")
        Y = np.zeros((y_arr.shape[0], classes.size))
        Y[np.arange(y_arr.shape[0]), inverse] = 1.0
        return Y, classes
    raise ValueError(f"unsupported loss {loss!r}; choose squared, logistic or softmax")


def _loss_and_grad(U: FloatArray, Y: FloatArray, loss: str) -> tuple[float, FloatArray]:
    """Summed loss ``L(U, Y)`` and ``dL/dU`` for predictions ``U`` of shape (n, c)."""
    if loss == "squared":
        R = U - Y
        return 0.5 * float(np.sum(R * R)), R
    if loss == "logistic":
        margin = Y * U
        return float(-np.sum(log_expit(margin))), -Y * expit(-margin)
    if loss == "softmax":
        lse = logsumexp(U, axis=1, keepdims=True)
        return float(np.sum(lse) - np.sum(U * Y)), np.exp(U - lse) - Y
    raise ValueError(f"unsupported loss {loss!r}; choose squared, logistic or softmax")


def loss_value(U: FloatArray, Y: FloatArray, loss: LossName) -> float:
    """Summed loss of predictions ``U`` (n, c) against encoded targets ``Y`` (n, c)."""
    return _loss_and_grad(np.asarray(U, dtype=float), Y, loss)[0]


def _objective_arrays(
    W: FloatArray,
    b: FloatArray,
    A: FloatArray,
    c0: FloatArray,
    X: FloatArray,
    Y: FloatArray,
    loss: str,
    lam: float,
    p: int,
) -> float:
    U = np.maximum(X @ W + b, 0.0) @ A + c0
    reg = float(np.sum(np.sum(np.abs(W), axis=0) ** 2 if p == 1 else np.sum(W * W, axis=0)))
    reg += float(np.sum(A * A))
    return _loss_and_grad(U, Y, loss)[0] + 0.5 * lam * reg


def nonconvex_objective(
    network: TwoLayerNetwork,
    X: Any,
    y: Any,
    *,
    loss: LossName,
    lam: float,
    p: int,
) -> float:
    """Training objective ``P`` (docs/conventions.md section 2) of any network, computed
    independently.

    Uses only the network's arrays ``W``, ``b``, ``A`` and ``output_bias`` and this module's
    own losses (not :func:`wedgenet.network_objective` nor :mod:`wedgenet.losses`).

    Parameters
    ----------
    network : TwoLayerNetwork
    X : array-like of shape (n, d)
    y : array-like
        Targets as accepted by :func:`encode_targets`.
    loss : {"squared", "logistic", "softmax"}
    lam : float
    p : {1, 2}

    Returns
    -------
    float
    """
    X = np.asarray(X, dtype=float)
    Y, _ = encode_targets(y, loss)
    W = np.asarray(network.W, dtype=float).reshape(X.shape[1], -1)
    b = np.asarray(network.b, dtype=float).reshape(-1)
    A = np.asarray(network.A, dtype=float).reshape(W.shape[1], -1)
    c0 = np.atleast_1d(np.asarray(network.output_bias, dtype=float))
    return _objective_arrays(W, b, A, c0, X, Y, loss, float(lam), int(p))


# --------------------------------------------------------------------------- trainer
class _Problem:
    """Flattened parameters, bounds, objective and gradient for one configuration."""

    def __init__(
        self, X: FloatArray, Y: FloatArray, loss: str, lam: float, p: int, bias: bool,
        fit_offset: bool, width: int,
    ) -> None:
        self.X, self.Y, self.loss, self.lam, self.p = X, Y, loss, lam, p
        self.bias, self.fit_offset, self.m = bias, fit_offset, width
        self.n, self.d = X.shape
        self.c = Y.shape[1]
        n_w = self.d * self.m * (2 if p == 1 else 1)
        self.sizes = [n_w, self.m if bias else 0, self.m * self.c, self.c if fit_offset else 0]
        self.offsets = np.cumsum([0, *self.sizes])
        self.size = int(self.offsets[-1])
        lower = [0.0] * n_w if p == 1 else [None] * n_w
        self.bounds = [(lo, None) for lo in lower] + [(None, None)] * (self.size - n_w)

    def pack(self, W: FloatArray, b: FloatArray, A: FloatArray, c0: FloatArray) -> FloatArray:
        parts = [np.concatenate([np.maximum(W, 0.0), np.maximum(-W, 0.0)]).ravel()
                 if self.p == 1 else W.ravel()]
        if self.bias:
            parts.append(b.ravel())
        parts.append(A.ravel())
        if self.fit_offset:
            parts.append(c0.ravel())
        return np.concatenate(parts).astype(float)

    def unpack(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        o = self.offsets
        if self.p == 1:
            Wpm = x[o[0] : o[1]].reshape(2 * self.d, self.m)
            W = Wpm[: self.d] - Wpm[self.d :]
        else:
            W = x[o[0] : o[1]].reshape(self.d, self.m)
        b = x[o[1] : o[2]] if self.bias else np.zeros(self.m)
        A = x[o[2] : o[3]].reshape(self.m, self.c)
        c0 = x[o[3] : o[4]] if self.fit_offset else np.zeros(self.c)
        return W, b, A, c0

    def fun_grad(self, x: FloatArray) -> tuple[float, FloatArray]:
        """Surrogate objective (split l1 for ``p = 1``) and its (sub)gradient."""
        o, lam = self.offsets, self.lam
        W, b, A, c0 = self.unpack(x)
        Z = self.X @ W + b
        active = Z > 0.0
        H = np.where(active, Z, 0.0)
        U = H @ A + c0
        f, G = _loss_and_grad(U, self.Y, self.loss)
        dZ = (G @ A.T) * active
        dW = self.X.T @ dZ
        grad = np.empty_like(x)
        if self.p == 1:
            Wpm = x[o[0] : o[1]].reshape(2 * self.d, self.m)
            s = Wpm.sum(axis=0)  # = ||w_j||_1 when the split is tight
            f += 0.5 * lam * float(s @ s)
            g = grad[o[0] : o[1]].reshape(2 * self.d, self.m)
            g[: self.d] = dW + lam * s
            g[self.d :] = -dW + lam * s
        else:
            f += 0.5 * lam * float(np.sum(W * W))
            grad[o[0] : o[1]] = (dW + lam * W).ravel()
        if self.bias:
            grad[o[1] : o[2]] = dZ.sum(axis=0)
        f += 0.5 * lam * float(np.sum(A * A))
        grad[o[2] : o[3]] = (H.T @ G + lam * A).ravel()
        if self.fit_offset:
            grad[o[3] : o[4]] = G.sum(axis=0)
        return f, grad

    def random_start(self, rng: np.random.Generator) -> FloatArray:
        """A random start: hyperplanes through the data, log-uniform weight scales."""
        X, m, d = self.X, self.m, self.d
        x_scale = float(np.sqrt(np.mean(np.sum(X * X, axis=1)))) or 1.0
        scale = 10.0 ** rng.uniform(-1.0, 0.5)
        W = rng.standard_normal((d, m)) * scale / x_scale
        if self.bias:
            # Each hyperplane passes near a random sample (plus jitter), so neurons start alive.
            anchors = X[rng.integers(0, self.n, size=m)]
            b = -np.einsum("md,dm->m", anchors, W) + 0.1 * scale * rng.standard_normal(m)
        else:
            b = np.zeros(m)
        A = rng.standard_normal((m, self.c)) * scale / np.sqrt(m)
        c0 = self.Y.mean(axis=0) if self.loss == "squared" else np.zeros(self.c)
        return self.pack(W, b, A, c0 if self.fit_offset else np.zeros(self.c))

    def network(self, x: FloatArray) -> TwoLayerNetwork:
        W, b, A, c0 = self.unpack(x)
        neurons = [
            Neuron(weight=W[:, j].copy(), bias=float(b[j]), output_weight=A[j].copy(),
                   index_set=None, formula="non-convex (L-BFGS-B)")
            for j in range(self.m)
        ]
        return TwoLayerNetwork(neurons=neurons, output_bias=np.array(c0, dtype=float),
                               n_features=self.d)

    def objective(self, x: FloatArray) -> float:
        """True ``P`` (exact l1 norm for ``p = 1``) at ``x``."""
        W, b, A, c0 = self.unpack(x)
        return _objective_arrays(W, b, A, c0, self.X, self.Y, self.loss, self.lam, self.p)


@dataclass
class NonConvexResult:
    """Best network found by :func:`train_nonconvex`.

    Attributes
    ----------
    network : TwoLayerNetwork
        The best network over all restarts (``width`` neurons, ``index_set=None``; neurons
        that ended at zero are kept, they do not change the objective).
    objective : float
        ``P`` of :attr:`network` (docs/conventions.md section 2), computed by
        :func:`nonconvex_objective`.
    objectives_per_restart : list of float
        Final ``P`` of every run, in order (the ``init`` run, if any, first).
    start_objectives : list of float
        ``P`` at the start of every run.
    n_iterations : list of int
        L-BFGS-B iterations of every run.
    messages : list of str
        L-BFGS-B's stopping message of every run.
    """

    network: TwoLayerNetwork
    objective: float
    objectives_per_restart: list[float]
    start_objectives: list[float] = field(default_factory=list)
    n_iterations: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def best_restart(self) -> int:
        """Index of the run that gave :attr:`network`."""
        return int(np.argmin(self.objectives_per_restart))


def train_nonconvex(
    X: Any,
    y: Any,
    *,
    loss: LossName = "squared",
    p: int = 1,
    bias: bool = True,
    lam: float = DEFAULT_LAM,
    width: int | None = None,
    restarts: int = 20,
    seed: int = 0,
    max_iter: int = 3000,
    fit_offset: bool = True,
    init: TwoLayerNetwork | None = None,
    init_jitter: float = 0.0,
    tol: float = 1e-13,
    max_time: float | None = None,
) -> NonConvexResult:
    """Train a two-layer ReLU network by full-batch L-BFGS-B from many random starts.

    Minimizes ``P = L(f(X), y) + (lam / 2) sum_j (||w_j||_p^2 + ||a_j||_2^2)`` (docs/conventions.md
    section 2: summed loss, biases unregularized) over all weights of a network with
    ``width`` hidden ReLU units. See the module docstring for how the nonsmooth terms are
    handled. Independent of the convex code (no wedge dictionary, no :mod:`wedgenet.losses`).

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,) or (n, c)
        Real targets (``squared``; 2-D for vector output) or class labels.
    loss : {"squared", "logistic", "softmax"}
    p : {1, 2}
        Norm of the first-layer weights in the regularizer.
    bias : bool
        Hidden biases (unregularized); ``False`` fixes them at 0.
    lam : float
        Regularization strength, > 0.
    width : int, optional
        Hidden units per random start; default ``max(2 n, 8)``. A run started from ``init``
        uses ``init``'s width.
    restarts : int
        Number of random starts (in addition to ``init``).
    seed : int
        Seed of the random starts.
    max_iter : int
        L-BFGS-B iteration limit per run.
    fit_offset : bool
        Free (unregularized) output bias ``c``; ``False`` fixes it at 0.
    init : TwoLayerNetwork, optional
        Also run L-BFGS-B from this network (local refinement), e.g. a convex solution.
        For ``p = 1`` its weights are split as ``w_plus = max(w, 0)``, ``w_minus = max(-w, 0)``,
        so the start's surrogate value equals its ``P``.
    init_jitter : float
        Relative random perturbation of ``init``'s hidden neurons: each ``(w_j, b_j)`` moves
        by ``init_jitter * ||(w_j, b_j)||`` times a standard normal vector. Networks read off
        a wedge dictionary have every hyperplane *exactly* through training samples, i.e. on
        the ReLU kinks, where the one-sided gradient is often not a descent direction and
        L-BFGS-B stops at once ("ABNORMAL" line search); a tiny jitter moves the start off the
        kinks. The jittered start's ``P`` is reported in ``start_objectives``.
    tol : float
        ``ftol`` of L-BFGS-B; the projected-gradient tolerance is ``tol`` too.
    max_time : float, optional
        Seconds for all runs together; a run still going then stops at its current iterate
        (later runs are skipped).

    Returns
    -------
    NonConvexResult
        The best network and its ``P``, and the final ``P`` of every run.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if loss not in ("squared", "logistic", "softmax"):
        raise ValueError(f"unsupported loss {loss!r}; choose squared, logistic or softmax")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    lam = check_lam(lam)
    Y, _ = encode_targets(y, loss)
    if Y.shape[0] != X.shape[0]:
        raise ValueError("X and y have different numbers of samples")
    n = X.shape[0]
    width = int(width) if width is not None else max(2 * n, 8)
    rng = np.random.default_rng(seed)

    starts: list[tuple[_Problem, FloatArray]] = []
    if init is not None:
        prob = _Problem(X, Y, loss, lam, int(p), bias, fit_offset, len(init.neurons))
        W0 = np.asarray(init.W, dtype=float).reshape(X.shape[1], -1)
        b0 = np.asarray(init.b, dtype=float) if bias else np.zeros(W0.shape[1])
        if not bias and np.any(np.asarray(init.b) != 0):
            raise ValueError("init has nonzero hidden biases but bias=False")
        if init_jitter > 0:
            size = np.sqrt(np.sum(W0 * W0, axis=0) + b0 * b0)
            W0 = W0 + init_jitter * size * rng.standard_normal(W0.shape)
            if bias:
                b0 = b0 + init_jitter * size * rng.standard_normal(b0.shape)
        A0 = np.asarray(init.A, dtype=float).reshape(W0.shape[1], -1)
        c0 = np.atleast_1d(np.asarray(init.output_bias, dtype=float))
        if not fit_offset and np.any(c0 != 0):
            raise ValueError("init has a nonzero output bias but fit_offset=False")
        starts.append((prob, prob.pack(W0, b0, A0, c0)))
    prob = _Problem(X, Y, loss, lam, int(p), bias, fit_offset, width)
    for _ in range(int(restarts)):
        starts.append((prob, prob.random_start(rng)))
    if not starts:
        raise ValueError("nothing to train: restarts=0 and no init")

    finals: list[float] = []
    start_values: list[float] = []
    iterations: list[int] = []
    messages: list[str] = []
    best: tuple[float, TwoLayerNetwork] | None = None
    deadline = None if max_time is None else time.perf_counter() + float(max_time)

    def stop_at_deadline(intermediate_result: Any) -> None:
        checkpoint("training the non-convex network")
        if deadline is not None and time.perf_counter() > deadline:
            raise StopIteration

    with _single_threaded_blas():
        for prob, x0 in starts:
            if deadline is not None and finals and time.perf_counter() > deadline:
                break
            start_values.append(prob.objective(x0))
            res = minimize(
                prob.fun_grad, x0, jac=True, method="L-BFGS-B", bounds=prob.bounds,
                options={"maxiter": int(max_iter), "maxfun": 4 * int(max_iter), "ftol": tol,
                         "gtol": tol, "maxcor": MAXCOR},
                callback=stop_at_deadline,
            )
            net = prob.network(res.x)
            value = nonconvex_objective(net, X, y, loss=loss, lam=lam, p=int(p))
            finals.append(value)
            iterations.append(int(res.nit))
            messages.append(str(res.message))
            if best is None or value < best[0]:
                best = (value, net)
    assert best is not None
    return NonConvexResult(
        network=best[1], objective=best[0], objectives_per_restart=finals,
        start_objectives=start_values, n_iterations=iterations, messages=messages,
    )


# --------------------------------------------------------------------------- evidence data
@dataclass(frozen=True)
class EvidenceDataset:
    """A small dataset of the optimality evidence (tests and ``bench/bench_l2_gap.py``).

    Attributes
    ----------
    name : str
    X : ndarray of shape (n, d)
    y : ndarray
        Real targets for ``loss`` (``squared``) or labels (``logistic``, ``softmax``).
    loss : {"squared", "logistic", "softmax"}
    """

    name: str
    X: FloatArray
    y: np.ndarray
    loss: LossName


def evidence_datasets(include_random: bool = False) -> list[EvidenceDataset]:
    """The small fixed datasets on which convex and non-convex training are compared.

    1-D (n = 8), the 4-point diamond, XOR, two spirals (n = 24), Gaussian d = 3 (n = 10),
    each with real targets (squared loss) and with two labels (logistic loss); a vector-output
    set (c = 2, squared) and a 3-class set (softmax). With ``include_random``, a few random
    Gaussian/uniform sets are appended (used by the benchmark only). Deterministic.

    Returns
    -------
    list of EvidenceDataset
    """
    out: list[EvidenceDataset] = []

    def both(name: str, X: FloatArray, y: FloatArray, labels: np.ndarray) -> None:
        out.append(EvidenceDataset(name, X, y, "squared"))
        out.append(EvidenceDataset(name, X, labels, "logistic"))

    x = np.linspace(-2.0, 2.0, 8)[:, None]
    y1 = np.sin(1.7 * x[:, 0]) + 0.3 * x[:, 0]
    both("1d", x, y1, (y1 > 0.2).astype(int))
    diamond = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    both("diamond", diamond, np.array([1.0, -1.0, 1.0, -1.0]), np.array([1, 0, 1, 0]))
    xor = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    both("xor", xor, np.array([1.0, -1.0, -1.0, 1.0]), np.array([1, 0, 0, 1]))
    k = 12
    t = np.linspace(0.25, 1.0, k) * 3.0 * np.pi
    arm = np.c_[t * np.cos(t), t * np.sin(t)] / (3.0 * np.pi)
    spiral_y = np.r_[np.ones(k), -np.ones(k)]
    both("spirals", np.r_[arm, -arm], spiral_y, (spiral_y > 0).astype(int))
    rng = np.random.default_rng(0)
    Xg = rng.standard_normal((10, 3))
    yg = rng.standard_normal(10)
    both("gauss3", Xg, yg, (yg > 0).astype(int))
    rng = np.random.default_rng(3)
    Xv = rng.standard_normal((8, 2))
    out.append(EvidenceDataset("vec2", Xv, np.c_[np.abs(Xv[:, 0]), Xv[:, 0] * Xv[:, 1]],
                               "squared"))
    ang = np.linspace(0.0, 2.0 * np.pi, 12, endpoint=False) + 0.1
    rad = 1.0 + 0.3 * np.sin(5.0 * ang)
    out.append(EvidenceDataset("sectors3", np.c_[rad * np.cos(ang), rad * np.sin(ang)],
                               (np.arange(12) // 2) % 3, "softmax"))
    if include_random:
        for seed, (n, d) in enumerate([(12, 2), (15, 2), (8, 4), (20, 2), (12, 3)]):
            rng = np.random.default_rng(100 + seed)
            Xr = rng.standard_normal((n, d)) if seed % 2 == 0 else rng.uniform(-1, 1, (n, d))
            yr = rng.standard_normal(n)
            both(f"rand{n}x{d}", Xr, yr, (yr > np.median(yr)).astype(int))
    return out
