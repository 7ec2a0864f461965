"""HTTP schemas (pydantic v2).

Objective convention (DESIGN section 2): a two-layer ReLU network
``f(x) = sum_j a_j relu(w_j . x + b_j) + c`` is trained on
``L(f(X), y) + (lam / 2) sum_j (||w_j||_p^2 + ||a_j||_2^2)`` with unregularized biases; for the
squared loss ``L = 0.5 * sum_i (f(x_i) - y_i)^2`` (summed, not averaged).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKind = Literal["solve"]


class ErrorBody(BaseModel):
    detail: Any = Field(description="What is wrong with the request")


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
    """Parameters of a convex solve (see ``wedgenet.solve``)."""

    model_config = ConfigDict(extra="forbid")

    loss: Literal["squared", "logistic", "hinge", "softmax"] = "squared"
    p: Literal[1, 2] = 1
    bias: bool = True
    lam: float = Field(default=0.01, gt=0, le=1e6, allow_inf_nan=False)
    source: Literal["exhaustive", "sample"] = "exhaustive"
    n_columns: int | None = Field(default=None, ge=1, le=100_000_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    max_columns: int = Field(default=2_000_000, ge=1, le=1_000_000_000)
    solver: Literal["auto", "cvxpy", "workingset"] = "auto"
    tol: float = Field(default=1e-6, gt=0, lt=1.0, allow_inf_nan=False)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: JobKind = "solve"
    dataset_id: str = Field(min_length=1, max_length=64)
    params: SolveParams = Field(default_factory=SolveParams)


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


class NeuronOut(BaseModel):
    id: int
    position: int
    weight: list[float]
    bias: float
    output_weight: list[float]
    index_set: IndexSetOut | None
    formula: str
    residual: float


class LayerOut(BaseModel):
    name: str
    W: list[list[float]] = Field(description="weights, shape (d_in, d_out)")
    b: list[float]


class NetworkOut(BaseModel):
    id: str
    job_id: str
    dataset_id: str | None
    n_features: int
    n_outputs: int
    n_neurons: int
    output_bias: list[float]
    primal_objective: float | None
    dual_objective: float | None
    relative_gap: float | None
    certified: bool
    summary: dict[str, Any]
    layers: list[LayerOut]
    neurons: list[NeuronOut]
    created_at: datetime


class PredictIn(BaseModel):
    X: list[list[float]] = Field(description="rows of inputs, shape (n, d)")


class PredictOut(BaseModel):
    outputs: list[float] | list[list[float]]


class NeuronHit(BaseModel):
    neuron_id: int
    network_id: str
    job_id: str
    position: int
    index_set: IndexSetOut | None
    formula: str


class Health(BaseModel):
    status: str
    database: bool
    version: str
