"""PIN entry on a shared (pin_mode) number: which session the caller means.

The caller hears the PIN request and keys the digits; the first digit cuts
the prompt short. An entry ends at the configured length, on `#`, or after
`pin_digit_timeout` seconds without a digit (so a silent caller is asked
again, then released, never left in dead air). A wrong PIN is said to be
wrong and asked again; after the last attempt the call is rejected with
`invalid_pin` (the flow plays the closing prompt and releases with 403).

`ask_for_pin` is that dialogue for either path: the ARI flow collects digits
from `ChannelDtmfReceived` events (`collect_pin`), the FastAGI fallback with
AGI commands (bridge/agi/pin.py); the decisions are bridge/sessions/pins.py's.

All of it runs in early media (183 Session Progress, not answered, so the
caller is not billed for typing a PIN). That works because Asterisk passes
RFC 4733 (RFC 2833) telephone-events received in early media to ARI as
`ChannelDtmfReceived`, as the recording notice's opt-out digit already relies
on; SIP INFO DTMF arrives the same way (res_pjsip_dtmf_info) on an early
dialog. The digits are a credential: they are never logged.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from bridge.ari import AriClient
from bridge.calls import media
from bridge.calls.decisions import sound_uris
from bridge.calls.deps import CallDeps, CallState
from bridge.calls.events import CallEvents
from bridge.calls.record import CallRow
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.sessions.pin_guard import GuardLimits, refused
from bridge.sessions.pins import AskAgain, PinRoute, WrongPin, after_entry, pin_entered, pin_prompt, resolve_pin_route
from bridge.sessions.resolve import Connect, Reject, RejectReason
from bridge.store import Store
from bridge.store.errors import StoreUnavailable

PROMPT_LIMIT = 30.0  # seconds the PIN request may take before the digit timeout starts anyway

# Plays a prompt and returns the entry keyed after it ('' if none), or None if the caller hung up.
Collect = Callable[[str], Awaitable[str | None]]


async def route_by_pin(deps: CallDeps, events: CallEvents, row: CallRow, call: CallState, virtual_number: str,
                       caller_number: str | None, clog) -> Connect | Reject | None:
    """The ARI path's PIN entry. None: the caller hung up meanwhile (the row
    then says `cancelled`)."""
    settings = deps.settings
    await deps.ari.progress(call.caller_id)

    async def collect(prompt: str) -> str | None:
        return await collect_pin(deps.ari, events, call, prompt, settings.pin_length, settings.pin_digit_timeout)

    route = await ask_for_pin(collect, deps.store, settings, virtual_number, caller_number, row, clog)
    if route is None:
        row.update(disposition="cancelled", ended_at=utcnow(), hangup_by="caller",
                   caller_hangup_cause=events.gone.get(call.caller_id))
    return route


async def ask_for_pin(collect: Collect, store: Store, settings: Settings, virtual_number: str,
                      caller_number: str | None, row: CallRow, clog) -> Connect | Reject | None:
    """Ask for PINs until one names a session this caller may use, a session
    that ended, or the attempts run out. None: the caller hung up meanwhile.
    A caller (or, for strangers, a number) locked out for guessing across
    calls is not asked at all, and a wrong PIN that earns the lockout ends
    the asking (`pin_locked`)."""
    limits = guard_limits(settings)
    try:
        caller_count, number_count, holds = await store.pin_failures.counts(caller_number, virtual_number)
    except StoreUnavailable:
        return Reject(RejectReason.DATABASE_UNAVAILABLE)
    if refused(caller_count, number_count, holds, utcnow()):
        row.update(pin_attempts=0)
        clog.warning("call.pin_locked", before_entry=True)
        return Reject(RejectReason.PIN_LOCKED)
    prompt, attempt = pin_prompt(settings.prompts), 0
    while True:
        attempt += 1
        digits = await collect(prompt)
        row.update(pin_attempts=attempt if digits is not None else attempt - 1)
        if digits is None:
            clog.info("call.cancelled", during="pin", attempt=attempt)
            return None
        route = await pin_route(store, virtual_number, caller_number, digits)
        clog.info("call.pin_entered", attempt=attempt, entered=bool(digits),
                  outcome="wrong" if isinstance(route, WrongPin) else
                  "connect" if isinstance(route, Connect) else route.reason.value)
        if isinstance(route, WrongPin) and digits and await locked_out(store, caller_number, virtual_number,
                                                                        holds, limits):
            clog.warning("call.pin_locked", attempt=attempt)
            return Reject(RejectReason.PIN_LOCKED)
        if isinstance(route, Connect):
            await forget_failures(store, caller_number)
        step = after_entry(route, attempt, settings.pin_attempts, digits)
        if isinstance(step, AskAgain):
            prompt = pin_prompt(settings.prompts, step)
            continue
        if isinstance(step, Connect):
            row.update(session_id=step.session.id, direction=step.direction,
                       time_limit_seconds=step.session.time_limit_seconds)
        elif step.session:
            row.update(session_id=step.session.id)
        return step


def guard_limits(settings: Settings) -> GuardLimits:
    return GuardLimits(settings.pin_caller_failures, settings.pin_number_failures,
                       settings.pin_failure_window_seconds, settings.pin_lockout_seconds)


async def locked_out(store: Store, caller_number: str | None, virtual_number: str, holds: bool,
                     limits: GuardLimits) -> bool:
    """Count a wrong PIN across calls; True once it earned a lockout. A
    database that cannot count it now does not stop this call's tries."""
    now = utcnow()
    try:
        caller_count, number_count = await store.pin_failures.record(caller_number, virtual_number, limits, now)
    except StoreUnavailable:
        return False
    return refused(caller_count, number_count, holds, now)


async def forget_failures(store: Store, caller_number: str | None) -> None:
    try:
        await store.pin_failures.clear_caller(caller_number)
    except StoreUnavailable:
        pass


async def pin_route(store: Store, virtual_number: str, caller_number: str | None, digits: str) -> PinRoute:
    """Where an entry leads; an empty one names no session."""
    if not digits:
        return WrongPin()
    try:
        return resolve_pin_route(await store.pins.lookup(virtual_number, digits), caller_number, digits, utcnow())
    except StoreUnavailable:
        return Reject(RejectReason.DATABASE_UNAVAILABLE)


async def collect_pin(ari: AriClient, events: CallEvents, call: CallState, prompt: str, length: int,
                      digit_timeout: float) -> str | None:
    """Play `prompt` to the caller and collect one entry: the digits keyed
    ('' if none), or None if the caller hung up."""
    channel_id = call.caller_id
    playback_id = await media.play(ari, call, channel_id, sound_uris(prompt))
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
            media.ended(call, channel_id, playback_id)
            continue
        if playing:
            await media.stop(ari, call, channel_id, playback_id)
            playing = False
        digits, complete = pin_entered(digits, event.digit or "", length)
        if complete:
            break
    if playing:
        await media.stop(ari, call, channel_id, playback_id)
    return digits
