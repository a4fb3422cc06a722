"""task_runs, tasks

A scheduler's runs of a task (start, success, failure reports), and the declared tasks since
when autoheal expects to hear from them: missed and overrunning runs are found from these.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import receiver.db.schema

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task", sa.String(100), nullable=False),
        sa.Column("run", sa.String(200), nullable=False),
        sa.Column("started_at", receiver.db.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", receiver.db.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("overrun_at", receiver.db.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_task_runs"),
        sa.UniqueConstraint("task", "run", name="uq_task_runs_task_run"),
    )
    op.create_index("ix_task_runs_task_started_at", "task_runs", ["task", "started_at"])
    op.create_index("ix_task_runs_task_finished_at", "task_runs", ["task", "finished_at"])
    op.create_table(
        "tasks",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("declared_at", receiver.db.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("missed_due", receiver.db.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_tasks"),
    )


def downgrade() -> None:
    op.drop_table("tasks")
    op.drop_table("task_runs")
