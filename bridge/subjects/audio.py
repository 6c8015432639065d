"""Which audio a subject's export carries (bridge/privacy/rights.py): of a
two-channel recording only the subject's own channel, as a mono WAV; a
recording holding both voices on one channel is withheld unless asked for,
and then stated. Every recording left out is listed with its reason."""
from __future__ import annotations

import struct
import sys
import uuid
from array import array
from dataclasses import dataclass
from itertools import chain
from typing import Iterator

from bridge.logs import get_logger
from bridge.privacy.crypto import CryptoError
from bridge.privacy.rights import MIXED_AUDIO, STATED_MIXED, WITHHELD_MIXED, own_channel, withheld_recording
from bridge.privacy.subject_access import SubjectHoldings
from bridge.recordings.reading import AudioUnavailable, StoredAudio, open_audio
from bridge.recordings.stereo import StereoMismatch
from bridge.sessions.caller_id import caller_of, role_of

log = get_logger("bridge.subjects")
AudioState = tuple[str, str | None]  # (AUDIO_STATES value, file in the zip)


@dataclass(frozen=True)
class OwnChannel:
    """One channel of a stored two-channel recording (16-bit PCM, as
    bridge/recordings/stereo.py writes it), streamed as a mono WAV."""

    source: StoredAudio
    channel: int  # 0 left (the caller), 1 right (the counterpart)

    def pieces(self) -> Iterator[bytes]:
        """Blocking, a chunk at a time: every other sample of the stereo data."""
        stereo = self.source.pieces()
        head = b""
        for piece in stereo:
            head += piece
            if (at := head.find(b"data", 12)) >= 0 and len(head) >= at + 8:
                break
        else:
            raise StereoMismatch("no data in the two-channel recording")
        channels, rate = struct.unpack_from("<HI", head, 22)
        if channels != 2:
            raise StereoMismatch("not a two-channel WAV")
        size = struct.unpack_from("<I", head, at + 4)[0] // 4 * 2
        yield struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2,
                          2, 16, b"data", size)
        carry, left = head[at + 8:], size
        for piece in chain([b""], stereo):
            carry += piece
            usable = len(carry) - len(carry) % 4
            samples = array("h", carry[:usable])
            carry = carry[usable:]
            if sys.byteorder == "big":  # WAV is little-endian
                samples.byteswap()
            mono = samples[self.channel::2]
            if sys.byteorder == "big":
                mono.byteswap()
            out = mono.tobytes()[:left]
            left -= len(out)
            if out:
                yield out


@dataclass
class AudioChoice:
    states: dict[uuid.UUID, AudioState]
    sources: list[tuple[str, StoredAudio | OwnChannel]]
    withheld: list[dict]  # withheld.json's recordings
    statements: list[dict]  # what is included although it is not the subject's alone


def subject_channel(holdings: SubjectHoldings, recording: dict) -> int | str:
    """The subject's channel of `recording`, or MIXED_AUDIO when it cannot be separated."""
    calls = {c["id"]: c for c in holdings.calls}
    sessions = {s.id: s for s in holdings.sessions}
    call = calls.get(recording["call_id"])
    session = sessions.get(recording.get("session_id"))
    if call is None or session is None:
        return MIXED_AUDIO
    channel = own_channel(call.get("recording_channels") or 1, caller_of(call.get("direction")),
                          role_of(session, holdings.subject))
    return MIXED_AUDIO if channel is None else channel


async def choose_audio(store, holdings: SubjectHoldings, include_audio: bool,
                       include_mixed: bool = False) -> AudioChoice:
    choice = AudioChoice({}, [], [], [])
    if not include_audio:
        return choice
    for row in holdings.recordings:
        channel = subject_channel(holdings, row)
        if channel == MIXED_AUDIO and not include_mixed:
            choice.states[row["id"]] = ("withheld", None)
            choice.withheld.append(withheld_recording(row["id"], WITHHELD_MIXED))
            continue
        try:
            source = await open_audio(store, row)
        except AudioUnavailable as exc:
            choice.states[row["id"]] = (exc.reason, None)
            continue
        except CryptoError as exc:  # its key does not open: say so rather than fail the whole export
            log.error("recording.unreadable", recording_id=str(row["id"]), error=type(exc).__name__)
            choice.states[row["id"]] = ("unreadable", None)
            continue
        if channel == MIXED_AUDIO:
            name = f"audio/{row['id']}.{row['format']}"
            choice.states[row["id"]] = ("included", name)
            choice.sources.append((name, source))
            choice.statements.append({"item": "recording", "id": str(row["id"]), "statement": STATED_MIXED})
            continue
        name = f"audio/{row['id']}.own-channel.wav"
        choice.states[row["id"]] = ("own_channel", name)
        choice.sources.append((name, OwnChannel(source, int(channel))))
        choice.withheld.append(withheld_recording(
            row["id"], "the other party's channel of this two-channel recording (PDPA s21(3)(c))"))
    return choice
