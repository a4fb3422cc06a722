"""ix_outbox_incident_id

An incident's timeline (the page, autoheal incident ID) lists the notices sent about it. The
outbox keeps 7 days of them: without an index each timeline read them all.

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_incident_id", "outbox", ["incident_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_incident_id", table_name="outbox")
