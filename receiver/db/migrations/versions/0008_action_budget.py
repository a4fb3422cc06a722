"""action budget

Actions started per fixed window across replicas, taken with a conditional UPDATE.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import receiver.db.schema

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "action_budget",
        sa.Column("window_start", receiver.db.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("window_start", name=op.f("pk_action_budget")),
    )


def downgrade() -> None:
    op.drop_table("action_budget")
