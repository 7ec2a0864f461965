"""HTTP schemas (pydantic v2).

Objective convention (docs/conventions.md section 2): a two-layer ReLU network
``f(x) = sum_j a_j relu(w_j . x + b_j) + c`` is trained on
``L(f(X), y) + (lam / 2) sum_j (||w_j||_p^2 + ||a_j||_2^2)`` with unregularized biases; for the
squared loss ``L = 0.5 * sum_i (f(x_i) - y_i)^2`` (summed, not averaged).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from wedgenet.validation import DEFAULT_LAM

T = TypeVar("T")

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKind = Literal["solve", "polish"]
Loss = Literal["squared", "logistic", "hinge", "softmax"]
#: a class label of the training data (the dataset's own values: numbers)
Label = int | float | str


def _db_text(value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL (0x00) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode (no unpaired surrogates)") from None
    return value


def _exact_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer (not a boolean, float or string)")
    return value


#: an id in a JSON body (looked up in the database as text)
IdStr = Annotated[str, BeforeValidator(_db_text), Field(min_length=1, max_length=64)]
#: ``p`` of the objective: exactly the integer 1 or 2 (``true`` and ``1.0`` are refused)
NormP = Annotated[Literal[1, 2], BeforeValidator(_exact_int)]
#: layers of a solved network: exactly the integer 2 or 3
Depth = Annotated[Literal[2, 3], BeforeValidator(_exact_int)]


class ErrorBody(BaseModel):
    detail: Any = Field(description="What is wrong with the request")


class DatasetRename(BaseModel):
    """``PATCH /datasets/{id}``: the new name (``null`` removes it)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(max_length=200)


class DatasetOut(BaseModel):
    id: str
    name: str | None = None
    content_hash: str = Field(description="sha256 over the X and y blob hashes")
    x_sha256: str
    y_sha256: str
    n: int
    d: int
    outputs: int
    x_dtype: str
    y_dtype: str
    created_at: datetime
    links: dict[str, str] = Field(default_factory=dict)


class LayerShape(BaseModel):
    d_in: int
    d_out: int


class WeightSetOut(BaseModel):
    id: str
    name: str | None = None
    dataset_id: str | None = None
    content_hash: str
    n_layers: int
    layers: list[LayerShape]
    created_at: datetime


class SolveParams(BaseModel):
    """Parameters of a convex solve (see ``wedgenet.solve``) and how the service runs it.
    Strict: numbers and booleans must be JSON numbers and booleans (an integer is a valid
    float), never strings or booleans standing in for numbers."""

    model_config = ConfigDict(extra="forbid", strict=True)

    loss: Loss = "squared"
    depth: Depth = Field(
        default=2,
        description="layers: 2 (wedgenet.solve) or 3 (wedgenet.solve_three_layer: blocks "
        "w3 relu(w2 relu(x . w1 + b1) + b2), docs/threelayer.md). depth=3 needs one output "
        "(loss squared with a 1-D y, logistic or hinge), p=1, source 'auto' or 'exhaustive', "
        "solver 'auto' or 'workingset', scan_parts=1, warm_start='none' and no n_columns")
    p: NormP = 1
    bias: bool = True
    lam: float = Field(default=DEFAULT_LAM, gt=0, le=1e6, allow_inf_nan=False)
    source: Literal["auto", "exhaustive", "sample", "search"] = Field(
        default="auto",
        description="'exhaustive': price every column of the exact dictionary (certifiable; "
        "refused over max_columns); 'search': find columns by local search (any dimension, "
        "never certified; a valid loose lower bound and a gap estimate are reported); "
        "'sample': n_columns random hyperplanes; 'auto': exhaustive when the dictionary has "
        "at most max_columns columns, search otherwise")
    n_columns: int | None = Field(
        default=None, ge=1, le=100_000_000,
        description="source='sample': hyperplanes to sample; source='search' (or 'auto' "
        "when it searches): random hyperplanes priced exactly as extra starting points")
    max_time: float | None = Field(
        default=None, gt=0, le=86_400, allow_inf_nan=False,
        description="seconds after which column generation stops and the best network so "
        "far is stored with its gap and certified=false; default WEDGENET_DEFAULT_MAX_TIME")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    max_columns: int = Field(default=2_000_000, ge=1, le=1_000_000_000)
    solver: Literal["auto", "cvxpy", "workingset"] = "auto"
    tol: float = Field(default=1e-6, gt=0, lt=1.0, allow_inf_nan=False)
    scan_parts: int = Field(
        default=1, ge=1, le=1024,
        description="split every full pricing scan into this many parts, priced by any free "
        "workers (1: the job's worker scans alone). Needs solver 'auto' or 'workingset'; at "
        "most WEDGENET_MAX_SCAN_PARTS")
    warm_start: Literal["none", "polish", "sample"] = Field(
        default="none",
        description="'polish': seed the working set with the index sets of the polished "
        "neurons of a quickly trained network (wedgenet.seed_index_sets); 'sample': with 256 "
        "randomly sampled hyperplanes (wedgenet.sample_index_sets); the result does not "
        "depend on it")
    l2_bound: bool = Field(
        default=True,
        description="p=2 only: attach the hyperplane-arrangement bound (wedgenet.l2_gap_report)"
        " to the network: a certified lower bound when the arrangement is small enough, "
        "otherwise an estimate from sampled patterns")


