"""Command line: ``wedgenet solve``, ``polish``, ``plot`` and the commands of installed extras.

This module reads files (CSV, .npy, .npz) and writes results; the numerics it calls do no I/O.
More commands are found through the entry-point group ``wedgenet.commands``: each entry point
names a function ``main(argv: list[str]) -> int`` (the service registers ``serve``,
``app.cli:serve_main``). The engine imports none of them until the command is run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import numpy as np

from wedgenet import __version__
from wedgenet.exceptions import WedgeNetError
from wedgenet.layers import PICKLE_HINT, PICKLE_SUFFIXES
from wedgenet.polish import PolishResult, polish
from wedgenet.solve import SolveResult, solve
from wedgenet.threelayer.solve import ThreeLayerResult, solve_three_layer
from wedgenet.validation import DEFAULT_LAM


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


#: Output formats, by file suffix.
OUTPUT_FORMATS = {
    ".npz": "arrays W1 (d, m), b1, W2 (m, c), b2",
    ".safetensors": "PyTorch nn.Sequential names, model card in the header",
    ".onnx": "ONNX graph, model card in its metadata",
    ".json": "the whole result as JSON",
}
def check_output(path: str | None, allowed: tuple[str, ...] = tuple(OUTPUT_FORMATS)) -> None:
    """Refuse an output path before any work: unknown suffix, missing or read-only folder."""
    if path is None:
        return
    out = Path(path)
    if out.suffix.lower() not in allowed:
        raise WedgeNetError(
            f"output {path!r}: unknown format {out.suffix!r}; use one of {', '.join(allowed)}"
        )
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise WedgeNetError(f"output {path!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise WedgeNetError(f"output {path!r}: the folder {str(folder)!r} is not writable")
    if out.is_dir():
        raise WedgeNetError(f"output {path!r} is a folder")


def load_weights(path: str) -> Any:
    """Weights from ``.npz`` (W1/b1 arrays or state-dict names), ``.safetensors`` or
    ``.json`` (a mapping of names to nested lists); PyTorch pickles are refused."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise WedgeNetError(f"{path}: {PICKLE_HINT}")
    if not p.exists():
        raise WedgeNetError(f"no such file: {path}")
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as data:
                return {k: np.asarray(data[k]) for k in data.files}
        except (ValueError, OSError) as exc:
            raise WedgeNetError(f"{path}: not a readable .npz file ({exc})") from None
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:  # pragma: no cover - depends on the installation
            raise WedgeNetError("reading .safetensors needs: pip install safetensors") from None
        try:
            return load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise WedgeNetError(f"{path}: not a readable .safetensors file ({exc})") from None
    if suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except (ValueError, OSError) as exc:
            raise WedgeNetError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise WedgeNetError(f"{path}: expected a JSON object of named arrays")
        return {k: np.asarray(v, dtype=float) for k, v in data.items()}
    raise WedgeNetError(f"{path}: weights must be .npz, .safetensors or .json")


def _add_data_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("data", help="training data: CSV with header, .npz with X and y, or .npy")
    ap.add_argument("--target", help="target column of a CSV or .npy (name or index; "
                    "default: the last column)")
    ap.add_argument("--loss", default="squared",
                    choices=["squared", "logistic", "hinge", "softmax"], help="training loss")
    ap.add_argument("--reg", default="l1", choices=["l1", "l2"],
                    help="norm of the first-layer weights in the regularizer (l1: exact)")
    bias = ap.add_mutually_exclusive_group()
    bias.add_argument("--bias", dest="bias", action="store_true", default=True,
                      help="biased hidden neurons")
    bias.add_argument("--no-bias", dest="bias", action="store_false",
                      help="bias-free hidden neurons")
    ap.add_argument("--lam", type=float, default=DEFAULT_LAM,
                    help="regularization strength (loss summed over samples)")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def _add_problem_args(ap: argparse.ArgumentParser) -> None:
    _add_data_args(ap)
    ap.add_argument("--source", default="auto", choices=["auto", "exhaustive", "sample", "search"],
                    help="dictionary: auto = exhaustive when it has at most --max-columns "
                    "columns, search otherwise")
    ap.add_argument("--n-columns", type=int, help="hyperplanes to sample (--source sample) or "
                    "extra random search starts (--source search)")
    ap.add_argument("--max-time", type=float, help="seconds; then the best network so far is "
                    "returned, not certified (default: none when scanned, 120 when searched)")
    ap.add_argument("--max-columns", type=int, default=2_000_000,
                    help="largest dictionary that is enumerated")
    ap.add_argument("--solver", default="auto", choices=["auto", "cvxpy", "workingset"],
                    help="cvxpy: CLARABEL over the materialized dictionary (small problems)")
    ap.add_argument("--tol", type=float, default=1e-6, help="target relative duality gap")


