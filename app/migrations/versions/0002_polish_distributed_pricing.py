"""polish results (network kind, deep-net layers) and distributed pricing tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 10:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='solve'))
        batch_op.add_column(sa.Column('layers', sa.JSON(), nullable=True))

    op.create_table('pricing_rounds',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('attempt', sa.String(length=200), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('V', sa.LargeBinary(), nullable=False),
    sa.Column('n_top', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('n_parts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pricing_rounds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pricing_rounds_job_id'), ['job_id'], unique=False)

    op.create_table('pricing_parts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('part_index', sa.Integer(), nullable=False),
    sa.Column('start', sa.BigInteger(), nullable=False),
    sa.Column('stop', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['round_id'], ['pricing_rounds.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('round_id', 'part_index', name='uq_pricing_parts_index')
    )
    with op.batch_alter_table('pricing_parts', schema=None) as batch_op:
        batch_op.create_index('ix_pricing_parts_round_state', ['round_id', 'state'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pricing_parts', schema=None) as batch_op:
        batch_op.drop_index('ix_pricing_parts_round_state')
    op.drop_table('pricing_parts')
    with op.batch_alter_table('pricing_rounds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pricing_rounds_job_id'))
    op.drop_table('pricing_rounds')
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.drop_column('layers')
        batch_op.drop_column('kind')
