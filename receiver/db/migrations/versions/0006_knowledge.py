"""knowledge

Per (error type, message signature, playbook): attempts, successes, failures, heal times and
an example message, updated on every heal outcome.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import receiver.db.schema

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dt = receiver.db.schema.UTCDateTime(timezone=True)
    op.create_table(
        "knowledge",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("error_type", sa.String(length=50), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("playbook_id", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("heal_seconds_total", sa.Float(), nullable=False),
        sa.Column("recent_heal_seconds", sa.JSON(), nullable=False),
        sa.Column("example_message", sa.Text(), nullable=False),
        sa.Column("last_seen_at", dt, nullable=False),
        sa.Column("last_success_at", dt, nullable=True),
        sa.ForeignKeyConstraint(
            ["playbook_id"], ["playbooks.id"], name=op.f("fk_knowledge_playbook_id_playbooks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge")),
        sa.UniqueConstraint(
            "error_type",
            "signature",
            "playbook_id",
            name=op.f("uq_knowledge_error_type_signature_playbook_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("knowledge")
