"""incident approval

A playbook with ``approval: required`` waits for a person: the incident keeps the request's
state, attempt, deadline and who decided.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import receiver.db.schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approval_state", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("approval_attempt", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "approval_deadline", receiver.db.schema.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("approval_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("approval_by")
        batch_op.drop_column("approval_deadline")
        batch_op.drop_column("approval_attempt")
        batch_op.drop_column("approval_state")
