"""Initial schema: patients and imaging, knowledge base, triage, users, chat, auth tokens, audit.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Types are spelled out here rather than imported from ``store``: a migration must keep describing the schema
it created even after the models change.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.types.TypeEngine:
    # store.types.UTCDateTime stores this; it converts to UTC in Python.
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _bigint_pk() -> sa.types.TypeEngine:
    # Only INTEGER PRIMARY KEY autoincrements on SQLite.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "knowledge_documents",
        sa.Column("id", _bigint_pk(), nullable=False),
        sa.Column("bundle", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("doc_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("diagnosis", sa.Text(), nullable=True),
        sa.Column("meta", _json(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_documents")),
        sa.UniqueConstraint(
            "bundle", "source", "doc_key", name=op.f("uq_knowledge_documents_bundle_source_doc_key")
        ),
    )
    op.create_index(
        op.f("ix_knowledge_documents_bundle_kind"), "knowledge_documents", ["bundle", "kind"], unique=False
    )

    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudo_id", sa.String(length=128), nullable=False),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("age_years", sa.Integer(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint("age_years IS NULL OR age_years >= 0", name=op.f("ck_patients_age_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("pseudo_id", name=op.f("uq_patients_pseudo_id")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", _bigint_pk(), nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=128), nullable=True),
        sa.Column("details", _json(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_audit_events_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_action"), "audit_events", ["action"], unique=False)
    op.create_index(
        op.f("ix_audit_events_target_type_target_id"),
        "audit_events",
        ["target_type", "target_id"],
        unique=False,
    )
    op.create_index(op.f("ix_audit_events_ts"), "audit_events", ["ts"], unique=False)
    op.create_index(op.f("ix_audit_events_user_id"), "audit_events", ["user_id"], unique=False)

    op.create_table(
        "auth_tokens",
        sa.Column("id", _bigint_pk(), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_auth_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_tokens_token_hash")),
    )
    op.create_index(op.f("ix_auth_tokens_expires_at"), "auth_tokens", ["expires_at"], unique=False)
    op.create_index(op.f("ix_auth_tokens_user_id"), "auth_tokens", ["user_id"], unique=False)

    op.create_table(
        "knowledge_chunks",
        sa.Column("id", _bigint_pk(), nullable=False),
        sa.Column("document_id", _bigint_pk(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("vector_id", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("char_start", sa.Integer(), nullable=True),
        sa.Column("char_end", sa.Integer(), nullable=True),
        sa.Column("n_tokens", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["knowledge_documents.id"],
            name=op.f("fk_knowledge_chunks_document_id_knowledge_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_chunks")),
        sa.UniqueConstraint(
            "document_id", "chunk_index", name=op.f("uq_knowledge_chunks_document_id_chunk_index")
        ),
    )
    op.create_index(op.f("ix_knowledge_chunks_vector_id"), "knowledge_chunks", ["vector_id"], unique=False)

    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=128), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("body_part", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_user_id", sa.Integer(), nullable=True),
        sa.Column("deid_record", _json(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_user_id"], ["users.id"], name=op.f("fk_studies_owner_user_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_studies_patient_id_patients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_studies_study_uid")),
    )
    op.create_index(op.f("ix_studies_owner_user_id"), "studies", ["owner_user_id"], unique=False)
    op.create_index(op.f("ix_studies_patient_id"), "studies", ["patient_id"], unique=False)

    op.create_table(
        "triage_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("worklist", sa.Text(), nullable=True),
        sa.Column("bundle", sa.String(length=1024), nullable=True),
        sa.Column("config", _json(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("owner_user_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_triage_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["owner_user_id"],
            ["users.id"],
            name=op.f("fk_triage_runs_owner_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triage_runs")),
    )
    op.create_index(op.f("ix_triage_runs_owner_user_id"), "triage_runs", ["owner_user_id"], unique=False)
    op.create_index(op.f("ix_triage_runs_status"), "triage_runs", ["status"], unique=False)

    op.create_table(
        "chat_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("prior_study_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prior_study_id"],
            ["studies.id"],
            name=op.f("fk_chat_sessions_prior_study_id_studies"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_chat_sessions_study_id_studies"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_chat_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_sessions")),
    )
    op.create_index(
        op.f("ix_chat_sessions_prior_study_id"), "chat_sessions", ["prior_study_id"], unique=False
    )
    op.create_index(op.f("ix_chat_sessions_study_id"), "chat_sessions", ["study_id"], unique=False)
    op.create_index(
        op.f("ix_chat_sessions_user_id_updated_at"), "chat_sessions", ["user_id", "updated_at"], unique=False
    )

    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("series_uid", sa.String(length=128), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_series_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("study_id", "series_uid", name=op.f("uq_series_study_id_series_uid")),
    )
    op.create_index(op.f("ix_series_series_uid"), "series", ["series_uid"], unique=False)
    op.create_index(op.f("ix_series_study_id"), "series", ["study_id"], unique=False)

    op.create_table(
        "triage_items",
        sa.Column("id", _bigint_pk(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(length=255), nullable=False),
        sa.Column("accession", sa.String(length=128), nullable=True),
        sa.Column("study_path", sa.Text(), nullable=True),
        sa.Column("prior_path", sa.Text(), nullable=True),
        sa.Column("history", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", _ts(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Double(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'leased', 'done', 'error')", name=op.f("ck_triage_items_status")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_triage_items_attempts_non_negative")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["triage_runs.id"],
            name=op.f("fk_triage_items_run_id_triage_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triage_items")),
        sa.UniqueConstraint("run_id", "item_key", name=op.f("uq_triage_items_run_id_item_key")),
    )
    op.create_index(op.f("ix_triage_items_run_id_status"), "triage_items", ["run_id", "status"], unique=False)
    op.create_index(
        op.f("ix_triage_items_status_lease_expires_at"),
        "triage_items",
        ["status", "lease_expires_at"],
        unique=False,
    )

    op.create_table(
        "chat_messages",
        sa.Column("id", _bigint_pk(), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("payload", _json(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system')", name=op.f("ck_chat_messages_role")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name=op.f("fk_chat_messages_session_id_chat_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    op.create_index(
        op.f("ix_chat_messages_session_id_created_at"),
        "chat_messages",
        ["session_id", "created_at"],
        unique=False,
    )

    op.create_table(
        "images",
        sa.Column("id", _bigint_pk(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("sop_uid", sa.String(length=128), nullable=False),
        sa.Column("frame_index", sa.Integer(), nullable=False),
        sa.Column("slice_index", sa.Integer(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("storage_path", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("meta", _json(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_images_series_id_series"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint(
            "series_id", "sop_uid", "frame_index", name=op.f("uq_images_series_id_sop_uid_frame_index")
        ),
    )
    op.create_index(
        op.f("ix_images_series_id_slice_index"), "images", ["series_id", "slice_index"], unique=False
    )
    op.create_index(op.f("ix_images_sha256"), "images", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_table("images")
    op.drop_table("chat_messages")
    op.drop_table("triage_items")
    op.drop_table("series")
    op.drop_table("chat_sessions")
    op.drop_table("triage_runs")
    op.drop_table("studies")
    op.drop_table("knowledge_chunks")
    op.drop_table("auth_tokens")
    op.drop_table("audit_events")
    op.drop_table("users")
    op.drop_table("patients")
    op.drop_table("knowledge_documents")
