"""Identity at the door: the link table from a hospital identifier to our reference.

The table lives beside the event log, never in it. A row holds

* ``lookup``: HMAC-SHA256 of ``system|value`` under a key derived from
  ``CNO_TRACKER_LINK_KEY`` — what a look-up compares, so no raw record number is stored;
* ``sealed``: ``system|value`` encrypted with AES-GCM (a fresh 96-bit nonce per row, the
  lookup as associated data), so an authorised operator can still say which identifier a
  reference was linked to;
* ``patient``: our pseudonymous reference.

Deleting a patient's rows (``cno-tracker patients unlink REF``) is the erasure path: the
clinical record stays, but nothing left in the database leads from a hospital identifier
to it, and nothing in it leads back. The same key also hashes source resource ids into
idempotency keys (:meth:`LinkKey.digest`), so a Patient id that is a record number never
reaches the log either."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr
from sqlalchemy import Column, Engine, String, Table, Text, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from events.store import metadata
from events.store.tables import events as event_rows
from events.store.types import UTCDateTime
from events.vocabulary.common import check_patient_ref
from tracker.errors import ConfigurationError

KEY_VARIABLE = "CNO_TRACKER_LINK_KEY"
MIN_KEY_CHARS = 32

patient_links = Table(
    "patient_links", metadata,
    Column("lookup", String(64), primary_key=True),
    Column("patient", String(64), nullable=False, index=True),
    Column("sealed", Text, nullable=False),
    Column("linked_at", UTCDateTime(), nullable=False),
)


def _derive(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


class LinkKey:
    """The two keys derived (HKDF-SHA256) from ``CNO_TRACKER_LINK_KEY``: one for HMACs,
    one for AES-GCM. Its repr never shows either."""

    def __init__(self, secret: SecretStr) -> None:
        material = secret.get_secret_value().encode()
        if len(material) < MIN_KEY_CHARS:
            raise ConfigurationError(
                f"{KEY_VARIABLE} must be at least {MIN_KEY_CHARS} characters "
                "(e.g. the output of `openssl rand -base64 32`)")
        self._mac = _derive(material, b"cno-tracker link lookup")
        self._aead = AESGCM(_derive(material, b"cno-tracker link seal"))

    def __repr__(self) -> str:
        return "LinkKey(**********)"

    def lookup(self, system: str, value: str) -> str:
        return self.digest(f"{system}|{value}", purpose="link")

    def digest(self, text: str, *, purpose: str) -> str:
        """A keyed hash (hex): the same text gives the same digest, and nobody without the
        key can test a guessed record number against it."""
        msg = purpose.encode() + b"\x00" + text.encode()
        return hmac.new(self._mac, msg, hashlib.sha256).hexdigest()

    def seal(self, system: str, value: str, lookup: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, f"{system}|{value}".encode(), lookup.encode())
        return base64.b64encode(nonce + sealed).decode()

    def unseal(self, sealed: str, lookup: str) -> tuple[str, str]:
        raw = base64.b64decode(sealed)
        system, _, value = self._aead.decrypt(raw[:12], raw[12:], lookup.encode()).decode()\
            .partition("|")
        return system, value


def link_key_from_env(environ: dict[str, str] | None = None) -> LinkKey:
    """The key from the environment, or a :class:`ConfigurationError` (exit 5)."""
    value = (environ if environ is not None else os.environ).get(KEY_VARIABLE)
    if not value:
        raise ConfigurationError(
            f"{KEY_VARIABLE} is not set: the link table needs a secret key of at least "
            f"{MIN_KEY_CHARS} characters (e.g. `export {KEY_VARIABLE}=$(openssl rand -base64 32)`)")
    return LinkKey(SecretStr(value))


def fresh_reference() -> str:
    """A new random pseudonymous reference (``L`` and 10 hex digits, at least one a digit:
    the project's reference rules)."""
    while True:
        ref = "L" + secrets.token_hex(5)
        if any(c.isdigit() for c in ref):
            return check_patient_ref(ref)


@dataclass(frozen=True)
class Link:
    patient: str
    system: str
    value: str


class LinkTable:
    """Look-ups, links and erasure on the ``patient_links`` table."""

    def __init__(self, engine: Engine, key: LinkKey) -> None:
        self.engine = engine
        self.key = key
        # a look-up is one statement: in autocommit it costs no BEGIN and no ROLLBACK
        # round trip (the listener looks up every message's patient)
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    def find(self, system: str, value: str) -> str | None:
        return self.find_many([(system, value)]).get((system, value))

    def find_many(self, identifiers: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        by_lookup = {self.key.lookup(s, v): (s, v) for s, v in identifiers}
        if not by_lookup:
            return {}
        out: dict[tuple[str, str], str] = {}
        wanted = list(by_lookup)
        with self._reads.connect() as conn:
            for i in range(0, len(wanted), 500):
                rows = conn.execute(select(patient_links.c.lookup, patient_links.c.patient)
                                    .where(patient_links.c.lookup.in_(wanted[i:i + 500])))
                out.update({by_lookup[r.lookup]: r.patient for r in rows})
        return out

    def find_with_versions(self, identifiers: Iterable[tuple[str, str]]
                           ) -> dict[tuple[str, str], tuple[str, int]]:
        """identifier -> (patient, its stream's version, 0 when it has no event) for the
        linked ones: the look-up and the version an import needs next in one statement
        (one snapshot, one round trip)."""
        by_lookup = {self.key.lookup(s, v): (s, v) for s, v in identifiers}
        if not by_lookup:
            return {}
        version = (select(func.max(event_rows.c.version)).where(
            event_rows.c.stream == patient_links.c.patient).scalar_subquery())
        out: dict[tuple[str, str], tuple[str, int]] = {}
        wanted = list(by_lookup)
        with self._reads.connect() as conn:
            for i in range(0, len(wanted), 500):
                rows = conn.execute(select(patient_links.c.lookup, patient_links.c.patient,
                                           version)
                                    .where(patient_links.c.lookup.in_(wanted[i:i + 500])))
                out.update({by_lookup[r[0]]: (r[1], int(r[2] or 0)) for r in rows})
        return out

    def link(self, patient: str, identifiers: Iterable[tuple[str, str]],
             now: datetime) -> list[str]:
        """Link identifiers to ``patient``; the lookups of the rows it added. One already
        linked to the same patient is left as it is; one linked to another patient refuses
        the whole call (nothing written)."""
        check_patient_ref(patient)
        pairs = list(dict.fromkeys(identifiers))
        existing = self.find_many(pairs)
        clash = [p for p in pairs if existing.get(p, patient) != patient]
        if clash:
            from tracker.errors import CommandRefused

            raise CommandRefused(
                f"{len(clash)} identifier(s) are already linked to another patient; "
                "unlink that patient first")
        rows = []
        for system, value in pairs:
            if (system, value) in existing:
                continue
            lookup = self.key.lookup(system, value)
            rows.append({"lookup": lookup, "patient": patient,
                         "sealed": self.key.seal(system, value, lookup), "linked_at": now})
        if rows:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(patient_links), rows)
            except IntegrityError:
                from tracker.errors import CommandRefused

                raise CommandRefused(
                    "an identifier was linked by someone else meanwhile; run the import "
                    "again") from None
        return [str(r["lookup"]) for r in rows]

    def add_unlinked(self, links: dict[tuple[str, str], str], now: datetime) -> list[str]:
        """Insert links the caller found unlinked (identifier -> patient) in one
        statement; the lookups added. Someone linking one meanwhile refuses them all."""
        rows = []
        for (system, value), patient in links.items():
            lookup = self.key.lookup(system, value)
            rows.append({"lookup": lookup, "patient": check_patient_ref(patient),
                         "sealed": self.key.seal(system, value, lookup), "linked_at": now})
        if rows:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(patient_links), rows)
            except IntegrityError:
                from tracker.errors import CommandRefused

                raise CommandRefused(
                    "an identifier was linked by someone else meanwhile; run the import "
                    "again") from None
        return [str(r["lookup"]) for r in rows]

    def links_of(self, patient: str) -> list[Link]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(patient_links.c.lookup, patient_links.c.sealed)
                                .where(patient_links.c.patient == patient)).all()
        return [Link(patient, *self.key.unseal(r.sealed, r.lookup)) for r in rows]

    def unlink(self, patient: str) -> int:
        """Erase every link of ``patient``; the number of identifiers erased."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(patient_links)
                                    .where(patient_links.c.patient == patient)).rowcount)

    def unlink_lookups(self, lookups: Iterable[str]) -> None:
        """Undo links made by an import that was then refused (all or nothing)."""
        wanted = list(lookups)
        if wanted:
            with self.engine.begin() as conn:
                conn.execute(delete(patient_links).where(patient_links.c.lookup.in_(wanted)))