class PolishParams(BaseModel):
    """Parameters of polishing a trained network (see ``wedgenet.polish``); strict like
    :class:`SolveParams`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    loss: Loss = "squared"
    p: NormP = 1
    bias: bool = True
    lam: float = Field(default=DEFAULT_LAM, gt=0, le=1e6, allow_inf_nan=False)
    refit: Literal["union", "polished", "original"] = Field(
        default="union",
        description="output-layer refit over the original and polished neurons (never "
        "worse), only the polished ones (every neuron a closed form) or only the original "
        "ones (baseline)")
    validation_fraction: float | None = Field(
        default=None, gt=0, lt=1, allow_inf_nan=False,
        description="hold out this fraction of the samples (random, seed) for the validation "
        "metrics; polishing and the refit use the rest")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class SolveJobCreate(BaseModel):
    """Train a network by the convex solve on a dataset."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["solve"] = "solve"
    dataset_id: IdStr
    params: SolveParams = Field(default_factory=SolveParams)


class PolishJobCreate(BaseModel):
    """Polish an uploaded weight set (``POST /weights``) on a dataset."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["polish"]
    dataset_id: IdStr
    weights_id: IdStr = Field(description="id of the weight set to polish")
    params: PolishParams = Field(default_factory=PolishParams)


def _job_kind(value: Any) -> str | None:
    kind = value.get("kind", "solve") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


#: ``kind`` selects the body; a body without ``kind`` is a solve
JobCreate = Annotated[
    Annotated[SolveJobCreate, Tag("solve")] | Annotated[PolishJobCreate, Tag("polish")],
    Discriminator(_job_kind, custom_error_type="invalid_kind",
                  custom_error_message="kind must be 'solve' (the default) or 'polish'"),
]


class JobError(BaseModel):
    code: str
    message: str


class JobProgress(BaseModel):
    fraction: float
    stage: str


class JobOut(BaseModel):
    id: str
    kind: str
    state: JobState
    dataset_id: str | None
    weights_id: str | None = None
    params: dict[str, Any]
    progress: JobProgress
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error: JobError | None
    idempotency_key: str | None = None
    network_id: str | None = None
    links: dict[str, str] = Field(default_factory=dict)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class IndexSetOut(BaseModel):
    samples: list[int]
    directions: list[int]
    sign: int

    def defining_samples(self) -> list[int]:
        """The samples named by the index set, ascending."""
        return sorted(set(self.samples))


class BlockIndexSetOut(IndexSetOut):
    """The first-layer index set of a depth-3 block (``wedgenet.threelayer.FirstLayerIndexSet``):
    also the differences the hyperplane runs along."""

    differences: list[list[int]] = Field(
        default_factory=list, description="the differences x_i - x_j (as [i, j]) the "
        "first-layer hyperplane runs along")

    def defining_samples(self) -> list[int]:
        """The samples named by the index set (its samples and both ends of its
        differences), ascending."""
        return sorted({*self.samples, *(i for pair in self.differences for i in pair)})


#: a neuron's index set. Pydantic's smart-mode union takes the member with more fields set,
#: the first on a tie: the plain index set unless the data name differences (depth-3 blocks)
AnyIndexSet = IndexSetOut | BlockIndexSetOut


class NeuronOut(BaseModel):
    id: int
    position: int
    weight: list[float]
    bias: float
    output_weight: list[float]
    index_set: AnyIndexSet | None = Field(
        description="the samples/directions the neuron's hyperplane passes through (depth-3 "
        "blocks: also differences); null for neurons that are not a closed form (original "
        "neurons kept by a polish refit)")
    formula: str
    residual: float
    kind: Literal["polished", "original"] | None = Field(
        default=None, description="polish results: a polished or an original neuron")
    source: int | None = Field(
        default=None, description="polish results: the input network's neuron it comes from")
    angle_deg: float | None = Field(
        default=None, description="polish results: angle between the original and the "
        "polished neuron as homogeneous normals (w, b)")
    bias_sample: int | None = Field(
        default=None, description="depth-3 blocks with first-layer biases: the sample l with "
        "b = -x_l . w (the first-layer hyperplane passes through x_l)")
    threshold_sample: int | None = Field(
        default=None, description="depth-3 blocks: the threshold sample j0 where the "
        "second-layer unit switches (its first-layer value equals sample j0's)")
    shape: Literal["up", "down"] | None = Field(
        default=None, description="depth-3 blocks: 'up' (u - u_j0)_+ or 'down' (u_j0 - u)_+ "
        "of the first-layer value u")
    second_layer_weight: float | None = Field(
        default=None, description="depth-3 blocks: w2 (weight and output_weight are w1 and w3)")
    second_layer_bias: float | None = Field(default=None, description="depth-3 blocks: b2")


class LayerOut(BaseModel):
    name: str
    W: list[list[float]] = Field(description="weights, shape (d_in, d_out)")
    b: list[float]


class PolishNeuronReport(BaseModel):
    """What became of one candidate neuron of a polish job."""

    layer: int
    kind: Literal["polished", "original"]
    source: int = Field(description="index of the input network's neuron in its layer")
    index_set: IndexSetOut | None
    formula: str
    angle_deg: float | None
    weight_angle_deg: float | None
    residual: float | None
    survived: bool = Field(description="the neuron is part of the returned network")
    output_norm: float | None


class PolishReport(BaseModel):
    """Objective (docs/conventions.md section 2) of the uploaded weights and of the polished
    network."""

    objective_before: float
    objective_rebalanced: float | None = Field(
        description="the uploaded network after the optimal rescaling alone (Sec. 9.12)")
    objective_after: float
    price: float = Field(description="objective_after - objective_before (negative: better)")
    refit: Literal["union", "polished", "original"]
    selected: str = Field(description="which candidate was returned (see wedgenet.polish)")
    refit_gap: float | None
    n_layers: int
    metrics: dict[str, Any] = Field(
        description='{"train": {"before": {...}, "after": {...}}, "validation": {...}}')
    neurons: list[PolishNeuronReport]


class L2Bound(BaseModel):
    """How far a p=2 network is from the optimum of the non-convex training problem."""

    label: str = Field(description="'certified lower bound' (exact mode), 'estimate (sampled "
                       "patterns)' (sampled mode) or 'skipped'")
    certified: bool
    mode: Literal["exact", "sampled"] | None = None
    wedge_value: float | None = Field(default=None, description="this network's objective")
    lower_bound: float | None = Field(
        default=None, description="certified lower bound on the optimum (exact mode)")
    value: float | None = Field(
        default=None, description="objective of the arrangement program's network (exact: "
        "the optimum up to solver tolerance; sampled: an estimate)")
    relative_gap: float | None = Field(
        default=None, description="(wedge_value - lower_bound) / |lower_bound|: certified "
        "bound on this network's relative suboptimality (exact mode)")
    estimated_gap: float | None = None
    n_patterns: int | None = None
    note: str | None = Field(default=None,
                             description="why the bound was skipped or sampled")


class DistributedScan(BaseModel):
    """How the full pricing scans of a solve job were split (``scan_parts > 1``)."""

    parts: int = Field(description="parts per full scan")
    workers: int = Field(description="distinct worker processes that priced parts")
    worker_ids: list[str]
    parts_by_worker: dict[str, int] = Field(
        default_factory=dict, description="parts priced by each worker over all scans")
    rounds: int = Field(description="full scans done")


# ------------------------------------------------------------------------- stored job results
# What a worker stores for a finished job (``JobResult``: the ``networks`` row, its neurons and
# ``networks.summary``) and what the routes read back, one typed schema instead of dicts read
# by string keys. Defaults are the ones readers assume; unknown keys are kept
# (``extra="allow"``) and :meth:`StoredJSON.stored` writes only the keys that were given, so
# the JSON columns keep their shape and rows written by earlier versions read unchanged.


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isfinite(
            value):
        return None
    return value


def _residual(value: Any) -> Any:
    value = _finite_or_none(value)
    return 0.0 if value is None else value


#: a float that is stored as null when it is missing, NaN or infinite
FiniteOrNone = Annotated[float | None, BeforeValidator(_finite_or_none)]


class StoredJSON(BaseModel):
    """Base of the stored JSON documents: unknown keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    def stored(self) -> dict[str, Any]:
        """The JSON to store: the keys that were given (and unknown ones), nothing added."""
        return self.model_dump(mode="json", exclude_unset=True)


