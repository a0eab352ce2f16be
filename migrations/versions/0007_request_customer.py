"""request customer: the verified end user a request acts for, fixed once written

Reviewed by hand. `requests.customer` is the calling app's id of the end user it authenticated
(nullable: an app may name none, and then account tools refuse). A trigger refuses any UPDATE that
changes a request's tenant or customer: whose authority a request carries is decided when it is
accepted, and no later code path may widen it. `BEFORE UPDATE OF` fires only for statements that
set one of these columns, so the status transitions on the hot path do not pay for it.

Revision ID: 0007_request_customer
Revises: 0006_unpriced
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_request_customer"
down_revision = "0006_unpriced"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("customer", sa.String(length=200), nullable=True))
    op.execute(
        """
        CREATE FUNCTION requests_principal_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'a request''s tenant and customer cannot change after it was accepted';
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER requests_principal_immutable BEFORE UPDATE OF tenant, customer ON requests "
        "FOR EACH ROW WHEN (OLD.tenant IS DISTINCT FROM NEW.tenant "
        "OR OLD.customer IS DISTINCT FROM NEW.customer) "
        "EXECUTE FUNCTION requests_principal_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS requests_principal_immutable ON requests")
    op.execute("DROP FUNCTION IF EXISTS requests_principal_immutable()")
    op.drop_column("requests", "customer")
