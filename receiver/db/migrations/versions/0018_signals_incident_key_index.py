"""ix_signals_scheduler_incident_key

An incident's timeline shows the signals that made it (each webhook alert or report as
received). An alert's are found by their idempotency keys; a scheduler's reports carry a
client's id instead, so theirs are found by incident key, through an index on their rows
only (alerts, the bulk of ingest, do not pay for it).

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCHEDULER = "source = 'scheduler'"


def upgrade() -> None:
    op.create_index(
        "ix_signals_scheduler_incident_key",
        "signals",
        ["incident_key"],
        sqlite_where=sa.text(_SCHEDULER),
        postgresql_where=sa.text(_SCHEDULER),
    )


def downgrade() -> None:
    op.drop_index("ix_signals_scheduler_incident_key", table_name="signals")