class NeuronExtra(StoredJSON):
    """``neurons.extra``: what the engine says about a neuron beyond its closed form."""

    kind: Literal["polished", "original"] | None = Field(
        default=None, description="polish results: a polished or an original neuron")
    source: int | None = Field(
        default=None, description="polish results: the input network's neuron it comes from")
    angle_deg: float | None = None
    # depth-3 blocks (wedgenet.threelayer.Block)
    bias_sample: int | None = None
    threshold_sample: int | None = None
    shape: Literal["up", "down"] | None = None
    second_layer_weight: float | None = None
    second_layer_bias: float | None = None


class ResultNeuron(StoredJSON):
    """One hidden neuron of a result, as the engine describes it
    (``TwoLayerNetwork.to_dict()["neurons"]``); keys beyond these go to ``neurons.extra``."""

    weight: list[float]
    bias: float
    output_weight: list[float]
    index_set: AnyIndexSet | None = None
    formula: str = ""
    residual: Annotated[float, BeforeValidator(_residual)] = 0.0

    def extra_record(self) -> NeuronExtra:
        """The keys beyond the closed form (stored as ``neurons.extra``)."""
        return NeuronExtra.model_validate(self.model_extra or {})

    def sample_indices(self) -> list[int]:
        """The training samples that define the neuron (``neuron_samples`` rows): its index
        set's samples; for a depth-3 block also the ends of its differences, the bias sample
        ``l`` and the threshold sample ``j0``."""
        if self.index_set is None:
            return []
        extra = self.extra_record()
        more = [i for i in (extra.bias_sample, extra.threshold_sample) if i is not None]
        return sorted({*self.index_set.defining_samples(), *more})