def _progress(quiet: bool) -> Any:
    def progress(frac: float, stage: str) -> None:
        if not quiet:
            print(f"[{frac:5.1%}] {stage}", file=sys.stderr, flush=True)

    return progress


def check_depth_args(args: argparse.Namespace) -> None:
    """Refuse the options ``--depth 3`` does not support, before any work."""
    if getattr(args, "depth", 2) != 3:
        return
    if args.reg != "l1":
        raise WedgeNetError("--depth 3 needs --reg l1 (the exact three-layer dictionary)")
    if args.loss == "softmax":
        raise WedgeNetError("--depth 3 networks have one output: --loss squared, logistic or "
                            "hinge (not softmax)")
    if args.source not in ("auto", "exhaustive"):
        raise WedgeNetError(f"--depth 3 scans the whole three-layer dictionary: --source auto "
                            f"or exhaustive, not {args.source}")
    if args.solver == "cvxpy":
        raise WedgeNetError("--depth 3 solves by column generation: --solver auto or "
                            "workingset, not cvxpy")
    if args.n_columns is not None:
        raise WedgeNetError("--n-columns is not used with --depth 3 (the dictionary is scanned)")


def _run_solve_three(args: argparse.Namespace) -> tuple[ThreeLayerResult, np.ndarray,
                                                       np.ndarray]:
    X, y = load_table(args.data, args.target)
    result = solve_three_layer(
        X, y, lam=args.lam, bias=args.bias, loss=args.loss, tol=args.tol,
        max_time=args.max_time, progress=_progress(args.quiet or getattr(args, "json", False)),
    )
    return result, X, y


def _run_solve(args: argparse.Namespace) -> tuple[SolveResult, np.ndarray, np.ndarray]:
    X, y = load_table(args.data, args.target)
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
        progress=_progress(args.quiet or getattr(args, "json", False)),
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


def print_three_layer_summary(result: ThreeLayerResult, out: Any = None) -> None:
    """The certificate and every block: first-layer index set, bias sample ``l``, threshold
    sample ``j0``, shape and formula."""
    out = sys.stdout if out is None else out
    print(f"objective        {result.primal_objective:.10g}", file=out)
    print(f"dual bound       {result.dual_objective:.10g}", file=out)
    print(f"relative gap     {result.relative_gap:.3e}", file=out)
    if result.certificate_note:
        print(f"why uncertified  {result.certificate_note}", file=out)
    cert = "certified" if result.certified else "not certified"
    theorem = "Thm 13, first-layer biases" if result.params.get("bias") else "Thm 12, no bias"
    print(f"certificate      {cert}; three-layer dictionary ({theorem}); scanned "
          f"{result.scanned}", file=out)
    print(f"columns          {result.n_columns}   directions {result.n_directions}   solver "
          f"{result.solver}   time {result.solve_time:.3f}s", file=out)
    print(f"blocks           {len(result.blocks)}   f(x) = sum_j w3_j relu(w2_j relu(x . w1_j "
          f"+ b1_j) + b2_j) + b3,  b3 = {result.network.output_bias:.6g}", file=out)
    for j, blk in enumerate(result.blocks):
        s = blk.index_set
        idx = "" if s is None else (
            f"samples={list(s.samples)} diffs={[list(p) for p in s.differences]} "
            f"dirs={list(s.directions)} sign={s.sign:+d}")
        print(f"  [{j}] w3={blk.w3:.4g} w2={blk.w2:.4g} {idx} l={blk.bias_sample} "
              f"j0={blk.threshold_sample} shape={blk.shape}  {blk.formula}  "
              f"(residual {blk.residual:.1e})", file=out)


