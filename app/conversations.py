"""Conversation history, kept in PostgreSQL so any worker can take any turn."""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db import Conversation, Turn, session_scope


class ConversationError(ValueError):
    pass


def ensure(session: Session, conversation_id: str, tenant: str) -> None:
    """Create the conversation on its first turn; refuse one that belongs to another tenant."""
    session.execute(
        insert(Conversation).values(id=conversation_id, tenant=tenant).on_conflict_do_nothing(index_elements=["id"])
    )
    owner = session.scalar(select(Conversation.tenant).where(Conversation.id == conversation_id))
    if owner != tenant:
        raise ConversationError(f"conversation {conversation_id!r} does not exist for tenant {tenant!r}")


def specialist_of(conversation_id: str) -> str | None:
    with session_scope() as session:
        return session.scalar(select(Conversation.specialist).where(Conversation.id == conversation_id))


def history(conversation_id: str, *, before_request: str) -> list[dict[str, str]]:
    """Earlier turns as chat messages, oldest first, without the current request's own turns."""
    with session_scope() as session:
        rows = session.execute(
            select(Turn.role, Turn.content)
            .where(Turn.conversation_id == conversation_id, Turn.request_id != before_request)
            .order_by(Turn.id)
        ).all()
    return [{"role": row.role, "content": row.content} for row in rows]


def append_exchange(conn: Session | Connection, conversation_id: str, request_id: str, question: str, answer: str,
                    specialist: str | None) -> None:
    """The request's question and answer as the conversation's next turns; `specialist` (None:
    unchanged, as when a person answered a request no specialist took) keeps its follow-ups there."""
    already = conn.scalar(select(func.count()).select_from(Turn).where(Turn.request_id == request_id))
    if already:
        return
    conn.execute(
        insert(Turn.__table__),
        [
            {"conversation_id": conversation_id, "request_id": request_id, "role": "user", "content": question},
            {"conversation_id": conversation_id, "request_id": request_id, "role": "assistant", "content": answer},
        ],
    )
    conn.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(specialist=func.coalesce(specialist, Conversation.specialist), updated_at=func.now())
    )
