"""The pipeline: data -> dictionary -> convex program -> solution -> network.

:func:`solve` is the one-call entry point used by the estimator, the CLI and the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.bounds import pricing_upper_bound
from wedgenet.certificate import certify
from wedgenet.dictionary import Atoms, WedgeDictionary, dictionary_size, features
from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import Loss, get_loss
from wedgenet.network import IndexSet, Neuron, TwoLayerNetwork
from wedgenet.pricing import DictionaryColumns, PricingResult, price
from wedgenet.programs import ProgramSolution, dual_bound, group_norms
from wedgenet.search import HyperplaneSearch
from wedgenet.solvers.conic import solve_cvxpy
from wedgenet.validation import DEFAULT_LAM, check_inputs, check_lam, check_X
from wedgenet.workingset import solve_working_set

FloatArray = NDArray[np.float64]
Progress = Callable[[float, str], None]
Solver = Literal["auto", "cvxpy", "workingset"]
SourceName = Literal["auto", "exhaustive", "sample", "search"]
#: Default time limit (seconds) of a solve whose dictionary is searched, not scanned.
SEARCH_MAX_TIME = 120.0
#: Width and L-BFGS iterations of the non-convex network that seeds a search (measured on a
#: d = 10 teacher-student problem: a better-trained seed beats more search rounds).
SEED_WIDTH = 200
SEED_ITERATIONS = 500
#: At most this fraction of ``max_time`` goes to training the seed network.
SEED_TIME_FRACTION = 0.3


@dataclass
class SolveResult:
    """A solved convex program and the network read off it.

    Attributes
    ----------
    network : TwoLayerNetwork
        The reconstructed network (balanced scaling); every neuron carries its index set.
    primal_objective : float
        Convex objective, equal to the network's training objective (docs/conventions.md section 2).
    dual_objective : float
        A lower bound on the convex program over every scanned column.
    relative_gap : float
        ``(primal - dual) / |primal|``.
    certified : bool
        True when the whole dictionary was scanned, ``relative_gap <= tol``, no generator
        subset was too ill-conditioned to decide, and an independent re-check of the maximum
        column score (:mod:`wedgenet.certificate`) confirms the gap: the
        solution is certified optimal for the convex program. For the exact dictionaries
        (``p = 1``) this certifies global optimality of the network training problem too
        (see :attr:`certifies_network`).
    exact : bool
        True for the ``p = 1`` dictionaries, whose program equals the network problem.
    scanned : {"all", "sampled", "searched"}
        How much of the dictionary was checked: every column, a random sample of columns
        (the program over the sample was solved), or columns found by pricing search.
    n_columns : int
        Number of dictionary columns that were priced.
    gap_estimate : float or None
        ``scanned="searched"`` only: the relative gap against the best column the search
        found, ``(primal - dual_found) / |primal|``. An estimate, not a bound: a better
        column may exist. :attr:`relative_gap` is the valid (loose) one.
    """

    network: TwoLayerNetwork
    primal_objective: float
    dual_objective: float
    relative_gap: float
    certified: bool
    exact: bool
    scanned: str
    n_columns: int
    solver: str
    solve_time: float
    params: dict[str, Any]
    classes: np.ndarray | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    gap_estimate: float | None = None
    #: Why the result is not certified (empty when it is); see :func:`wedgenet.certificate.certify`.
    certificate_note: str = ""

    @property
    def certifies_network(self) -> bool:
        """Certified optimal for the *neural network* training problem (exact and certified)."""
        return self.certified and self.exact

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (the CLI's ``--json`` output; see the README)."""
        return {
            "primal_objective": float(self.primal_objective),
            "dual_objective": float(self.dual_objective),
            "relative_gap": float(self.relative_gap),
            "certified": bool(self.certified),
            "exact": bool(self.exact),
            "certifies_network": bool(self.certifies_network),
            "scanned": self.scanned,
            "n_columns": int(self.n_columns),
            "solver": self.solver,
            "solve_time": float(self.solve_time),
            "params": dict(self.params),
            "classes": None if self.classes is None else [_plain(c) for c in self.classes],
            "gap_estimate": None if self.gap_estimate is None else float(self.gap_estimate),
            "certificate_note": self.certificate_note,
            "network": self.network.to_dict(),
        }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def solve(
    X: Any,
    y: Any,
    *,
    loss: str | Loss = "squared",
    p: int = 1,
    bias: bool = True,
    lam: float = DEFAULT_LAM,
    source: SourceName = "auto",
    n_columns: int | None = None,
    seed: int = 0,
    max_columns: int | None = 2_000_000,
    solver: Solver = "auto",
    tol: float = 1e-6,
    fit_offset: bool = True,
    chunk_size: int = 16384,
    progress: Progress | None = None,
    initial: Sequence[IndexSet] | TwoLayerNetwork | None = None,
    pricer: Callable[[FloatArray, int, float], PricingResult] | None = None,
    max_time: float | None = None,
    search_seed_network: bool = True,
) -> SolveResult:
    """Train a two-layer ReLU network by convex optimization over a wedge dictionary.

    Objective (docs/conventions.md section 2):
    ``L(f(X), y) + (lam / 2) sum_j (||w_j||_p^2 + ||a_j||_2^2)`` with summed loss and
    unregularized biases; the convex program is ``L(K z + t, y) + lam ||z||_1`` (group norm
    for vector output).

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,) or (n, c)
        Real targets (``squared``), two class labels (``logistic``, ``hinge``) or class
        labels (``softmax``).
    loss : {"squared", "logistic", "hinge", "softmax"}
    p : {1, 2}
        ``1``: exact dictionaries (the program equals the network problem). ``2``: weight
        decay; the wedge program is then an upper bound (an approximation, not certified for
        the network problem).
    bias : bool
        Biased hidden neurons.
    lam : float
        Regularization strength, > 0.
    source : {"auto", "exhaustive", "sample", "search"}
        Where the columns come from. ``exhaustive``: every column of the exact dictionary is
        priced (the only certifiable choice). ``sample``: ``n_columns`` random hyperplanes
        (the program over that sample is solved; nothing is said about the rest).
        ``search``: pricing by local search over the exact dictionary
        (:class:`wedgenet.search.HyperplaneSearch`), for dictionaries too large to enumerate;
        the result reports a *valid* lower bound from an upper bound on the pricing maximum
        (:func:`wedgenet.bounds.pricing_upper_bound`) and the gap estimated from the best
        column found, and is never certified. ``auto`` (default): ``exhaustive`` when the
        dictionary has at most ``max_columns`` columns, ``search`` otherwise.
    n_columns : int, optional
        Number of hyperplanes to sample when ``source="sample"`` (each gives 2 columns);
        with ``source="search"``, the number of random hyperplanes priced exactly as extra
        starting points (default 1024).
    seed : int
    max_columns : int, optional
        Largest exhaustive dictionary: ``source="exhaustive"`` refuses a larger one
        (:class:`DictionaryTooLarge`), ``source="auto"`` searches it instead.
    solver : {"auto", "cvxpy", "workingset"}
        ``cvxpy`` materializes the dictionary and solves with CLARABEL (reference);
        ``workingset`` is column generation with streamed pricing (fast path). ``auto``
        picks ``workingset``.
    tol : float
        Target relative duality gap.
    fit_offset : bool
        Free output bias.
    progress : callable, optional
        ``progress(fraction, stage)``; may raise to abort.
    initial : sequence of IndexSet or TwoLayerNetwork, optional
        Seed the working set: the neurons of a previous solution (e.g. at another ``lam``,
        see :func:`solve_path`) or the index sets of polished neurons
        (:func:`seed_index_sets`). Only a warm start: the result does not depend on it.
    pricer : callable, optional
        ``pricer(V, n_top, threshold) -> PricingResult`` replacing the in-process full scan,
        e.g. a scan split over several workers (:func:`price_range` prices one part). It
        must cover every column of the dictionary for the result to be certified.
    max_time : float, optional
        Seconds (counted from the call, warm starts included) after which column generation
        stops and returns the best network so far with its (honest) gap and
        ``certified=False``; the overrun is at most one restricted solve and one pricing
        round. Default: unbounded for scanned dictionaries, ``SEARCH_MAX_TIME`` for searched
        ones.
    search_seed_network : bool, default True
        With ``source="search"``: also start the search from the neurons of a quickly
        trained non-convex network, snapped to the nearest dictionary columns
        (:meth:`wedgenet.search.HyperplaneSearch.snap`).

    Returns
    -------
    SolveResult
    """
    lam = check_lam(lam)
    if not (0 < tol < 1):
        raise WedgeNetError(f"tol must be in (0, 1), got {tol}")
    if solver not in ("auto", "cvxpy", "workingset"):
        raise WedgeNetError(f"unknown solver {solver!r}; choose auto, cvxpy or workingset")
    if source not in ("auto", "exhaustive", "sample", "search"):
        raise WedgeNetError(
            f"unknown source {source!r}; choose auto, exhaustive, sample or search"
        )
    if max_time is not None and not (np.isfinite(max_time) and max_time > 0):
        raise WedgeNetError(f"max_time must be a positive number of seconds, got {max_time}")
    loss_obj = get_loss(loss)
    X, Y, classes = check_inputs(X, y, loss_obj)
    start = time.perf_counter()
    if progress is not None:
        progress(0.0, "building dictionary")
    source = resolve_source(X, source, p=p, bias=bias, max_columns=max_columns)
    if source == "search" and solver == "cvxpy":
        raise WedgeNetError(
            "solver='cvxpy' needs a dictionary it can materialize; the searched dictionary "
            "is solved by the working set (solver='auto')"
        )
    if source == "search":
        dictionary = WedgeDictionary(
            X, p=p, bias=bias, source="sample", n_hyperplanes=n_columns or 1024, seed=seed
        )
        if max_time is None:
            max_time = SEARCH_MAX_TIME
    else:
        dictionary = WedgeDictionary(
            X,
            p=p,
            bias=bias,
            source=source,
            n_hyperplanes=n_columns,
            seed=seed,
            max_columns=max_columns,
        )
    params = {
        "loss": loss_obj.name,
        "p": int(p),
        "bias": bool(bias),
        "lam": lam,
        "source": source,
        "n_columns": n_columns,
        "seed": int(seed),
        "max_columns": max_columns,
        "solver": solver,
        "tol": float(tol),
        "fit_offset": bool(fit_offset),
        "max_time": max_time,
    }
    history: list[dict[str, float]] = []
    gap_estimate: float | None = None
    stopped = ""  # why column generation stopped short of tol (WorkingSetResult.stopped)
    if solver == "cvxpy":
        atoms = dictionary.atoms()
        K = features(X, atoms.normals)
        nonzero = np.flatnonzero(np.any(K > 0, axis=0))
        atoms, K = atoms.take(nonzero), K[:, nonzero]
        if progress is not None:
            progress(0.1, f"solving with cvxpy over {K.shape[1]} columns")
        sol = solve_cvxpy(K, Y, loss_obj, lam, fit_offset=fit_offset)
        n_priced = int(K.shape[1])
        name = sol.solver
    else:
        initial_atoms = _initial_atoms(dictionary, initial)
        search: HyperplaneSearch | None = None
        if source == "search":
            if progress is not None:
                progress(0.0, "seeding the search")
            sampled, seeded = _search_starts(
                dictionary,
                X,
                Y,
                loss_obj,
                lam,
                search_seed_network,
                time_limit=None if max_time is None else SEED_TIME_FRACTION * max_time,
            )
            search = HyperplaneSearch(
                dictionary,
                seed=seed,
                initial=_union_atoms(sampled, seeded),
                deadline=None if max_time is None else start + max_time,
            )
            pricer = search
            if len(seeded):
                initial_atoms = seeded if initial_atoms is None else _union_atoms(
                    initial_atoms, seeded
                )
        ws = solve_working_set(
            DictionaryColumns(dictionary, chunk_size=chunk_size),
            Y,
            loss_obj,
            lam,
            fit_offset=fit_offset,
            tol=tol,
            progress=progress,
            partial_pricer=None if search else partial_pricer(dictionary, chunk_size),
            pricer=pricer,
            initial_atoms=initial_atoms,
            max_time=None if max_time is None else max(
                max_time - (time.perf_counter() - start), 1e-3
            ),
        )
        atoms, sol, n_priced, history = ws.atoms, ws.solution, ws.n_columns, ws.history
        stopped = ws.stopped
        # the restricted solver that produced the returned point (workingset/activeset,
        # workingset/prox-newton, workingset/group-prox-newton, workingset/cvxpy, ...)
        name = sol.solver if sol.solver.startswith("workingset/") else "workingset"
        if search is not None:
            name += " (searched)"
            gap_estimate = sol.gap
            sol = _with_valid_bound(sol, X, Y, loss_obj, lam, p=p, bias=bias)
    network = reconstruct(dictionary, atoms, sol)
    scanned = {"exhaustive": "all", "sample": "sampled", "search": "searched"}[source]
    cert = certify(
        dictionary, sol, Y, loss_obj, lam, tol, scanned=scanned, free_offset=fit_offset
    )
    result = SolveResult(
        network=network,
        primal_objective=sol.primal,
        dual_objective=cert.dual_objective,
        relative_gap=cert.relative_gap,
        certified=cert.certified,
        exact=p == 1,
        scanned=scanned,
        n_columns=n_priced,
        solver=name,
        solve_time=time.perf_counter() - start,
        params=params,
        classes=classes,
        history=history,
        gap_estimate=gap_estimate,
        certificate_note=_with_stop_reason(cert.note, stopped) if not cert.certified
        else cert.note,
    )
    verify(result, X, Y, loss_obj, lam, p, atoms, sol)
    if progress is not None:
        progress(1.0, "done")
    return result