def print_polish_summary(result: PolishResult, out: Any = None) -> None:
    out = sys.stdout if out is None else out
    print(f"objective before      {result.objective_before:.10g}", file=out)
    print(f"objective rebalanced  {result.objective_rebalanced:.10g}", file=out)
    print(f"objective after       {result.objective_after:.10g}", file=out)
    print(f"refit                 {result.refit}, selected {result.selected}, gap "
          f"{result.refit_gap:.2e}, solver {result.refit_solver}", file=out)
    for part, values in result.metrics.items():  # {"before": {metric: value}, "after": ...}
        before, after = values.get("before", {}), values.get("after", {})
        text = ", ".join(f"{k} {before[k]:.4g} -> {after.get(k, float('nan')):.4g}"
                         for k in before)
        print(f"{part:<21} {text}", file=out)
    kept = [r for r in result.neurons if r.kind == "polished" and r.survived]
    print(f"polished neurons kept {len(kept)}", file=out)
    for r in kept:
        angle = "" if r.angle_deg is None else f" angle {r.angle_deg:.2f} deg"
        print(f"  layer {r.layer} [{r.source}]{angle}  {r.formula}", file=out)


def write_output(path: str, result: SolveResult | PolishResult | ThreeLayerResult, *,
                 loss: str, dataset_sha256: str) -> None:
    """Write the network in the format named by the suffix, with its model card (a
    three-layer network as three layers, the second one diagonal)."""
    from wedgenet import export

    card = export.model_card(result, dataset_sha256=dataset_sha256)
    if isinstance(result, SolveResult):
        layers = export.as_layer_list(result.network)
    elif isinstance(result, ThreeLayerResult):
        layers = export.as_layer_list(result.network.to_layers())
    else:
        layers = result.layers
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        arrays = ({f"{k}{i + 1}": np.asarray(v) for i, (W, b) in enumerate(layers)
                   for k, v in (("W", W), ("b", b))})
        np.savez(path, **arrays)  # type: ignore[arg-type]
    elif suffix == ".safetensors":
        Path(path).write_bytes(export.to_safetensors(layers, card))
    elif suffix == ".onnx":
        Path(path).write_bytes(export.to_onnx(layers, card=card))
    else:
        Path(path).write_text(json.dumps({"model_card": card, "result": result.to_dict()}))


