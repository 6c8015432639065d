"""PIN entry on a shared (pin_mode) number: which session the caller means.

The caller hears the PIN request and keys the digits; the first digit cuts
the prompt short. An entry ends at the configured length, on `#`, or after
`pin_digit_timeout` seconds without a digit (so a silent caller is asked
again, then released, never left in dead air). A wrong PIN is said to be
wrong and asked again; after the last attempt the call is rejected with
`invalid_pin` (the flow plays the closing prompt and releases with 403).

All of it runs in early media (183 Session Progress, not answered, so the
caller is not billed for typing a PIN). That works because Asterisk passes
RFC 4733 (RFC 2833) telephone-events received in early media to ARI as
`ChannelDtmfReceived`, as the recording notice's opt-out digit already relies
on; SIP INFO DTMF arrives the same way (res_pjsip_dtmf_info) on an early
dialog. The digits are a credential: they are never logged.
"""
from __future__ import annotations

import uuid

from bridge.ari import AriClient, AriError
from bridge.calls.decisions import sound_uris
from bridge.calls.deps import CallDeps
from bridge.calls.events import CallEvents
from bridge.calls.record import CallRow
from bridge.clock import utcnow
from bridge.sessions.pins import WrongPin, pin_entered, resolve_pin_route
from bridge.sessions.resolve import Connect, Reject, RejectReason
from bridge.store.errors import StoreUnavailable

PROMPT_LIMIT = 30.0  # seconds the PIN request may take before the digit timeout starts anyway


async def route_by_pin(deps: CallDeps, events: CallEvents, row: CallRow, caller_id: str, virtual_number: str,
                       caller_number: str | None, clog) -> Connect | Reject | None:
    """Ask for PINs until one names a session this caller may use, a session
    that ended, or the attempts run out. None: the caller hung up meanwhile
    (the row then says `cancelled`)."""
    settings = deps.settings
    await deps.ari.progress(caller_id)
    prompt = settings.prompts.pin_request
    for attempt in range(1, settings.pin_attempts + 1):
        digits = await collect_pin(deps.ari, events, caller_id, prompt, settings.pin_length,
                                   settings.pin_digit_timeout)
        row.update(pin_attempts=attempt if digits is not None else attempt - 1)
        if digits is None:
            row.update(disposition="cancelled", ended_at=utcnow(), hangup_by="caller",
                       caller_hangup_cause=events.gone.get(caller_id))
            clog.info("call.cancelled", during="pin", attempt=attempt)
            return None
        route = WrongPin()
        if digits:
            try:
                route = resolve_pin_route(await deps.store.pins.lookup(virtual_number, digits), caller_number,
                                          digits, utcnow())
            except StoreUnavailable:
                route = Reject(RejectReason.DATABASE_UNAVAILABLE)
        clog.info("call.pin_entered", attempt=attempt, entered=bool(digits),
                  outcome="wrong" if isinstance(route, WrongPin) else
                  "connect" if isinstance(route, Connect) else route.reason.value)
        if isinstance(route, Connect):
            session = route.session
            row.update(session_id=session.id, direction=route.direction,
                       time_limit_seconds=session.time_limit_seconds)
            return route
        if isinstance(route, Reject):
            if route.session:
                row.update(session_id=route.session.id)
            return route
        prompt = settings.prompts.pin_request if not digits else \
            f"{settings.prompts.pin_invalid}&{settings.prompts.pin_request}"
    return Reject(RejectReason.INVALID_PIN)


async def collect_pin(ari: AriClient, events: CallEvents, channel_id: str, prompt: str, length: int,
                      digit_timeout: float) -> str | None:
    """Play `prompt` and collect one entry: the digits keyed ('' if none), or
    None if the caller hung up."""
    playback_id = str(uuid.uuid4())
    await ari.play(channel_id, sound_uris(prompt), playback_id)
    digits, playing = "", True
    while True:
        event = await events.wait_for(
            lambda e: (e.type in ("PlaybackFinished", "PlaybackFailed") and e.playback_id == playback_id)
            or (e.type == "ChannelDtmfReceived" and e.channel is not None and e.channel.id == channel_id),
            PROMPT_LIMIT if playing else digit_timeout, stop_if_gone=(channel_id,),
        )
        if event is None:
            if events.is_gone(channel_id):
                return None
            break  # no digit in time: the entry is what was keyed so far
        if event.type != "ChannelDtmfReceived":
            playing = False
            continue
        if playing:
            await _stop(ari, playback_id)
            playing = False
        digits, complete = pin_entered(digits, event.digit or "", length)
        if complete:
            break
    if playing:
        await _stop(ari, playback_id)
    return digits


async def _stop(ari: AriClient, playback_id: str) -> None:
    try:
        await ari.stop_playback(playback_id)
    except AriError:
        pass  # already over
