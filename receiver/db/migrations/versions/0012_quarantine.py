"""quarantine

A row per target that took too many actions within a window (quarantined until lifted;
lifted rows keep when, so the next count starts there), and an index to count a target's
actions.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import receiver.db.schema

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("since", receiver.db.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("playbook_id", sa.Integer(), nullable=True),
        sa.Column("lifted_at", receiver.db.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_quarantine")),
    )
    op.create_index(
        "ix_heal_logs_target_created_at", "heal_logs", ["target", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_heal_logs_target_created_at", table_name="heal_logs")
    op.drop_table("quarantine")