class StoredLayer(BaseModel):
    """``networks.layers`` item of a network that is not two-layer (deep polished MLPs)."""

    W: list[list[float]] = Field(description="weights, shape (d_in, d_out)")
    b: list[float]


class WarmStartRecord(StoredJSON):
    """``summary.warm_start`` of solve jobs with a warm start."""

    kind: Literal["polish", "sample"]
    n_index_sets: int = 0
    time: float | None = None
    error: str | None = None


class ArrangementBoundRecord(StoredJSON):
    """``wedgenet.ArrangementBound.to_dict()``."""

    value: FiniteOrNone = None
    lower_bound: FiniteOrNone = None
    n_patterns: int | None = None


class L2BoundRecord(StoredJSON):
    """``summary.l2_bound`` of p=2 solve jobs: ``wedgenet.L2GapReport.to_dict()`` with
    ``mode`` and ``note``, or a ``"skipped"`` record saying why."""

    label: str = ""
    certified: bool = False
    mode: Literal["exact", "sampled"] | None = None
    wedge_value: FiniteOrNone = None
    relative_gap: FiniteOrNone = None
    estimated_gap: FiniteOrNone = None
    bound: ArrangementBoundRecord | None = None
    note: str | None = None

    def out(self) -> L2Bound:
        bound = self.bound or ArrangementBoundRecord()
        return L2Bound(label=self.label, certified=self.certified, mode=self.mode,
                       wedge_value=self.wedge_value, lower_bound=bound.lower_bound,
                       value=bound.value, relative_gap=self.relative_gap,
                       estimated_gap=self.estimated_gap, n_patterns=bound.n_patterns,
                       note=self.note)


