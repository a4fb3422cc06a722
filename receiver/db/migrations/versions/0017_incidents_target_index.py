"""ix_incidents_target

A target's incidents, newest first, on the page for people: an index on target (its rows
come in id order) instead of a walk through every incident.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_incidents_target", "incidents", ["target"])


def downgrade() -> None:
    op.drop_index("ix_incidents_target", table_name="incidents")
