"""Who a study belongs to, kept without patient data: keyed digests and their one rule.

A study's instances must all be of one patient. The catalog keeps, per study, keyed
digests (HMAC-SHA-256 with a site secret) of the patient identity its first instances
carried, never the values themselves:

* ``patient``: Patient ID together with Issuer of Patient ID (empty values count: a
  study that arrived without a Patient ID does not accept one that has one);
* ``birth_date`` and ``sex``: Patient's Birth Date and Patient's Sex, compared only
  where both sides have them (a later instance may add what the first lacked).

Each digest covers the Study Instance UID too, so equal values in two studies give
unrelated digests: the catalog cannot be used to link studies of one patient, nor, without
the key, to test guesses of a Patient ID. The key's own fingerprint is kept beside the
digests; a study recorded under another key cannot be checked and is refused rather than
assumed to match.

The key is a file of 32 random bytes, created (mode 0600) at first use when it does not
exist: by default ``<spool>/.patient-identity.key`` (every receiver of a cluster shares the
spool), or ``dicom.patient_identity_key_file`` (a Kubernetes or compose secret). Losing it
means that instances added to the studies recorded before cannot be checked: they are
refused with a message that says so (``docs/security.md``).

Studies recorded before the catalog kept identities get the identity of one of their
instances when a receiver starts (:func:`studies_without_identity`,
:func:`backfill_identity`, run by :meth:`gateway.receive.store.InstanceStore.recover`).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, PatientConflictError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .catalog import Catalog

__all__ = [
    "DEFAULT_KEY_NAME",
    "IdentityKey",
    "PatientIdentity",
    "backfill_identity",
    "check_key",
    "studies_without_identity",
]

logger = logging.getLogger(__name__)

#: The key file's name in the spool when ``dicom.patient_identity_key_file`` is not set.
DEFAULT_KEY_NAME = ".patient-identity.key"
_KEY_BYTES = 32
_DIGEST_CHARS = 32  # 128 bits of HMAC-SHA-256
_FIELDS = ("key", "patient", "birth_date", "sex")


@dataclass(frozen=True)
class PatientIdentity:
    """Keyed digests of the patient identity of one study's instances (no patient data).

    Parameters
    ----------
    key : str
        Fingerprint of the key the digests were made with.
    patient : str
        Digest of Patient ID + Issuer of Patient ID.
    birth_date, sex : str or None
        Digests of Patient's Birth Date and Patient's Sex, where the header had them.
    """

    key: str
    patient: str
    birth_date: str | None = None
    sex: str | None = None

    def conflict(self, other: PatientIdentity) -> str | None:
        """Why ``other`` (a new instance) is not of this study's patient, or None."""
        if other.key != self.key:
            return "patient identity was recorded under another key; cannot check"
        if other.patient != self.patient:
            return "patient identity differs from the study's first instances"
        for name in ("birth_date", "sex"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None and mine != theirs:
                return "patient identity differs from the study's first instances"
        return None

    def check(self, other: PatientIdentity) -> PatientIdentity:
        """Return this identity completed with what ``other`` adds.

        Raises
        ------
        PatientConflictError
            When ``other`` is of another patient (or cannot be compared).
        """
        reason = self.conflict(other)
        if reason is not None:
            raise PatientConflictError(reason)
        return replace(
            self,
            birth_date=self.birth_date or other.birth_date,
            sex=self.sex or other.sex,
        )

    def to_text(self) -> str:
        """The catalog's form: ``key=..;patient=..;birth_date=..;sex=..`` (absent left out)."""
        return ";".join(
            f"{name}={getattr(self, name)}" for name in _FIELDS if getattr(self, name) is not None
        )

    @classmethod
    def from_text(cls, text: str) -> PatientIdentity:
        """Parse :meth:`to_text`'s form.

        Raises
        ------
        PatientConflictError
            When the stored text is not of this form (it cannot be compared).
        """
        try:
            parts = dict(item.split("=", 1) for item in text.split(";") if item)
            return cls(
                key=parts["key"],
                patient=parts["patient"],
                birth_date=parts.get("birth_date"),
                sex=parts.get("sex"),
            )
        except (KeyError, ValueError):
            raise PatientConflictError(
                "the study's recorded patient identity is unreadable"
            ) from None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip() if value is not None else ""


class IdentityKey:
    """The site secret and the digests made with it.

    Parameters
    ----------
    secret : bytes
        At least 32 bytes.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < _KEY_BYTES:
            raise ValueError(f"a patient identity key has at least {_KEY_BYTES} bytes")
        self._secret = secret
        self.fingerprint = self._digest("ihgamp-identity-key")[:16]

    @classmethod
    def load(cls, path: Path) -> IdentityKey:
        """Read the key at ``path``, creating it (mode 0600) when it does not exist yet.

        Creation is race-free across processes and machines sharing the folder: the key
        is written to a private temporary file and linked to ``path``; whoever links
        second reads the winner's key.

        Raises
        ------
        OSError
            When the key can be neither read nor created.
        ValueError
            When the file exists but holds fewer than 32 bytes.
        """
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_bytes(_KEY_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, path)
                logger.warning("patient identity key created", extra={"path": str(path)})
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system: rename unless one won
                if not path.exists():
                    os.replace(temporary, path)
                    logger.warning("patient identity key created", extra={"path": str(path)})
            finally:
                temporary.unlink(missing_ok=True)
        return cls(path.read_bytes())

    def _digest(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(self._secret, message, sha256).hexdigest()[:_DIGEST_CHARS]

    def identity(self, study_uid: str, ds: Dataset) -> PatientIdentity:
        """The digests of ``ds``'s patient identity within study ``study_uid``."""

        def optional(field: str, keyword: str) -> str | None:
            value = _text(ds, keyword).upper()
            return self._digest(study_uid, field, value) if value else None

        return PatientIdentity(
            key=self.fingerprint,
            patient=self._digest(
                study_uid, "patient", _text(ds, "PatientID"), _text(ds, "IssuerOfPatientID")
            ),
            birth_date=optional("birth_date", "PatientBirthDate"),
            sex=optional("sex", "PatientSex"),
        )


def studies_without_identity(catalog: Catalog) -> list[tuple[str, str]]:
    """Studies recorded before identities were kept (revision 0007) that hold instances.

    Returns
    -------
    list of tuple
        ``(study_uid, path of one current instance)``.
    """
    from sqlalchemy import func, select

    from .schema import Instance, Series, Study

    with catalog.session() as s:
        rows = s.execute(
            select(Study.study_uid, func.min(Instance.path))
            .join(Series, Series.study_id == Study.id)
            .join(Instance, Instance.series_id == Series.id)
            .where(Study.patient_identity.is_(None), Instance.current.is_(True))
            .group_by(Study.study_uid)
        ).all()
    return [(str(uid), str(path)) for uid, path in rows]


def backfill_identity(catalog: Catalog, study_uid: str, identity: PatientIdentity) -> bool:
    """Set a study's identity where it has none yet; False if another writer set one."""
    from sqlalchemy import update

    from .schema import Study

    with catalog.session() as s:
        done = s.execute(
            update(Study)
            .where(Study.study_uid == study_uid, Study.patient_identity.is_(None))
            .values(patient_identity=identity.to_text())
        )
    return bool(getattr(done, "rowcount", 0))


def check_key(catalog: Catalog, key: IdentityKey, path: Path) -> None:
    """Record the key's fingerprint in a new catalog, or check it against the recorded one.

    Raises
    ------
    ConfigError
        When the catalog's studies were recorded with another key (a lost or replaced key
        file, or receivers that do not share it): every instance added to them would be
        refused, so the receiver does not start.
    """
    from sqlalchemy.exc import IntegrityError

    from .schema import SiteKey

    for _ in range(2):
        try:
            with catalog.session() as s:
                row = s.get(SiteKey, "patient-identity")
                if row is None:
                    s.add(SiteKey(name="patient-identity", fingerprint=key.fingerprint))
                    return
                recorded = row.fingerprint
            break
        except IntegrityError:  # recorded by another receiver at the same moment
            continue
    else:  # pragma: no cover - two lost races in a row
        raise ConfigError("cannot record the patient identity key in the catalog; try again")
    if recorded != key.fingerprint:
        raise ConfigError(
            f"the patient identity key {path} (fingerprint {key.fingerprint}) is not the one "
            f"this catalog's studies were recorded with ({recorded}): restore that key file "
            "(from the spool's backup), or point dicom.patient_identity_key_file at it"
        )