#: what :attr:`WorkingSetResult.stopped` means, for a result's ``certificate_note``
STOP_REASONS = {
    "max_time": "column generation stopped at max_time",
    "max_outer": "column generation stopped at its iteration cap",
    "stalled": "column generation stalled (no violator outside the working set at the "
    "restricted solver's tightest tolerance: the gap is at rounding level for this data)",
}


def _with_stop_reason(note: str, stopped: str) -> str:
    reason = STOP_REASONS.get(stopped, "")
    return f"{note}; {reason}" if note and reason else note or reason


def _initial_atoms(
    dictionary: WedgeDictionary, initial: Sequence[IndexSet] | TwoLayerNetwork | None
) -> Atoms | None:
    if initial is None:
        return None
    if isinstance(initial, TwoLayerNetwork):
        sets = [nr.index_set for nr in initial.neurons if nr.index_set is not None]
    else:
        sets = list(initial)
    k = dictionary.subset_size_
    sets = [
        s
        for s in sets
        if len(s.samples) + len(s.directions) == k
        and all(0 <= i < dictionary.n_samples for i in s.samples)
        and all(0 <= j < dictionary.n_directions_ for j in s.directions)
    ]
    if not sets:
        return None
    given = WedgeDictionary(
        dictionary.X, p=dictionary.p, bias=dictionary.bias, source="given", index_sets=sets
    )
    return given.atoms()