class PolishExtra(StoredJSON):
    """``wedgenet.PolishResult.extra`` (candidates, program objectives, ...)."""

    n_layers: int = 2


class PolishNeuronRecord(PolishNeuronReport):
    """One item of ``summary.neurons`` of a polish job (``NeuronReport.to_dict()``)."""

    model_config = ConfigDict(extra="allow")


class ResultSummary(StoredJSON):
    """``networks.summary``: the engine's description of the result without the network
    (solve: ``SolveResult.to_dict()``; polish: ``PolishResult.to_dict()``, the polish report)
    and what the service adds (warm start, distributed scan, l2 bound)."""

    # solve jobs (wedgenet.SolveResult; depth 3: wedgenet.ThreeLayerResult)
    depth: int = 2
    n_directions: int | None = None
    scanned: str | None = None
    n_columns: int | None = None
    solver: str | None = None
    solve_time: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    gap_estimate: FiniteOrNone = None
    certificate_note: str | None = None
    #: class labels of classification losses, in the order of the outputs (solve and polish)
    classes: list[Label] | None = None
    # polish jobs (wedgenet.PolishResult)
    objective_before: float | None = None
    objective_rebalanced: FiniteOrNone = None
    objective_after: float | None = None
    price: float = 0.0
    refit: Literal["union", "polished", "original"] = "union"
    selected: str = ""
    refit_gap: FiniteOrNone = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    neurons: list[PolishNeuronRecord] = Field(default_factory=list)
    extra: PolishExtra = Field(default_factory=PolishExtra)
    # added by the service
    warm_start: WarmStartRecord | None = None
    l2_bound: L2BoundRecord | None = None
    scan_parts: int | None = None
    scan_workers: int = 0
    scan_worker_ids: list[str] = Field(default_factory=list)
    scan_rounds: int = 0
    scan_parts_by_worker: dict[str, int] = Field(default_factory=dict)

    @property
    def loss(self) -> str | None:
        """The loss the network was trained on (``params.loss``)."""
        loss = self.params.get("loss")
        return loss if isinstance(loss, str) else None

    def polish_report(self) -> PolishReport | None:
        """The polish report (``None`` when this is not a polish summary)."""
        if self.objective_after is None or self.objective_before is None:
            return None
        return PolishReport(
            objective_before=self.objective_before,
            objective_rebalanced=self.objective_rebalanced,
            objective_after=self.objective_after, price=self.price, refit=self.refit,
            selected=self.selected, refit_gap=self.refit_gap, n_layers=self.extra.n_layers,
            metrics=self.metrics,
            neurons=[PolishNeuronReport.model_validate(r.model_dump()) for r in self.neurons],
        )

    def distributed_scan(self) -> DistributedScan | None:
        """How the full scans were split (``None`` unless ``scan_parts > 1``)."""
        if not self.scan_parts or self.scan_parts <= 1:
            return None
        return DistributedScan(parts=self.scan_parts, workers=self.scan_workers,
                               worker_ids=self.scan_worker_ids,
                               parts_by_worker=self.scan_parts_by_worker,
                               rounds=self.scan_rounds)


