"""The knowledge base behind the indexes: documents per bundle and their chunks (one FAISS vector each)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.base import Base
from store.types import BigIntPK, JSONType


class KnowledgeDocument(Base):
    """A source document (case report, disease discussion, HPO profile, article, caption) of a bundle."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (UniqueConstraint("bundle", "source", "doc_key"), Index(None, "bundle", "kind"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    #: Name of the index bundle the document belongs to.
    bundle: Mapped[str] = mapped_column(String(128))
    #: Where it came from: ``medpix``, ``hpo``, ``nova``, ``jsonl`` ...
    source: Mapped[str] = mapped_column(String(64))
    #: The source's own identifier of the document.
    doc_key: Mapped[str] = mapped_column(String(255))
    #: ``case_report``, ``disease_discussion``, ``phenotype_profile``, ``literature``, ``caption`` ...
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(Text)
    diagnosis: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    sha256: Mapped[str | None] = mapped_column(String(64))

    chunks: Mapped[list[KnowledgeChunk]] = relationship(
        back_populates="document",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="KnowledgeChunk.chunk_index",
    )

    def __repr__(self) -> str:
        return f"KnowledgeDocument(id={self.id!r}, bundle={self.bundle!r}, doc_key={self.doc_key!r})"


class KnowledgeChunk(Base):
    """A passage of a document; ``vector_id`` is its int64 id in the bundle's FAISS index."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (UniqueConstraint("document_id", "chunk_index"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("knowledge_documents.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column()
    vector_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    text: Mapped[str] = mapped_column(Text)
    char_start: Mapped[int | None] = mapped_column()
    char_end: Mapped[int | None] = mapped_column()
    n_tokens: Mapped[int | None] = mapped_column()

    document: Mapped[KnowledgeDocument] = relationship(back_populates="chunks")