def solve_path(X: Any, y: Any, lams: Sequence[float], **kwargs: Any) -> list[SolveResult]:
    """Solve for several ``lam`` (largest first), each warm-started from the previous one.

    Returns the results in the order of ``lams``. Keyword arguments go to :func:`solve`.
    """
    order = sorted(range(len(lams)), key=lambda i: -float(lams[i]))
    results: dict[int, SolveResult] = {}
    previous: TwoLayerNetwork | None = None
    for i in order:
        res = solve(X, y, lam=float(lams[i]), initial=previous, **kwargs)
        results[i] = previous_result = res
        previous = previous_result.network
    return [results[i] for i in range(len(lams))]


def dictionary_for(X: Any, params: dict[str, Any]) -> WedgeDictionary:
    """The dictionary :func:`solve` scans for ``params`` (``p``, ``bias``, ``source``,
    ``n_columns``, ``seed``, ``max_columns``): the same raw subset sequence in every process.

    ``source="auto"`` is resolved as :func:`solve` resolves it; a searched dictionary has no
    subset sequence to split, so it is refused.
    """
    X = np.asarray(X, dtype=float)
    p, bias = int(params.get("p", 1)), bool(params.get("bias", True))
    source = resolve_source(
        X,
        params.get("source", "exhaustive"),
        p=p,
        bias=bias,
        max_columns=params.get("max_columns", 2_000_000),
    )
    if source == "search":
        raise WedgeNetError("a searched dictionary is not scanned: it cannot be split in parts")
    return WedgeDictionary(
        X,
        p=p,
        bias=bias,
        source=source,
        n_hyperplanes=params.get("n_columns"),
        seed=int(params.get("seed", 0)),
    )


