"""Pricing by search: finding high-scoring dictionary columns without enumerating them.

Beyond a few dimensions the exact dictionary has ``C(n + d, D - 1)`` columns and cannot be
scanned. Column generation still needs, at each dual point ``V``, columns whose *pricing
score*

    score(w, b) = || relu(X w + b)^T V ||_2 / ||w||_p

exceeds ``lam``. This module finds them by a local search that only ever visits exact
dictionary columns (oriented hyperplanes through ``D - 1`` generators: lifted samples and, for
``p = 1``, basis directions), so every neuron found keeps its index set.

The vertex walk
---------------
A column is a *vertex*: a hyperplane with normal ``h`` through the generators of its index set
``S``. Dropping one generator ``g_j`` of ``S`` leaves ``D - 2`` generators whose common
hyperplanes form a *pencil* ``phi(theta) = cos(theta) h + sin(theta) m_j`` (``m_j`` is column
``j`` of the pseudo-inverse of the generator matrix, normalized: it is orthogonal to ``h`` and
to every other generator of ``S``). Along the pencil each generator ``g_i`` crosses the
hyperplane at two opposite angles, where ``S - {g_j} + {g_i}`` is again a column of the
dictionary (one angle per orientation). Between those angles the score's numerator is
``cos(theta) A + sin(theta) B`` with constant sums ``A``, ``B`` over the active samples, and for
``p = 1`` the denominator ``||w(theta)||_1`` is of the same form, so the score of *every*
column on the pencil follows from one sort of the crossing angles and a sweep with running
sums: ``O((n + d) log(n + d) + n c)`` per pencil, ``D - 1`` pencils per vertex. For ``p = 1``
the maximum of the score over the whole pencil is attained at one of those crossings (a ratio
of a sinusoid and a piecewise sinusoid peaks at a breakpoint of the denominator or the
numerator's active set), so a step is an exact line search over the pencil restricted to
dictionary columns; for ``p = 2`` the columns are the crossings of samples only.

A walk moves to the best column over all pencils while the score improves by a relative
``1e-12`` and stops at a local maximum of the score over the vertex graph (or after
``max_steps``). Starts: the best columns found in earlier rounds, re-scored at the new dual
point (the current neurons), columns snapped from a quickly trained non-convex network
(:func:`wedgenet.solve.seed_index_sets`), and random index sets. Every column visited or seen
as the best of a pencil is a candidate; the candidates' scores are then recomputed exactly
from the dictionary's own normals (:meth:`WedgeDictionary.hyperplanes`) before they are
returned.

What this gives, honestly: the best score *found*, never a proof that no better column
exists. A result priced by search is reported ``scanned="searched"`` and never certified; its
valid lower bound comes from an upper bound on the pricing maximum
(:func:`wedgenet.bounds.pricing_upper_bound`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from wedgenet.dictionary import Atoms, WedgeDictionary
from wedgenet.geometry import one_blas_thread
from wedgenet.interrupt import checkpoint
from wedgenet.pricing import PricingResult, hyperplane_scores

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

TWO_PI = 2.0 * math.pi
#: Spread thresholds of :meth:`HyperplaneSearch.snap`: each neuron is snapped once per value.
SNAP_SPREADS = (1e-8, 0.3)


@njit(parallel=True, cache=True)
def _pencil_scan(
    A: np.ndarray,
    C: np.ndarray,
    V: np.ndarray,
    n_points: int,
    WA: np.ndarray,
    WC: np.ndarray,
    p: int,
    gnorm: np.ndarray,
    best_score: np.ndarray,
    best_gen: np.ndarray,
    best_angle: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """For each pencil ``j``, the best column ``S - {j} + {i}`` over the generators ``i``.

    ``A[i] = g_i . h`` and ``C[i, j] = g_i . m_j`` for the samples (rows ``< n_points``,
    weighted by ``V[i]``); ``WA``, ``WC`` the same for the rows of the map to original
    weights, ``w(theta) = cos(theta) WA + sin(theta) WC[:, j]``. For ``p = 1`` the zero of
    weight row ``q`` is where basis direction ``q`` joins the index set (generator
    ``n_points + q``), so every event angle is a candidate column.
    """
    k = C.shape[1]
    c = V.shape[1]
    d = WA.shape[0]
    n_rows = n_points + (d if p == 1 else 0)
    for j in prange(k):
        ang = np.empty(2 * n_rows)
        row = np.empty(2 * n_rows, dtype=np.int64)
        sgn = np.empty(2 * n_rows)
        SA = np.zeros(c)
        SC = np.zeros(c)
        wsa = 0.0
        wsc = 0.0
        tot_wa = 0.0
        tot_wc = 0.0
        wa2 = 0.0
        wc2 = 0.0
        wac = 0.0
        n_ev = 0
        for r in range(n_rows):
            if r < n_points:
                a = A[r]
                cc = C[r, j]
                if math.hypot(a, cc) <= 1e-12 * gnorm[r]:
                    continue  # on every hyperplane of the pencil
            else:
                a = WA[r - n_points]
                cc = WC[r - n_points, j]
                tot_wa += a
                tot_wc += cc
                if a == 0.0 and cc == 0.0:
                    continue
            beta = math.atan2(cc, a)
            s0 = (beta - 0.5 * math.pi) % TWO_PI
            e0 = (beta + 0.5 * math.pi) % TWO_PI
            ang[n_ev] = s0
            row[n_ev] = r
            sgn[n_ev] = 1.0
            ang[n_ev + 1] = e0
            row[n_ev + 1] = r
            sgn[n_ev + 1] = -1.0
            n_ev += 2
            if e0 < s0:  # the positive arc wraps around theta = 0: active there
                if r < n_points:
                    for q in range(c):
                        SA[q] += V[r, q] * a
                        SC[q] += V[r, q] * cc
                else:
                    wsa += a
                    wsc += cc
        if p != 1:
            for q in range(d):
                wa2 += WA[q] * WA[q]
                wc2 += WC[q, j] * WC[q, j]
                wac += WA[q] * WC[q, j]
        order = np.argsort(ang[:n_ev])
        bs = -1.0
        bg = -1
        ba = 0.0
        e = 0
        while e < n_ev:
            theta = ang[order[e]]
            # score at theta: the rows with an event exactly here are zero at theta, so
            # whether they are counted does not matter; evaluate before applying them
            ct = math.cos(theta)
            st = math.sin(theta)
            num = 0.0
            for q in range(c):
                val = ct * SA[q] + st * SC[q]
                num += val * val
            num = math.sqrt(num)
            if p == 1:
                den = 2.0 * (ct * wsa + st * wsc) - (ct * tot_wa + st * tot_wc)
            else:
                den2 = ct * ct * wa2 + 2.0 * ct * st * wac + st * st * wc2
                den = math.sqrt(den2) if den2 > 0.0 else 0.0
            e2 = e
            while e2 < n_ev and ang[order[e2]] == theta:
                e2 += 1
            if den > 1e-12:
                sc = num / den
                if sc > bs:
                    bs = sc
                    r = row[order[e]]
                    bg = r
                    ba = theta
            for t in range(e, e2):
                r = row[order[t]]
                s = sgn[order[t]]
                if r < n_points:
                    a = A[r]
                    cc = C[r, j]
                    for q in range(c):
                        SA[q] += s * V[r, q] * a
                        SC[q] += s * V[r, q] * cc
                else:
                    wsa += s * WA[r - n_points]
                    wsc += s * WC[r - n_points, j]
            e = e2
        best_score[j] = bs
        best_gen[j] = bg
        best_angle[j] = ba


@njit(cache=True)
def _spread_subsets(
    Gn: np.ndarray, hu: np.ndarray, order: np.ndarray, taus: np.ndarray, k: int
) -> np.ndarray:  # pragma: no cover - compiled
    """For each neuron ``i`` and threshold ``taus[t]``: the first ``k`` generators in
    ``order[i]`` whose in-plane components (orthogonal to the unit normal ``hu[i]``) stick
    out of the span of the earlier ones by more than ``taus[t]`` (Gram-Schmidt); rows of
    ``-1`` where fewer exist."""
    m = order.shape[0]
    D = Gn.shape[1]
    out = np.full((m, taus.shape[0], max(k, 1)), -1, dtype=np.int64)
    basis = np.empty((max(k, 1), D))
    g = np.empty(D)
    for i in range(m):
        for t in range(taus.shape[0]):
            n_ch = 0
            for pos in range(order.shape[1]):
                if n_ch == k:
                    break
                r = order[i, pos]
                dot = 0.0
                for q in range(D):
                    dot += hu[i, q] * Gn[r, q]
                for q in range(D):
                    g[q] = Gn[r, q] - dot * hu[i, q]
                for b in range(n_ch):
                    proj = 0.0
                    for q in range(D):
                        proj += basis[b, q] * g[q]
                    for q in range(D):
                        g[q] -= proj * basis[b, q]
                ng = 0.0
                for q in range(D):
                    ng += g[q] * g[q]
                ng = math.sqrt(ng)
                if ng > taus[t]:
                    for q in range(D):
                        basis[n_ch, q] = g[q] / ng
                    out[i, t, n_ch] = r
                    n_ch += 1
            if n_ch < k:
                out[i, t, :] = -1
    return out


@dataclass
class _Frame:
    """A vertex: index set ``S`` (pool indices), unit normal ``h`` and pencil directions."""

    subset: IntArray
    h: FloatArray
    M: FloatArray  # (D, k) unit columns, orthogonal to h


@dataclass
class SearchStats:
    """What the last :meth:`HyperplaneSearch.__call__` did."""

    n_walks: int = 0
    n_steps: int = 0
    n_candidates: int = 0
    best_score: float = 0.0
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)


class HyperplaneSearch:
    """A pricer that searches the exact dictionary of ``dictionary`` for high scores.

    Parameters
    ----------
    dictionary : WedgeDictionary
        Defines the data, ``p``, ``bias`` and the generator pool; its ``source`` does not
        matter (its columns are never enumerated).
    n_random : int, default 2
        Random starting index sets per call (each walked in both orientations).
    n_restarts : int, default 12
        Walks from the best previously found columns (re-scored at the new dual point).
    max_steps : int, optional
        Steps per walk; default ``3 (D - 1)`` clipped to [10, 100] (a step exchanges one
        generator, so crossing the index set takes ``D - 1`` steps).
    max_pencils : int, default 16
        Pencils scanned per block: in high dimension a step scans random blocks of the
        ``D - 1`` pencils and moves on the first block that improves.
    time_budget : float, default 3.0
        Seconds per call; the walks stop (keeping what they found) when it runs out.
    seed : int, default 0
    initial : Atoms, optional
        Starting columns for the first call (e.g. snapped non-convex neurons).
    deadline : float, optional
        A ``time.perf_counter()`` instant; no call searches past it (each still walks from
        at least one start, so it returns columns).

    Notes
    -----
    Called as ``pricer(V, n_top, threshold)`` like a full scan
    (:func:`wedgenet.pricing.price`); the returned ``max_score`` is the best score *found*.
    """

    def __init__(
        self,
        dictionary: WedgeDictionary,
        *,
        n_random: int = 2,
        n_restarts: int = 12,
        max_steps: int | None = None,
        max_pencils: int = 16,
        time_budget: float = 3.0,
        seed: int = 0,
        initial: Atoms | None = None,
        deadline: float | None = None,
    ) -> None:
        self.dictionary = dictionary
        self.n_random = int(n_random)
        self.n_restarts = int(n_restarts)
        self.max_steps = None if max_steps is None else int(max_steps)
        self.max_pencils = max(1, int(max_pencils))
        self.time_budget = float(time_budget)
        self.deadline = deadline
        self.rng = np.random.default_rng(seed)
        D = dictionary
        self.G = np.ascontiguousarray(D.generators_, dtype=float)
        self.gnorm = np.linalg.norm(self.G, axis=1)
        self.n = D.n_samples
        self.k = D.subset_size_
        dim = D.dim_
        # Linear map from working homogeneous coordinates to original (w, b).
        self.T = D.to_original(np.eye(dim))  # (dim, d + 1)
        self.Tw = np.ascontiguousarray(self.T[:, : D.n_features])
        if D.p == 1:
            # The pencil scan takes the zero of weight row q as the angle where direction
            # q joins the index set: true when direction generators and weight rows are
            # parallel (working coordinates that scale features, never mix them).
            dirs = self.G[self.n :]
            cos = np.abs(np.einsum("qi,iq->q", dirs, self.Tw)) / (
                np.linalg.norm(dirs, axis=1) * np.linalg.norm(self.Tw, axis=0)
            )
            if dirs.shape[0] != self.Tw.shape[1] or not np.allclose(cos, 1.0, atol=1e-12):
                raise AssertionError("p = 1 working coordinates must not mix features")
        self.known: Atoms | None = initial
        self.stats = SearchStats()
        self._visited: set[bytes] = set()

    # ------------------------------------------------------------------ frames
    def _frame(self, subset: IntArray, orient: FloatArray | None = None) -> _Frame | None:
        Gs = self.G[subset]
        if self.k == 0:
            return None
        u, s, vt = np.linalg.svd(Gs, full_matrices=True)
        if s[-1] <= 1e-12 * s[0]:
            return None
        h = vt[-1]
        if orient is not None and float(h @ orient) < 0:
            h = -h
        M = vt[: self.k].T @ (u.T / s[:, None])  # pseudo-inverse, (dim, k)
        M /= np.linalg.norm(M, axis=0)
        return _Frame(np.asarray(subset, dtype=np.int64), h, M)

    def _orientation(self, atoms: Atoms) -> FloatArray:
        """Working-coordinate normals of atoms (for orienting frames)."""
        return self._orientation_of(atoms.normals)

    def snap(self, normals: FloatArray, spreads: Sequence[float] = SNAP_SPREADS) -> Atoms:
        """Dictionary columns close to arbitrary neurons ``(w, b)`` (original units).

        For each neuron and each threshold ``tau`` in ``spreads``: the hyperplane through
        ``D - 1`` generators taken nearest first (smallest ``|g . (w, b)| / (||g||
        ||(w, b)||)`` in original homogeneous coordinates), skipping a generator whose unit
        vector, within the neuron's hyperplane, has a component of at most ``tau`` outside
        the span of those already taken (working coordinates, which are equilibrated, so
        ``tau`` does not depend on feature scales). ``tau -> 0`` takes the nearest
        independent generators; a larger ``tau`` takes generators spread along the
        hyperplane, whose hyperplane stays closer to the neuron's when the nearest ones
        bunch together (measured on a d = 10 teacher-student problem, ``p = 2``: the
        convex refit over the snapped columns of a trained width-200 network had objective
        13.34 with ``tau = 1e-8`` alone, 11.54 with ``tau = 0.3``, 11.41 with the union over
        ``tau`` in (1e-8, 0.05, 0.1, 0.2, 0.3, 0.5), against 11.49 over the network's own
        neurons; the searched solve at a 6 s budget reached 11.19 with the default
        ``(1e-8, 0.3)``, 11.20-11.37 with other pairs, 11.58 with ``1e-8`` alone). Oriented like the
        neuron; distinct columns only. Unlike polishing, the basis directions compete too
        (``p = 1``): a sparse neuron keeps its zero weights. Neurons whose weights vanish are
        skipped.
        """
        normals = np.asarray(normals, dtype=float).reshape(-1, self.T.shape[1])
        H = self._orientation_of(normals)
        Gn = self.G / np.where(self.gnorm > 0, self.gnorm, 1.0)[:, None]
        D = self.dictionary
        # generators in original homogeneous coordinates: [x, 1] (or [x, 0]) and [e_k, 0]
        d = D.n_features
        orig = np.zeros((self.G.shape[0], d + 1))
        orig[: self.n, :d] = D.X
        orig[: self.n, d] = 1.0 if D.bias else 0.0
        orig[self.n :, :d] = np.eye(d)[: self.G.shape[0] - self.n]
        orig /= np.maximum(np.linalg.norm(orig, axis=1), 1e-300)[:, None]
        wn = np.linalg.norm(normals, axis=1)
        hn = np.linalg.norm(H, axis=1)
        live = np.flatnonzero((wn > 0) & (hn > 0) & np.any(normals[:, :d] != 0, axis=1))
        if live.size == 0:
            return self._atoms([])
        hu = np.ascontiguousarray(H[live] / hn[live, None])
        # nearest first, in the data's own units (the distance polishing uses)
        dist = np.abs(orig @ normals[live].T) / wn[live]  # (P, m)
        order = np.ascontiguousarray(np.argsort(dist, axis=0, kind="stable").T)
        taus = np.maximum(np.asarray(spreads, dtype=float), 1e-8)
        chosen = _spread_subsets(np.ascontiguousarray(Gn), hu, order, taus, self.k)
        cands = [
            (np.sort(chosen[i, t]), H[live[i]])
            for i in range(live.size)
            for t in range(taus.size)
            if chosen[i, t, 0] >= 0
        ]
        return _unique(self._atoms(cands))

    def _orientation_of(self, normals: FloatArray) -> FloatArray:
        # original (w, b) = phi @ T  =>  phi = (w, b) @ pinv(T)
        return np.asarray(normals @ np.linalg.pinv(self.T), dtype=float)

    def _scan(
        self, fr: _Frame, V: FloatArray, pencils: IntArray
    ) -> tuple[FloatArray, IntArray, FloatArray]:
        """The best column of each of the given pencils (positions in ``fr.subset``)."""
        M = fr.M[:, pencils]
        A = self.G @ fr.h
        C = np.ascontiguousarray(self.G @ M)
        WA = self.Tw.T @ fr.h
        WC = np.ascontiguousarray(self.Tw.T @ M)
        m = pencils.shape[0]
        bs = np.empty(m)
        bg = np.empty(m, dtype=np.int64)
        ba = np.empty(m)
        _pencil_scan(A, C, V, self.n, WA, WC, self.dictionary.p, self.gnorm, bs, bg, ba)
        return bs, bg, ba

    def _current_score(self, fr: _Frame, V: FloatArray) -> float:
        w = self.Tw.T @ fr.h
        den = float(np.linalg.norm(w, ord=self.dictionary.p))
        if den <= 1e-12:
            return -1.0
        u = self.G[: self.n] @ fr.h
        return float(np.linalg.norm(np.maximum(u, 0.0) @ V)) / den

    # ------------------------------------------------------------------ walking
    def walk(
        self, fr: _Frame, V: FloatArray, deadline: float, max_steps: int
    ) -> tuple[list[tuple[IntArray, FloatArray]], float]:
        """Walk from ``fr`` uphill; returns the candidate columns ``(subset, phi)`` seen."""
        seen: list[tuple[IntArray, FloatArray]] = [(fr.subset.copy(), fr.h.copy())]
        score = self._current_score(fr, V)
        k = self.k
        for _ in range(max_steps):
            key = self._vertex_key(fr)
            if key in self._visited:
                break  # an earlier walk of this call went on from here already
            self._visited.add(key)
            # Pencils in random blocks of at most `max_pencils`: move on the first block that
            # improves, so a walk stops only where no pencil at all improves.
            order = self.rng.permutation(k) if k > self.max_pencils else np.arange(k)
            moved = False
            for b0 in range(0, k, self.max_pencils):
                block = order[b0 : b0 + self.max_pencils]
                bs, bg, ba = self._scan(fr, V, block)
                self.stats.n_steps += 1
                best = np.argsort(-bs)
                for t in best[: min(4, len(best))]:
                    if bs[t] > 0 and bg[t] >= 0:
                        seen.append(self._moved(fr, int(block[t]), int(bg[t]), float(ba[t])))
                t = int(best[0])
                if bs[t] > score * (1 + 1e-12) and bg[t] >= 0:
                    subset, phi = self._moved(fr, int(block[t]), int(bg[t]), float(ba[t]))
                    nxt = self._frame(subset, phi)
                    if nxt is not None:
                        fr, score, moved = nxt, float(bs[t]), True
                        break
            if not moved or time.perf_counter() > deadline:
                break
        return seen, score

    def _vertex_key(self, fr: _Frame) -> bytes:
        """The vertex (index set and orientation) a frame stands on."""
        i = int(np.argmax(np.abs(fr.h)))
        return np.sort(fr.subset).tobytes() + (b"+" if fr.h[i] > 0 else b"-")

    def _moved(self, fr: _Frame, j: int, i: int, theta: float) -> tuple[IntArray, FloatArray]:
        subset = fr.subset.copy()
        subset[j] = i
        phi = math.cos(theta) * fr.h + math.sin(theta) * fr.M[:, j]
        return np.sort(subset), phi

    def _random_subsets(self, m: int) -> IntArray:
        """Random index sets: samples only where there are enough (biased or ``p = 2``),
        else every sample and random basis directions (``p = 1`` with ``d >= n``)."""
        P = self.G.shape[0]
        out = np.empty((m, self.k), dtype=np.int64)
        for r in range(m):
            pool = self.n if self.dictionary.bias or self.dictionary.p == 2 else P
            if self.k <= pool:
                out[r] = np.sort(self.rng.choice(pool, size=self.k, replace=False))
            else:
                extra = self.n + self.rng.choice(P - self.n, size=self.k - self.n, replace=False)
                out[r] = np.sort(np.concatenate([np.arange(self.n), extra]))
        return out

    # ------------------------------------------------------------------ pricing
    def __call__(self, V: FloatArray, n_top: int, threshold: float) -> PricingResult:
        # thousands of small SVDs and products: BLAS threads only add overhead (measured:
        # a 64 x 65 SVD took 100 ms with two OpenBLAS threads on a loaded 2-core machine)
        with one_blas_thread():
            return self._price(V, n_top, threshold)

    def _price(self, V: FloatArray, n_top: int, threshold: float) -> PricingResult:
        t0 = time.perf_counter()
        deadline = self._deadline(t0)
        V = np.ascontiguousarray(V, dtype=float).reshape(self.n, -1)
        self.stats = SearchStats()
        self._visited = set()
        steps = self.max_steps or int(np.clip(3 * self.k, 10, 100))
        atoms, scores = self._phase(V, self.n_restarts, self.n_random, steps, deadline)
        if (scores.max() if scores.size else 0.0) <= threshold and (
            self.deadline is None or time.perf_counter() < self.deadline
        ):
            # Nothing above the threshold: search harder before the caller concludes that
            # the program is solved (more starts, longer walks, a fresh budget).
            more = self._phase(
                V,
                3 * self.n_restarts,
                4 * self.n_random + 2,
                3 * steps,
                self._deadline(time.perf_counter()),
            )
            atoms = Atoms.concatenate([atoms, more[0]], self.k, self.dictionary.n_features)
            scores = np.concatenate([scores, more[1]])
            atoms = _unique(atoms)
            atoms, scores = self._rescored(atoms, V)
        self.known = atoms.take(np.argsort(-scores)[: max(4 * self.n_restarts, n_top)])
        self.stats.n_candidates = len(atoms)
        self.stats.best_score = float(scores.max()) if scores.size else 0.0
        self.stats.seconds = time.perf_counter() - t0
        keep = np.flatnonzero(scores > threshold)
        keep = keep[np.argsort(-scores[keep])][:n_top]
        # the returned columns under their canonical index sets: the working set's
        # deduplication keeps only canonical subsets, and on sparse data the walk often
        # reaches a hyperplane through a non-canonical one
        top = _unique(self.dictionary.canonical_atoms(atoms.take(keep)))
        _, top_scores = self._rescored(top, V)
        order = np.argsort(-top_scores)
        return PricingResult(
            max_score=self.stats.best_score,
            n_columns=len(atoms),
            top_scores=top_scores[order],
            top_atoms=top.take(order),
        )

    def _deadline(self, now: float) -> float:
        end = now + self.time_budget
        return end if self.deadline is None else min(end, self.deadline)

    def _phase(
        self, V: FloatArray, n_known: int, n_random: int, max_steps: int, deadline: float
    ) -> tuple[Atoms, FloatArray]:
        """Walks from the ``n_known`` best known columns and ``n_random`` random index sets
        (both orientations); the exact, re-scored candidates they saw."""
        starts: list[_Frame] = []
        if self.known is not None and len(self.known):
            known, kscores = self._rescored(self.known, V)
            kn = known.take(np.argsort(-kscores)[:n_known])
            for s, ph in zip(kn.subsets, self._orientation(kn), strict=True):
                fr = self._frame(s, ph)
                if fr is not None:
                    starts.append(fr)
        for s in self._random_subsets(n_random):
            fr = self._frame(s)
            if fr is not None:
                starts.append(fr)
                fl = self._frame(s, -fr.h)
                if fl is not None:
                    starts.append(fl)
        cands: list[tuple[IntArray, FloatArray]] = []
        for fr in starts:
            checkpoint("searching the dictionary")
            if time.perf_counter() > deadline and cands:
                break
            seen, score = self.walk(fr, V, deadline, max_steps)
            self.stats.n_walks += 1
            self.stats.history.append(score)
            cands.extend(seen)
        return self._rescored(self._atoms(cands), V)

    def _atoms(self, cands: Sequence[tuple[IntArray, FloatArray]]) -> Atoms:
        """Exact, oriented dictionary columns of the candidates (duplicates removed)."""
        D = self.dictionary
        if not cands:
            return Atoms.concatenate([], self.k, D.n_features)
        subs = np.array([c[0] for c in cands], dtype=np.int64).reshape(-1, self.k)
        phis = np.array([c[1] for c in cands], dtype=float)
        orig = phis @ self.T  # candidates' (w, b) up to scale, with their orientation
        keep, normals = D.hyperplanes(subs, dedupe=False)
        signs = np.where(np.einsum("ij,ij->i", orig[keep], normals) >= 0, 1, -1)
        atoms = Atoms(subs[keep], normals * signs[:, None], signs.astype(np.int64))
        return _unique(atoms)

    def _rescored(self, atoms: Atoms, V: FloatArray) -> tuple[Atoms, FloatArray]:
        if len(atoms) == 0:
            return atoms, np.zeros(0)
        pos, _ = hyperplane_scores(self.dictionary.X, atoms.normals, V)
        return atoms, pos


def _unique(atoms: Atoms) -> Atoms:
    if len(atoms) == 0:
        return atoms
    keys = np.concatenate([atoms.subsets, atoms.signs[:, None]], axis=1)
    _, idx = np.unique(keys, axis=0, return_index=True)
    return atoms.take(np.sort(idx))


__all__ = ["HyperplaneSearch", "SearchStats"]
