"""SQLAlchemy 2.0 typed ORM models. The database is the single record of every job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone when storing)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Blob(Base):
    """A content-addressed ``.npy`` blob (sha256 of the canonical ``.npy`` bytes)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    dtype: Mapped[str] = mapped_column(String(32))
    shape: Mapped[list[int]] = mapped_column(JSON)
    nbytes: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    x_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    y_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    n: Mapped[int] = mapped_column(Integer)
    d: Mapped[int] = mapped_column(Integer)
    outputs: Mapped[int] = mapped_column(Integer)
    x_dtype: Mapped[str] = mapped_column(String(32))
    y_dtype: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WeightSet(Base):
    __tablename__ = "weight_sets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True
    )
    content_hash: Mapped[str] = mapped_column(String(64))
    #: [[W_sha256, b_sha256], ...] in layer order
    layer_blobs: Mapped[list[list[str]]] = mapped_column(JSON)
    #: [[d_in, d_out], ...]
    shapes: Mapped[list[list[int]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_state_heartbeat", "state", "heartbeat_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True
    )
    weight_set_id: Mapped[str | None] = mapped_column(
        ForeignKey("weight_sets.id", ondelete="SET NULL"), nullable=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str] = mapped_column(String(200), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    network: Mapped[Network | None] = relationship(back_populates="job", uselist=False)


class Network(Base):
    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    #: one result per job, ever (idempotent result writes)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True
    )
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True
    )
    n_features: Mapped[int] = mapped_column(Integer)
    n_outputs: Mapped[int] = mapped_column(Integer)
    n_neurons: Mapped[int] = mapped_column(Integer)
    output_bias: Mapped[list[float]] = mapped_column(JSON)
    primal_objective: Mapped[float | None] = mapped_column(Float, nullable=True)
    dual_objective: Mapped[float | None] = mapped_column(Float, nullable=True)
    relative_gap: Mapped[float | None] = mapped_column(Float, nullable=True)
    certified: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the engine's ``result.to_dict()`` without the network (params, solver, timings, ...);
    #: for polish jobs the polish report (objectives before/after, metrics, per-neuron report)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: the job kind that produced it: ``solve`` or ``polish``
    kind: Mapped[str] = mapped_column(String(16), default="solve", server_default="solve")
    #: ``[{"W": (d_in, d_out), "b": (d_out,)}, ...]`` for networks that are not two-layer
    #: (polished deep MLPs); ``None`` when the neurons define the network
    layers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="network")
    neurons: Mapped[list[Neuron]] = relationship(
        back_populates="network",
        order_by="Neuron.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Neuron(Base):
    __tablename__ = "neurons"
    __table_args__ = (UniqueConstraint("network_id", "position", name="uq_neurons_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    weight: Mapped[list[float]] = mapped_column(JSON)
    bias: Mapped[float] = mapped_column(Float)
    output_weight: Mapped[list[float]] = mapped_column(JSON)
    index_set: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    formula: Mapped[str] = mapped_column(Text, default="")
    residual: Mapped[float] = mapped_column(Float, default=0.0)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    network: Mapped[Network] = relationship(back_populates="neurons")


class NeuronSample(Base):
    """Index-set membership, queryable: sample ``sample_index`` is in neuron ``neuron_id``."""

    __tablename__ = "neuron_samples"
    __table_args__ = (Index("ix_neuron_samples_sample", "sample_index"),)

    neuron_id: Mapped[int] = mapped_column(
        ForeignKey("neurons.id", ondelete="CASCADE"), primary_key=True
    )
    sample_index: Mapped[int] = mapped_column(Integer, primary_key=True)


class PricingRound(Base):
    """One full scan of a solve split into parts (distributed pricing, ``scan_parts > 1``).

    Written by the job's coordinating attempt (``attempt`` = its worker token); parts are
    claimed by any worker with a conditional UPDATE. Deleted when the scan was merged and
    when the job finishes."""

    __tablename__ = "pricing_rounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[str] = mapped_column(String(200))
    round: Mapped[int] = mapped_column(Integer)
    #: the dual point V (n, c) as canonical ``.npy`` bytes
    V: Mapped[bytes] = mapped_column(LargeBinary)
    n_top: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    n_parts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PricingPart(Base):
    """A contiguous range ``start:stop`` of the dictionary's raw subsets to price."""

    __tablename__ = "pricing_parts"
    __table_args__ = (
        UniqueConstraint("round_id", "part_index", name="uq_pricing_parts_index"),
        Index("ix_pricing_parts_round_state", "round_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("pricing_rounds.id", ondelete="CASCADE"))
    part_index: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(BigInteger)
    stop: Mapped[int] = mapped_column(BigInteger)
    #: queued, running or done
    state: Mapped[str] = mapped_column(String(16), default="queued")
    #: ``PricingResult.to_dict()`` once done
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
