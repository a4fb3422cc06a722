"""incidents.hold

A guard that holds an incident's action back and rechecks it (a blocking alert, every 30 s
until it ends or the incident escalates) logged a heal log and counted a refusal on every
recheck: 60 rows per incident for a 30-minute deploy. The hold last logged is kept on the
incident; a recheck that finds the same one writes only the next look.

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("hold", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("hold")
