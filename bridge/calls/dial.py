"""Dialing a party: a leg created in our app that shows only the virtual
number, and the wait for its outcome, with the ring timeout kept ours.
The inbound flow dials the counterpart this way; click-to-call, both parties."""
from __future__ import annotations

from typing import Callable

from bridge.ari import Event
from bridge.calls.deps import CallDeps, CallState
from bridge.calls.events import GONE_EVENTS, CallEvents
from bridge.calls.legs import wait_in_stasis


async def dial_masked(deps: CallDeps, events: CallEvents, channel_id: str, number: str, virtual_number: str,
                      app_args: str, originator: str | None) -> None:
    """Create a leg to `number` in our app, showing only the virtual number, and dial it."""
    events.watch(channel_id)
    await deps.ari.create_channel(
        endpoint=f"PJSIP/{number}@{deps.settings.outbound_endpoint}", channel_id=channel_id, app_args=app_args,
        originator=originator, variables=masked_identity(virtual_number, deps.presentation),
    )
    await wait_in_stasis(events, channel_id, stop_if_gone=(originator,) if originator else ())
    # No `caller=` on dial: Asterisk would copy the caller's identity into
    # the new leg's connected line, which chan_pjsip sends as From and PAI.
    # No Asterisk timeout either: on expiry it hangs the leg up with cause 32
    # and no NOANSWER event, so the ring timeout is ours (`wait_for_dial`).
    await deps.ari.dial(channel_id)


def masked_identity(virtual_number: str, presentation: str = "") -> dict[str, str]:
    """Channel variables that make the counterpart see only the virtual number.

    chan_pjsip builds an outbound INVITE's From and P-Asserted-Identity from
    the channel's connected line, so both caller ID and connected line are set;
    a restricted `presentation` makes From anonymous with "Privacy: id".
    """
    identity = {
        "CALLERID(num)": virtual_number, "CALLERID(name)": virtual_number,
        "CONNECTEDLINE(num)": virtual_number, "CONNECTEDLINE(name)": virtual_number,
    }
    if presentation:
        identity["CONNECTEDLINE(pres)"] = presentation
    return identity


async def wait_for_answer(events: CallEvents, call: CallState, timeout: float,
                          on_ringing: Callable[[], None]) -> Event | None:
    """The final Dial event for the counterpart's leg, or None (caller left, or
    nobody answered within `timeout`: the ring timeout)."""
    return await wait_for_dial(events, call.callee_id, timeout, on_ringing, stop_if_gone=(call.caller_id,))


async def wait_for_dial(events: CallEvents, leg_id: str, timeout: float, on_ringing: Callable[[], None],
                        stop_if_gone: tuple[str, ...] = ()) -> Event | None:
    """The final Dial event for a dialed leg, or None (a leg in `stop_if_gone`
    left, or nobody answered within `timeout`: the ring timeout)."""
    ringing_noted = False

    def final_dial(event: Event) -> bool:
        nonlocal ringing_noted
        if event.type == "Dial" and event.peer_id == leg_id:
            if event.dialstatus in ("RINGING", "PROGRESS") and not ringing_noted:
                ringing_noted = True
                on_ringing()
            return event.dialstatus not in ("", None, "RINGING", "PROGRESS", "PROCEEDING")
        # The leg died without a final Dial event.
        return event.type in GONE_EVENTS and event.channel is not None and event.channel.id == leg_id

    event = await events.wait_for(final_dial, timeout, stop_if_gone=stop_if_gone)
    if event is not None and event.type != "Dial":
        return Event(type="Dial", dialstatus="", peer_id=leg_id)
    return event
