"""incidents due index

The worker's claim (earliest due first, a batch at a time) and its "when is the next one
due" read walk this index in order and stop after the batch: only active incidents have a
next_attempt_at, so resolved and escalated history stays out of it. Before it, every claim
sorted all due incidents (a storm's whole backlog) to take the first few. It replaces the
(status, next_attempt_at) index, which nothing reads any more and every write kept up.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = sa.text("next_attempt_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_incidents_status_next_attempt_at", table_name="incidents")
    op.create_index(
        "ix_incidents_due",
        "incidents",
        ["next_attempt_at", "id"],
        postgresql_where=_WHERE,
        sqlite_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_due", table_name="incidents")
    op.create_index(
        "ix_incidents_status_next_attempt_at", "incidents", ["status", "next_attempt_at"]
    )