def price_range(
    X: Any,
    V: FloatArray,
    params: dict[str, Any],
    start: int,
    stop: int,
    n_top: int,
    threshold: float,
    chunk_size: int = 16384,
) -> PricingResult:
    """Price the subsets ``start:stop`` of the dictionary of ``params`` against ``V``.

    One part of a full scan split over several workers; parts merge exactly
    (:func:`wedgenet.pricing.merge_pricing`). Split with
    ``split_ranges(dictionary_for(X, params).n_raw_subsets, n_parts)``.
    """
    D = dictionary_for(X, params)
    return price(
        DictionaryColumns(D, chunk_size=chunk_size, start=start, stop=stop),
        np.asarray(V, dtype=float).reshape(D.n_samples, -1),
        n_top,
        threshold,
    )


def seed_index_sets(
    X: Any,
    y: Any,
    *,
    loss: Literal["squared", "logistic", "softmax"] = "squared",
    p: int = 1,
    bias: bool = True,
    lam: float,
    width: int | None = None,
    seed: int = 0,
) -> list[IndexSet]:
    """Index sets of the polished neurons of a quickly trained network (a warm start).

    Trains a network briefly with the non-convex trainer, polishes its first layer
    (Sec. 4.1) and returns the index sets of the polished neurons in both orientations.
    """
    from wedgenet.nonconvex import train_nonconvex
    from wedgenet.polish import polish_layer

    X = np.asarray(X, dtype=float)
    width = width or min(4 * X.shape[1] + 8, 64)
    trained = train_nonconvex(
        X, y, loss=loss, p=p, bias=bias, lam=lam, width=width, restarts=1, seed=seed, max_iter=200
    )
    net = trained.network
    polished = polish_layer(X, net.W, net.b if bias else None, p=p, bias=bias)
    sets: set[IndexSet] = set()
    for ok, rows in zip(polished.ok, polished.row_ids, strict=True):
        if ok:
            samples = tuple(sorted(int(i) for i in rows))
            sets |= {IndexSet(samples, (), 1), IndexSet(samples, (), -1)}
    return sorted(sets, key=lambda s: (s.samples, s.sign))


