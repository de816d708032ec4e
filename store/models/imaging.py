"""Pseudonymised patients and their imaging: study, series, image (one row per stored frame or slice)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.base import Base
from store.types import BigIntPK, JSONType, UTCDateTime, utcnow

if TYPE_CHECKING:
    from store.models.accounts import User


class Patient(Base):
    """A patient known only by the pseudonym de-identification produced upstream.

    No name, no real identifier and no birth date are ever stored; ``age_years`` is coarse on purpose.
    """

    __tablename__ = "patients"
    __table_args__ = (CheckConstraint("age_years IS NULL OR age_years >= 0", name="age_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pseudo_id: Mapped[str] = mapped_column(String(128), unique=True)
    sex: Mapped[str | None] = mapped_column(String(16))
    age_years: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    studies: Mapped[list[Study]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Patient(id={self.id!r}, pseudo_id={self.pseudo_id!r})"


class Study(Base):
    """An imaging study (pseudonymised UID).

    ``deid_record`` lists what de-identification removed or replaced, by attribute name only, never the
    values. ``owner_user_id`` is who uploaded it and restricts access; it is cleared if that user is deleted.
    """

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    study_uid: Mapped[str] = mapped_column(String(128), unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    #: What the study was read from: ``dicom``, ``nifti``, ``png``, ``jpeg`` ...
    source_kind: Mapped[str] = mapped_column(String(16))
    owner_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    deid_record: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    owner: Mapped[User | None] = relationship()
    series: Mapped[list[Series]] = relationship(
        back_populates="study",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Series.number",
    )

    def __repr__(self) -> str:
        return f"Study(id={self.id!r}, study_uid={self.study_uid!r}, modality={self.modality!r})"


class Series(Base):
    """A series of a study (pseudonymised UID)."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("study_id", "series_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str] = mapped_column(String(128), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    number: Mapped[int | None] = mapped_column()

    study: Mapped[Study] = relationship(back_populates="series")
    images: Mapped[list[Image]] = relationship(
        back_populates="series",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="[Image.slice_index, Image.frame_index]",
    )


class Image(Base):
    """One stored 2-D image: a frame of a SOP instance or a slice of a volume.

    ``storage_path`` is relative to the data directory, so the data directory can move.
    """

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("series_id", "sop_uid", "frame_index"),
        Index(None, "series_id", "slice_index"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    sop_uid: Mapped[str] = mapped_column(String(128))
    frame_index: Mapped[int] = mapped_column(default=0)
    slice_index: Mapped[int | None] = mapped_column()
    rows: Mapped[int | None] = mapped_column()
    columns: Mapped[int | None] = mapped_column()
    storage_path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    series: Mapped[Series] = relationship(back_populates="images")
