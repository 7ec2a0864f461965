"""Command line: ``wedgenet solve``, ``wedgenet plot`` and the commands of installed extras.

This module reads files (CSV, .npy, .npz) and writes results; the numerics it calls do no I/O.
More commands are found through the entry-point group ``wedgenet.commands``: each entry point
names a function ``main(argv: list[str]) -> int`` (the service registers ``serve``,
``app.cli:serve_main``). The engine imports none of them until the command is run.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import numpy as np

from wedgenet.exceptions import WedgeNetError
from wedgenet.solve import SolveResult, solve


def load_table(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Load ``X`` and ``y`` from a CSV (with header), ``.npz`` (``X``, ``y``) or ``.npy``.

    For CSV and ``.npy`` the target column is ``target`` (a header name, or an integer
    column index; default: the last column).
    """
    p = Path(path)
    if not p.exists():
        raise WedgeNetError(f"no such file: {path}")
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as data:
            if "X" not in data or "y" not in data:
                raise WedgeNetError(f"{path} must contain arrays named 'X' and 'y'")
            return np.asarray(data["X"], dtype=float), np.asarray(data["y"])
    if p.suffix == ".npy":
        table = np.load(p, allow_pickle=False)
        header: list[str] = []
    else:
        with p.open() as fh:
            first = fh.readline()
        cells = [c.strip() for c in first.strip().split(",")]
        has_header = any(not _is_number(c) for c in cells)
        header = cells if has_header else []
        try:
            table = np.loadtxt(p, delimiter=",", skiprows=1 if has_header else 0, ndmin=2)
        except ValueError as exc:
            raise WedgeNetError(f"{path}: non-numeric or ragged CSV ({exc})") from None
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[1] < 2:
        raise WedgeNetError(f"{path}: need a 2-D table with at least 2 columns")
    if target is None:
        col = table.shape[1] - 1
    elif target in header:
        col = header.index(target)
    elif target.lstrip("-").isdigit():
        col = int(target) % table.shape[1]
    else:
        raise WedgeNetError(f"target column {target!r} not found; columns: {header}")
    y = table[:, col]
    X = np.delete(table, col, axis=1)
    return X, y


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _add_problem_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("data", help="CSV with header, .npz with X and y, or .npy table")
    ap.add_argument("--target", help="target column (name or index; default: last)")
    ap.add_argument(
        "--loss", default="squared", choices=["squared", "logistic", "hinge", "softmax"]
    )
    ap.add_argument("--reg", default="l1", choices=["l1", "l2"], help="norm of first-layer weights")
    bias = ap.add_mutually_exclusive_group()
    bias.add_argument("--bias", dest="bias", action="store_true", default=True)
    bias.add_argument("--no-bias", dest="bias", action="store_false")
    ap.add_argument("--lam", type=float, default=0.01)
    ap.add_argument(
        "--source",
        default="auto",
        choices=["auto", "exhaustive", "sample", "search"],
        help="auto: exhaustive when the dictionary has at most --max-columns columns, "
        "search otherwise",
    )
    ap.add_argument(
        "--n-columns", type=int, help="hyperplanes to sample (--source sample) or extra "
        "random search starts (--source search)"
    )
    ap.add_argument(
        "--max-time", type=float, help="seconds; then the best network so far is returned "
        "(not certified). Default: none when scanned, 120 when searched"
    )
    ap.add_argument("--max-columns", type=int, default=2_000_000)
    ap.add_argument("--solver", default="auto", choices=["auto", "cvxpy", "workingset"])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=0)


def _run_solve(
    args: argparse.Namespace, quiet: bool = False
) -> tuple[SolveResult, np.ndarray, np.ndarray]:
    X, y = load_table(args.data, args.target)

    def progress(frac: float, stage: str) -> None:
        if not quiet:
            print(f"[{frac:5.1%}] {stage}", file=sys.stderr)

    result = solve(
        X,
        y,
        loss=args.loss,
        p=1 if args.reg == "l1" else 2,
        bias=args.bias,
        lam=args.lam,
        source=args.source,
        n_columns=args.n_columns,
        max_columns=args.max_columns,
        solver=args.solver,
        tol=args.tol,
        seed=args.seed,
        progress=progress,
        max_time=args.max_time,
    )
    return result, X, y


