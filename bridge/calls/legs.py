"""A call's channels, one at a time: waiting until one we created is in
Stasis, playing a prompt to one, and releasing them, each once and with a
cause that says why, so that nothing of a call outlives it in Asterisk."""
from __future__ import annotations

from bridge.ari import AriClient, AriError, AriNotFound
from bridge.calls import media
from bridge.calls.decisions import Ending, sound_uris
from bridge.calls.deps import CallAborted, CallState
from bridge.calls.events import CallEvents
from bridge.logs import get_logger

log = get_logger("bridge.calls")

PROMPT_LIMIT = 30.0  # seconds a rejection prompt may take before we release anyway
LEG_SETUP_LIMIT = 5.0  # seconds a leg we created may take to enter Stasis


async def wait_in_stasis(events: CallEvents, channel_id: str, stop_if_gone: tuple[str, ...] = ()) -> None:
    """A channel we created enters Stasis asynchronously; ARI refuses most
    operations on it (409) until it has."""
    entered = await events.wait_for(
        lambda e: e.type == "StasisStart" and e.channel is not None and e.channel.id == channel_id,
        LEG_SETUP_LIMIT, stop_if_gone=stop_if_gone,
    )
    if entered is None:
        raise CallAborted(f"channel {channel_id} did not enter Stasis")


async def play_to_end(ari: AriClient, events: CallEvents, call: CallState, channel_id: str, prompt: str) -> None:
    """Play `prompt` to a channel and wait until it is over or the channel hangs up."""
    playback_id = await media.play(ari, call, channel_id, sound_uris(prompt))
    await events.wait_for(
        lambda e: e.type in ("PlaybackFinished", "PlaybackFailed") and e.playback_id == playback_id,
        PROMPT_LIMIT, stop_if_gone=(channel_id,),
    )
    media.ended(call, channel_id, playback_id)


async def release_with_prompt(ari: AriClient, events: CallEvents, call: CallState, ending: Ending,
                              early_media: bool = True) -> None:
    """Play the prompt, then release with the ending's cause. As early media
    unless the caller is already answered (a click-to-call's first party), so
    a caller is never answered, and billed, just to hear why not. Whatever
    played before (notice, ringback, wait audio, PIN request) stops first:
    the prompt would queue behind it."""
    try:
        await media.silence(ari, call, call.caller_id)
        if early_media:
            await ari.progress(call.caller_id)
        await play_to_end(ari, events, call, call.caller_id, ending.prompt)
    except AriError:
        pass  # the caller hung up during the prompt
    if not events.is_gone(call.caller_id):
        await hangup_leg(ari, call, call.caller_id, ending.cause)


async def hangup_leg(ari: AriClient, call: CallState, channel_id: str | None, cause: int | None = None) -> None:
    """Hang up one of the call's legs, once."""
    if not channel_id or channel_id in call.released:
        return
    try:
        await ari.hangup(channel_id, cause)
        call.released.add(channel_id)
    except AriNotFound:
        call.released.add(channel_id)
    except AriError as exc:
        log.warning("call.hangup_failed", channel_id=channel_id, status=exc.status)


async def release_everything(ari: AriClient, call: CallState, events: CallEvents, cause: int | None = None) -> None:
    """Whatever path the call took, leave nothing of it in Asterisk."""
    for channel_id in (call.snoop_id, call.callee_snoop_id, call.callee_id, call.caller_id):
        if channel_id and not events.is_gone(channel_id) and channel_id not in call.released:
            await hangup_leg(ari, call, channel_id, cause)
    if call.bridge_id:
        try:
            await ari.destroy_bridge(call.bridge_id)
        except AriError:
            pass