def _sha256(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(X, dtype=float), np.ascontiguousarray(y)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _report(args: argparse.Namespace, result: SolveResult | PolishResult | ThreeLayerResult,
            X: np.ndarray,
            y: np.ndarray, summary: Any) -> int:
    """Write the output file (if any), then the JSON or the human summary."""
    if args.output:
        write_output(args.output, result, loss=args.loss, dataset_sha256=_sha256(X, y))
        if not args.quiet and not args.json:
            print(f"wrote {args.output}", file=sys.stderr)
    if args.json:
        json.dump(result.to_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        summary(result)
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    check_output(args.output)
    check_depth_args(args)
    if args.depth == 3:
        result3, X, y = _run_solve_three(args)
        return _report(args, result3, X, y, print_three_layer_summary)
    result, X, y = _run_solve(args)
    return _report(args, result, X, y, print_summary)


def cmd_polish(args: argparse.Namespace) -> int:
    check_output(args.output)
    weights = load_weights(args.weights)
    X, y = load_table(args.data, args.target)
    progress = _progress(args.quiet or args.json)
    progress(0.0, f"polishing {args.weights} on {X.shape[0]} samples")
    result = polish(
        X, y, weights, loss=args.loss, lam=args.lam, p=1 if args.reg == "l1" else 2,
        bias=args.bias, refit=args.refit, criterion=args.criterion,
        validation_fraction=args.validation_fraction, seed=args.seed,
    )
    progress(1.0, "done")
    return _report(args, result, X, y, print_polish_summary)


def cmd_plot(args: argparse.Namespace) -> int:
    check_output(args.output, (".png", ".svg"))
    check_depth_args(args)
    from wedgenet.plot import render, solve_title

    result: Any
    result, X, y = _run_solve_three(args) if args.depth == 3 else _run_solve(args)

    image = render(result.network, X, y, format=Path(args.output).suffix.lower()[1:],  # type: ignore[arg-type]
                   loss=args.loss, classes=result.classes, title=solve_title(result))
    Path(args.output).write_bytes(image)
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown where they say something (not ``None``, not on ``--no-...`` flags)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action, argparse._StoreFalseAction):
            return action.help
        return super()._get_help_string(action)


def build_parser(plugins: dict[str, EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The ``wedgenet`` parser: ``solve``, ``polish``, ``plot`` (and plugin names in help)."""
    plugins = plugin_commands() if plugins is None else plugins
    extra = sorted(set(plugins) | set(EXTRA_COMMANDS))
    ap = argparse.ArgumentParser(
        prog="wedgenet",
        description="Certifiably optimal, interpretable two-layer ReLU networks by convex "
        "optimization.",
        epilog="more commands: " + ", ".join(f"wedgenet {c}" for c in extra)
        + " (provided by installed extras; 'wedgenet COMMAND --help')" if extra else None,
        formatter_class=_Formatter,
    )
    ap.add_argument("--version", action="version", version=f"wedgenet {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    outputs = "; ".join(f"{k}: {v}" for k, v in OUTPUT_FORMATS.items())
    sp = sub.add_parser("solve", help="train a network by the convex program",
                        description="Convex training of a two-layer (or, with --depth 3, "
                        "three-layer) ReLU network.",
                        formatter_class=_Formatter)
    _add_problem_args(sp)
    sp.add_argument("--depth", type=int, default=2, choices=[2, 3],
                    help="layers: 2, or 3 (three-layer blocks, docs/threelayer.md: one output, "
                    "--reg l1, --source auto/exhaustive; exported as three layers with a "
                    "diagonal second layer)")
    sp.add_argument("--json", action="store_true", help="print the result as one JSON object")
    sp.add_argument("--output", "-o", help=f"write the network ({outputs})")
    sp.set_defaults(run=cmd_solve)
    pp = sub.add_parser("polish", help="polish trained weights into an interpretable network",
                        description="Replace each neuron of a trained ReLU network by the "
                        "hyperplane through its closest samples and refit by the convex "
                        "program (never worse on the objective).", formatter_class=_Formatter)
    pp.add_argument("weights", help="trained weights: .npz (W1, b1, ... or PyTorch state-dict "
                    "names), .safetensors or .json; PyTorch .pt files are refused")
    _add_data_args(pp)
    pp.add_argument("--refit", default="union", choices=["union", "polished", "original"],
                    help="columns of the refit: original and polished neurons, only polished, "
                    "or only original (baseline)")
    pp.add_argument("--criterion", default="residual", choices=["residual", "distance"],
                    help="how samples are ranked by closeness to a neuron's hyperplane")
    pp.add_argument("--validation-fraction", type=float,
                    help="hold out this fraction of the data for before/after metrics")
    pp.add_argument("--json", action="store_true", help="print the report as one JSON object")
    pp.add_argument("--output", "-o", help=f"write the polished network ({outputs})")
    pp.set_defaults(run=cmd_polish)
    lp = sub.add_parser("plot", help="figure of regions and breaklines (2-D inputs)",
                        description="Solve, then draw the prediction regions, breaklines and "
                        "index-set samples (2-D inputs; with --depth 3 also each block's "
                        "second-layer threshold line and sample j0).", formatter_class=_Formatter)
    _add_problem_args(lp)
    lp.add_argument("--depth", type=int, default=2, choices=[2, 3],
                    help="layers of the network (3: the three-layer program)")
    lp.add_argument("--output", "-o", default="wedgenet.png", help="image file (.png or .svg)")
    lp.set_defaults(run=cmd_plot, json=False)
    return ap


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
    """Run ``wedgenet COMMAND ...``; returns the exit status (0 ok, 1 failure writing a
    result, 2 usage or input errors, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = plugin_commands()
    if argv and (argv[0] in plugins or argv[0] in EXTRA_COMMANDS):
        return _run_plugin(argv[0], plugins.get(argv[0]), argv[1:])
    parser = build_parser(plugins)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return int(exc.code or 0)
    try:
        return int(args.run(args))
    except WedgeNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
