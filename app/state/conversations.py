"""Conversation history, kept in PostgreSQL so any worker can take any turn.

A conversation id names a conversation within its tenant: the same id from another tenant is
another conversation. Its customer is the customer of its first request, and only requests of that
customer continue it: history is the customer's own data, and it goes into the prompt.
"""

from __future__ import annotations

from sqlalchemy import Connection, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.errors import StateError
from app.state import Conversation, Request, Turn, session_scope, table_of


class ConversationError(StateError, ValueError):
    pass


def ensure(
    session: Session | Connection, conversation_id: str, tenant: str, customer: str | None = None
) -> None:
    """Create the tenant's conversation on its first turn; refuse one of another customer."""
    session.execute(
        insert(Conversation)
        .values(id=conversation_id, tenant=tenant, customer=customer)
        .on_conflict_do_nothing(index_elements=["tenant", "id"])
    )
    owner = session.execute(
        select(Conversation.customer).where(Conversation.tenant == tenant, Conversation.id == conversation_id)
    ).one()
    if owner.customer != customer:
        raise ConversationError(
            f"conversation {conversation_id!r} belongs to another customer; "
            "use a new conversation id for this one"
        )


def specialist_of(tenant: str, conversation_id: str, *, for_request: str | None = None) -> str | None:
    """The conversation's specialist. With `for_request`, only if that request is the tenant's:
    the router takes the tenant from its route message, and a message naming another tenant must
    not read that tenant's conversations (the routed write then rejects it)."""
    query = select(Conversation.specialist).where(
        Conversation.tenant == tenant, Conversation.id == conversation_id
    )
    if for_request is not None:
        query = query.where(exists().where(Request.id == for_request, Request.tenant == tenant))
    with session_scope() as session:
        return session.scalar(query)


def history(tenant: str, conversation_id: str, *, before_request: str) -> list[dict[str, str]]:
    """Earlier turns as chat messages, oldest first, without the current request's own turns."""
    with session_scope() as session:
        rows = session.execute(
            select(Turn.role, Turn.content)
            .where(
                Turn.tenant == tenant,
                Turn.conversation_id == conversation_id,
                Turn.request_id != before_request,
            )
            .order_by(Turn.id)
        ).all()
    return [{"role": row.role, "content": row.content} for row in rows]


def append_exchange(
    conn: Session | Connection,
    tenant: str,
    conversation_id: str,
    request_id: str,
    question: str,
    answer: str,
    specialist: str | None,
) -> None:
    """The request's question and answer as the conversation's next turns; `specialist` (None:
    unchanged, as when a person answered a request no specialist took) keeps its follow-ups there."""
    already = conn.scalar(select(func.count()).select_from(Turn).where(Turn.request_id == request_id))
    if already:
        return
    conn.execute(
        insert(table_of(Turn)),
        [
            {
                "tenant": tenant,
                "conversation_id": conversation_id,
                "request_id": request_id,
                "role": role,
                "content": content,
            }
            for role, content in (("user", question), ("assistant", answer))
        ],
    )
    conn.execute(
        update(Conversation)
        .where(Conversation.tenant == tenant, Conversation.id == conversation_id)
        .values(specialist=func.coalesce(specialist, Conversation.specialist), updated_at=func.now())
    )