def sample_index_sets(
    X: Any, n_hyperplanes: int = 256, *, p: int = 1, bias: bool = True, seed: int = 0
) -> list[IndexSet]:
    """Index sets of randomly sampled hyperplanes, in both orientations (a warm start).

    The hyperplanes are drawn as by ``source="sample"`` (random subsets of the samples and,
    for p = 1, the basis directions). A cheap alternative to :func:`seed_index_sets` when
    no trained network is at hand; like every warm start it does not change the result.
    """
    if n_hyperplanes < 1:
        raise WedgeNetError(f"n_hyperplanes must be >= 1, got {n_hyperplanes}")
    D = WedgeDictionary(
        check_X(X), p=p, bias=bias, source="sample", n_hyperplanes=n_hyperplanes, seed=seed
    )
    atoms = D.atoms()
    return sorted(
        {D.index_set(atoms.subsets[i], int(atoms.signs[i])) for i in range(len(atoms))},
        key=lambda s: (s.samples, s.directions, s.sign),
    )


#: Exhaustive dictionaries with more hyperplanes than this use partial pricing: each outer
#: iteration first scans a fresh random sample of this many hyperplanes.
PARTIAL_PRICING_SAMPLE = 50_000


def partial_pricer(
    dictionary: WedgeDictionary, chunk_size: int
) -> Callable[[FloatArray, int, float, int], PricingResult] | None:
    """A partial pricer over random samples of an exhaustive dictionary, or ``None``."""
    if dictionary.source != "exhaustive" or dictionary.n_subsets <= 4 * PARTIAL_PRICING_SAMPLE:
        return None

    def scan(V: FloatArray, n_top: int, threshold: float, iteration: int) -> PricingResult:
        sample = WedgeDictionary(
            dictionary.X,
            p=dictionary.p,
            bias=dictionary.bias,
            source="sample",
            n_hyperplanes=PARTIAL_PRICING_SAMPLE,
            seed=dictionary.seed * 100_003 + iteration,
        )
        return price(DictionaryColumns(sample, chunk_size=chunk_size), V, n_top, threshold)

    return scan