class JobResult(BaseModel):
    """What a finished job stores: written by the worker (``worker/tasks.py``) into the
    ``networks`` row, its ``neurons`` and ``neuron_samples``; read back by ``GET /networks``."""

    kind: JobKind = "solve"
    n_features: int
    n_outputs: int
    output_bias: list[float]
    primal_objective: FiniteOrNone = None
    dual_objective: FiniteOrNone = None
    relative_gap: FiniteOrNone = None
    certified: bool = False
    summary: ResultSummary = Field(default_factory=ResultSummary)
    neurons: list[ResultNeuron] = Field(default_factory=list)
    #: the layers of a network that is not two-layer; ``None`` when the neurons define it
    layers: list[StoredLayer] | None = None


class NetworkBrief(BaseModel):
    """A network without its weights: what it is, what it was trained on, its certificate."""

    id: str
    job_id: str
    kind: Literal["solve", "polish"] = "solve"
    dataset_id: str | None
    n_features: int
    n_outputs: int
    n_neurons: int = Field(description="stored neurons (0 for deep polished networks)")
    n_layers: int = Field(default=2, description="layers including the output layer")
    loss: str | None = Field(default=None, description="the loss it was trained on")
    classes: list[Label] | None = Field(
        default=None, description="classification: the dataset's class labels, in the order "
        "of the outputs (logistic/hinge: [negative, positive]); null for regression")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="the parameters the engine ran with")
    scanned: str | None = Field(
        default=None, description="solve jobs: 'all' (every column priced), 'sampled' or "
        "'searched'")
    primal_objective: float | None
    dual_objective: float | None
    relative_gap: float | None
    certified: bool
    created_at: datetime


class NetworkListItem(NetworkBrief):
    """An item of ``GET /networks``: the brief, and the neurons only with ``include=neurons``."""

    neurons: list[NeuronOut] | None = Field(
        default=None, description="only with include=neurons (else null)")


class NetworkOut(NetworkBrief):
    """``GET /networks/{id}``: everything, weights and neurons included."""

    output_bias: list[float]
    summary: dict[str, Any]
    layers: list[LayerOut]
    neurons: list[NeuronOut]
    polish: PolishReport | None = Field(default=None, description="polish jobs only")
    l2_bound: L2Bound | None = Field(default=None, description="p=2 solve jobs only")
    distributed_scan: DistributedScan | None = Field(
        default=None, description="solve jobs with scan_parts > 1 only")


class PredictIn(BaseModel):
    X: list[list[Annotated[float, Field(strict=True, allow_inf_nan=False)]]] = Field(
        description="rows of inputs, shape (n, d): finite JSON numbers")


class PredictOut(BaseModel):
    """Raw outputs always; for classification networks also labels (and probabilities for
    logistic and softmax). Fields that do not apply are left out of the response."""

    outputs: list[float] | list[list[float]] = Field(
        description="the network's raw outputs f(x) (scores for classification): (n,) for one "
        "output, (n, c) otherwise")
    labels: list[Label] | None = Field(
        default=None, description="classification: the predicted class label of each row "
        "(logistic/hinge: classes[1] where the score is > 0, else classes[0]; softmax: the "
        "class of the largest output)")
    probabilities: list[list[float]] | None = Field(
        default=None, description="logistic: [1 - sigmoid(s), sigmoid(s)]; softmax: the "
        "softmax of the outputs; columns in the order of classes (none for hinge)")
    classes: list[Label] | None = Field(
        default=None, description="classification: the class labels, in column order")


class NeuronHit(BaseModel):
    neuron_id: int
    network_id: str
    job_id: str
    position: int
    index_set: AnyIndexSet | None
    formula: str


class Health(BaseModel):
    status: str
    database: bool
    version: str