def print_summary(result: SolveResult, out: Any = None) -> None:
    out = sys.stdout if out is None else out
    print(f"objective        {result.primal_objective:.10g}", file=out)
    print(f"dual bound       {result.dual_objective:.10g}", file=out)
    print(f"relative gap     {result.relative_gap:.3e}", file=out)
    if result.gap_estimate is not None:
        print(f"gap estimate     {result.gap_estimate:.3e} (best column the search found)",
              file=out)
    if result.certificate_note:
        print(f"why uncertified  {result.certificate_note}", file=out)
    kind = "exact (p = 1)" if result.exact else "approximate (p = 2, upper bound)"
    cert = "certified" if result.certified else "not certified"
    print(f"certificate      {cert}; dictionary {kind}; scanned {result.scanned}", file=out)
    print(
        f"columns          {result.n_columns}   solver {result.solver}   "
        f"time {result.solve_time:.3f}s",
        file=out,
    )
    print(f"neurons          {len(result.network.neurons)}", file=out)
    for j, nr in enumerate(result.network.neurons):
        s = nr.index_set
        idx = (
            ""
            if s is None
            else f"samples={list(s.samples)} dirs={list(s.directions)} sign={s.sign:+d}"
        )
        a = np.atleast_1d(nr.output_weight)
        print(
            f"  [{j}] a={np.array2string(a, precision=4)} {idx}  {nr.formula}  "
            f"(residual {nr.residual:.1e})",
            file=out,
        )


def cmd_solve(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="wedgenet solve", description="Convex training of a two-layer ReLU network."
    )
    _add_problem_args(ap)
    ap.add_argument("--json", action="store_true", help="print the whole result as one JSON object")
    ap.add_argument("--output", "-o", help="write the network to this .npz (W1, b1, W2, b2)")
    args = ap.parse_args(argv)
    result, _, _ = _run_solve(args, quiet=args.json)
    if args.output:
        np.savez(args.output, **result.network.to_arrays())  # type: ignore[arg-type]
    if args.json:
        json.dump(result.to_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        print_summary(result)
    return 0


def cmd_plot(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="wedgenet plot", description="Prediction regions and breaklines (2-D inputs)."
    )
    _add_problem_args(ap)
    ap.add_argument("--output", "-o", default="wedgenet.png")
    args = ap.parse_args(argv)
    result, X, y = _run_solve(args)
    from wedgenet.plot import plot_network

    plot_network(result, X, y, args.output)
    print(f"wrote {args.output}")
    return 0


#: entry-point group of the commands other packages add (``name = "module:function"``)
COMMANDS_GROUP = "wedgenet.commands"
#: commands of the optional extras, named in the error when their entry point is missing
EXTRA_COMMANDS = {"serve": "service"}


def plugin_commands() -> dict[str, EntryPoint]:
    """The installed commands of the ``wedgenet.commands`` entry-point group, by name."""
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


def _run_plugin(cmd: str, ep: EntryPoint | None, argv: list[str]) -> int:
    extra = EXTRA_COMMANDS.get(cmd, "service")
    hint = f"'wedgenet {cmd}' needs the {extra} extra: pip install 'wedgenet[{extra}]'"
    if ep is None:
        print(f"error: {hint}", file=sys.stderr)
        return 2
    try:
        command = ep.load()
    except ImportError as exc:
        print(f"error: {hint} ({exc})", file=sys.stderr)
        return 2
    return int(command(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = plugin_commands()
    names = ["solve", "plot", *sorted(set(plugins) - {"solve", "plot"})]
    usage = f"usage: wedgenet {{{','.join(names)}}} ... (wedgenet COMMAND --help)"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "solve":
            return cmd_solve(rest)
        if cmd == "plot":
            return cmd_plot(rest)
        if cmd in plugins or cmd in EXTRA_COMMANDS:
            return _run_plugin(cmd, plugins.get(cmd), rest)
    except WedgeNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"unknown command {cmd!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