def resolve_source(
    X: FloatArray, source: SourceName, *, p: int, bias: bool, max_columns: int | None
) -> Literal["exhaustive", "sample", "search"]:
    """The dictionary source :func:`solve` uses: ``auto`` becomes ``exhaustive`` when the
    exact dictionary has at most ``max_columns`` columns and ``search`` otherwise."""
    if source != "auto":
        return source
    if max_columns is None:
        return "exhaustive"
    n, d = X.shape
    # p = 1 sizes need no rank; p = 2 sizes need the data's rank (one small SVD)
    size = dictionary_size(n, d, 1, bias) if p == 1 else WedgeDictionary(X, p=2, bias=bias).size
    return "exhaustive" if size <= max_columns else "search"


def _search_starts(
    dictionary: WedgeDictionary,
    X: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    seed_network: bool,
    time_limit: float | None = None,
) -> tuple[Atoms, Atoms]:
    """Starting columns of the search: the dictionary's random sample and (possibly empty)
    the neurons of a quickly trained non-convex network, snapped to the nearest dictionary
    columns (:meth:`HyperplaneSearch.snap`, basis directions included for ``p = 1``)."""
    from wedgenet.nonconvex import train_nonconvex

    sampled = dictionary.atoms()
    seeded = sampled.take(np.zeros(0, dtype=np.int64))
    if seed_network and loss.smooth:
        y = loss.decode(Y)
        net = train_nonconvex(
            X,
            y,
            loss=loss.name,  # type: ignore[arg-type]
            p=dictionary.p,
            bias=dictionary.bias,
            lam=lam,
            width=min(SEED_WIDTH, X.shape[0]),
            restarts=1,
            seed=dictionary.seed,
            max_iter=SEED_ITERATIONS,
            max_time=time_limit,
        ).network
        normals = np.concatenate([net.W.T, np.asarray(net.b).reshape(-1, 1)], axis=1)
        if not dictionary.bias:
            normals[:, -1] = 0.0
        snapped = HyperplaneSearch(dictionary).snap(normals)
        # both orientations of each snapped hyperplane (the other one is often used too)
        seeded = Atoms.oriented(
            snapped.subsets, snapped.normals * snapped.signs[:, None], signs=None
        )
    return sampled, seeded


