"""A data subject's export: read everything held about a number, audit the
export, write the zip (see `subject_access.py` for what it holds; its
`disclosed_to.json` is derived from the disclosure ledger, bridge/privacy/ledger.py).

The `subject.exported` row is written after the data is read and before any
byte of the zip: an export that cannot be audited is not made, and each export
appears in the next one's disclosure log, not in its own. An export answering
a request writes that row only while the request is open (checked with its
row locked), so a request closed meanwhile is refused before anything is
audited or written, never after.
"""
from __future__ import annotations

import asyncio
import hashlib
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from bridge.logs import get_logger
from bridge.numbering import mask_number
from bridge.privacy.audit import Actor
from bridge.privacy.ledger import disclosed_to
from bridge.privacy.rights import IdentityNotVerified, split_disclosures, withheld_disclosure
from bridge.privacy.subject_access import (
    DISCLOSURE_WINDOW, RequestNotOpen, SubjectHoldings, documents, encode, manifest,
)
from bridge.recordings.reading import StoredAudio
from bridge.subjects.audio import AudioChoice, OwnChannel, choose_audio

log = get_logger("bridge.subjects")
EXPORTABLE_KINDS = ("access",)  # a correction request is answered by carrying it out (bridge/subjects/correct.py)


@dataclass(frozen=True)
class ExportSummary:
    generated_at: datetime
    counts: dict[str, int]
    files: list[str]
    request_id: uuid.UUID | None
    request_done: bool | None = None  # False: the request was closed by someone else while this was written


async def read_holdings(store, subject: str, now: datetime) -> SubjectHoldings:
    subject_hash = store.keys.lookup_hash(subject)
    hashes = store.keys.kept_hashes(subject)  # rows under an older lookup key too (rotation)
    sessions = await store.subjects.sessions(hashes)
    ids = [s.id for s in sessions]
    calls, recordings = await store.subjects.calls_and_recordings(ids)
    disclosures = await store.subjects.disclosures(hashes, ids, now - DISCLOSURE_WINDOW)
    return SubjectHoldings(subject, subject_hash, tuple(sessions), tuple(calls), tuple(recordings),
                           tuple(disclosures), tuple(h for h in hashes if h != subject_hash))


async def export_subject(store, subject: str, out: IO[bytes], by: Actor, now: datetime,
                         include_audio: bool = False, request_id: uuid.UUID | None = None,
                         include_mixed_audio: bool = False) -> ExportSummary:
    """Write the zip of everything held about `subject` (E.164) to `out`; with
    `request_id`, refuse it unless that request is open and its requester's
    identity checked when the export is audited (RequestNotOpen,
    IdentityNotVerified, before any byte), and mark it done once the zip is
    written (unless someone closed it meanwhile: `request_done` False).
    Audio: the subject's own channel only; a mixed recording only with
    `include_mixed_audio`, stated (bridge/subjects/audio.py)."""
    if request_id is not None:
        request = await store.subjects.open_request_for(request_id, subject, EXPORTABLE_KINDS)
        if request.verified_at is None:
            raise IdentityNotVerified("the requester's identity has not been verified: record the check first"
                                      " (masking subject request verify)")
    holdings = await read_holdings(store, subject, now)
    choice = await choose_audio(store, holdings, include_audio, include_mixed_audio)
    docs = {name: encode(doc) for name, doc in documents(holdings, now, choice.states).items()}
    _, withheld_rows = split_disclosures(holdings.disclosures, {holdings.subject_hash, *holdings.older_hashes},
                                         {str(s.id) for s in holdings.sessions})
    docs["withheld.json"] = encode(withheld_document(choice))
    # Who the ledger says received the subject's data in the past year (bridge/privacy/ledger.py);
    # never a legal hold or a disclosure to law enforcement (PDPA s21(4), bridge/privacy/rights.py).
    shown = [e for e in holdings.disclosures if withheld_disclosure(e) is None]
    docs["disclosed_to.json"] = encode(disclosed_to(shown, {holdings.subject_hash, *holdings.older_hashes},
                                                        now - DISCLOSURE_WINDOW))
    counts = {"sessions": len(holdings.sessions), "calls": len(holdings.calls),
              "recordings": len(holdings.recordings), "audio_files": len(choice.sources),
              "disclosures": len(holdings.disclosures) - len(withheld_rows)}
    await store.subjects.audit_export(by, mask_number(subject), holdings.subject_hash,
                                     {"counts": counts, "include_audio": include_audio,
                                      "include_mixed_audio": include_mixed_audio,
                                      "session_ids": [str(s.id) for s in holdings.sessions],
                                      "request_id": str(request_id) if request_id else None,
                                      "withheld": choice.withheld + withheld_rows},
                                     request_id, EXPORTABLE_KINDS,
                                     [holdings.subject_hash, *holdings.older_hashes])
    files = await asyncio.to_thread(_write_zip, out, subject, now, docs, choice.sources, counts, request_id)
    request_done = None
    if request_id is not None:
        try:
            await store.subjects.complete_request(request_id, by, "done", details={"answered_by": "subject.exported"})
            request_done = True
        except RequestNotOpen:  # closed by someone else once this export was audited: the export stands
            log.warning("subject.request_closed_meanwhile", request_id=str(request_id))
            request_done = False
    return ExportSummary(now, counts, files, request_id, request_done)


def withheld_document(choice: AudioChoice) -> dict:
    """withheld.json: what the subject does not get, and why; what they get
    although it is not theirs alone, stated. (Disclosures PDPA s21(4) keeps
    from them are recorded in the export's audit row, not named here.)"""
    return {"withheld": choice.withheld, "statements": choice.statements}


def _write_zip(out: IO[bytes], subject: str, now: datetime, docs: dict[str, bytes],
               sources: list[tuple[str, StoredAudio | OwnChannel]], counts: dict[str, int],
               request_id: uuid.UUID | None) -> list[str]:
    """Blocking: the JSON documents, the decrypted audio (hashed as it goes), the manifest last."""
    listed: dict[str, bytes | tuple[int, str]] = dict(docs)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in docs.items():
            archive.writestr(name, content)
        for name, source in sources:
            digest, size = hashlib.sha256(), 0
            # WAV barely deflates: stored, so a large export costs no CPU to pack.
            with archive.open(zipfile.ZipInfo(name, date_time=now.timetuple()[:6]), "w",
                              force_zip64=True) as member:
                for piece in source.pieces():
                    member.write(piece)
                    digest.update(piece)
                    size += len(piece)
            listed[name] = (size, digest.hexdigest())
        archive.writestr("manifest.json", encode(manifest(subject, now, listed, counts, request_id)))
    return ["manifest.json", *sorted(listed)]
