"""What a leg hears before it is bridged, kept in the call's state.

Until the counterpart answers, the caller hears what we play (the recording
notice, ringback or the session's wait audio, the PIN request, a prompt) or
the ringing we indicate. ARI queues playbacks on a channel: a prompt started
while an endless ringback plays would wait behind it and never be heard. So
every playback and ringing indication goes through here into
`CallState.playing` and `CallState.ringing`, and `silence` stops all of it on
a leg before whatever must be heard next: an ending prompt, or the other party.
"""
from __future__ import annotations

import uuid

from bridge.ari import AriClient, AriError
from bridge.calls import ids
from bridge.calls.deps import CallState

RINGBACK = "tone:ring"  # the indications.conf tone of the country (MASKING_TONE_COUNTRY), until stopped


async def play(ari: AriClient, call: CallState, channel_id: str, media: list[str],
               playback_id: str | None = None) -> str:
    """Start playing `media` to a leg; returns the playback's id."""
    playback_id = playback_id or str(uuid.uuid4())
    call.playing.setdefault(channel_id, set()).add(playback_id)
    await ari.play(channel_id, media, playback_id)
    return playback_id


def ended(call: CallState, channel_id: str, playback_id: str) -> None:
    """A playback finished by itself: nothing left to stop."""
    call.playing.get(channel_id, set()).discard(playback_id)


async def stop(ari: AriClient, call: CallState, channel_id: str, playback_id: str) -> None:
    ended(call, channel_id, playback_id)
    try:
        await ari.stop_playback(playback_id)
    except AriError:
        pass  # over already, or the leg is gone


async def ringback(ari: AriClient, call: CallState, channel_id: str, wait_sound: str | None = None) -> None:
    """Ringback as in-band audio, after the session's wait audio if it has one.
    Once a caller has had early media (the notice), phones play the media
    stream, not their own ringing tone: without this the caller would hear
    dead air while the counterpart rings."""
    try:
        await play(ari, call, channel_id, [*([wait_sound] if wait_sound else []), RINGBACK], ids.ringback(call.id))
    except AriError:
        pass  # the caller just left: the wait for the counterpart sees it


async def ring(ari: AriClient, call: CallState, channel_id: str) -> None:
    """Indicate ringing: 180 Ringing to a caller not yet answered, a ringing
    tone to one who is (a click-to-call's first party)."""
    call.ringing.add(channel_id)
    await ari.ring(channel_id)


async def silence(ari: AriClient, call: CallState, channel_id: str) -> None:
    """Stop everything that plays or rings on a leg."""
    for playback_id in list(call.playing.pop(channel_id, ())):
        await stop(ari, call, channel_id, playback_id)
    if channel_id in call.ringing:
        call.ringing.discard(channel_id)
        try:
            await ari.ring_stop(channel_id)
        except AriError:
            pass  # the leg is gone