def _union_atoms(a: Atoms, b: Atoms) -> Atoms:
    return Atoms.concatenate([a, b], a.subsets.shape[1], a.normals.shape[1] - 1)


def _with_valid_bound(
    sol: ProgramSolution,
    X: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    *,
    p: int,
    bias: bool,
) -> ProgramSolution:
    """Replace a searched solution's dual estimate by a valid lower bound.

    The dual point ``V`` is scaled into the dual feasible set with an *upper bound* on the
    pricing maximum over every neuron (:func:`wedgenet.bounds.pricing_upper_bound`), so the
    bound holds for every column of the exact dictionary, searched or not.
    """
    bound = pricing_upper_bound(X, sol.V, p=p, bias=bias)
    dual = dual_bound(loss, sol.V, Y, lam, max(bound, sol.max_score))
    return replace(sol, dual=min(dual, sol.dual))


def reconstruct(
    dictionary: WedgeDictionary, atoms: Atoms, sol: ProgramSolution, zero_tol: float = 0.0
) -> TwoLayerNetwork:
    """Read the network off a program solution, with balanced scaling (Sec. 9.12).

    Column ``j`` with coefficient row ``Z_j`` and unit-norm neuron ``(w, b)`` becomes the
    neuron ``sqrt(||Z_j||) (w, b)`` with output weights ``Z_j / sqrt(||Z_j||)``, so that
    ``||w_j||_p^2 = ||a_j||_2^2 = ||Z_j||`` and the network objective equals the program's.
    """
    d = dictionary.n_features
    norms = group_norms(sol.Z) if sol.Z.shape[0] else np.zeros(0)
    neurons: list[Neuron] = []
    for j in np.flatnonzero(norms > zero_tol):
        scale = float(np.sqrt(norms[j]))
        h = atoms.normals[j]
        subset = atoms.subsets[j]
        sign = int(atoms.signs[j])
        neurons.append(
            Neuron(
                weight=h[:d] * scale,
                bias=float(h[d] * scale) if dictionary.bias else 0.0,
                output_weight=sol.Z[j] / scale,
                index_set=dictionary.index_set(subset, sign),
                formula=dictionary.formula(subset, sign),
                residual=dictionary.residual(subset, h),
            )
        )
    return TwoLayerNetwork(
        neurons=neurons, output_bias=np.asarray(sol.t, dtype=float), n_features=d
    )


def verify(
    result: SolveResult,
    X: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    p: int,
    atoms: Atoms,
    sol: ProgramSolution,
) -> None:
    """Check that the network reproduces the program: outputs to 1e-9, objective to 1e-8.

    Raises
    ------
    RuntimeError
        If reconstruction is inconsistent (a bug, never a user error).
    """
    net = result.network
    U_net = net.decision_function(X).reshape(X.shape[0], -1)
    U_prog = (
        features(X, atoms.normals) @ sol.Z + sol.t
        if len(atoms)
        else np.tile(sol.t, (X.shape[0], 1))
    )
    scale = max(1.0, float(np.max(np.abs(U_prog))))
    if np.max(np.abs(U_net - U_prog)) > 1e-9 * scale:
        raise RuntimeError("reconstructed network output differs from K z + t")
    obj_net = loss.value(U_net, Y) + lam * net.regularization(p)
    if abs(obj_net - result.primal_objective) > 1e-8 * max(1.0, abs(result.primal_objective)):
        raise RuntimeError(
            f"network objective {obj_net} differs from the convex objective "
            f"{result.primal_objective}"
        )


def network_objective(
    network: TwoLayerNetwork, X: Any, y: Any, *, loss: str | Loss = "squared", lam: float, p: int
) -> float:
    """Training objective of any two-layer network (docs/conventions.md section 2)."""
    loss_obj = get_loss(loss)
    X, Y, _ = check_inputs(X, y, loss_obj)
    U = network.decision_function(X).reshape(X.shape[0], -1)
    return loss_obj.value(U, Y) + lam * network.regularization(p)
