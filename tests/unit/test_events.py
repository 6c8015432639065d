"""ARI events: parsed into typed fields and routed to the call that owns them."""
import asyncio

from bridge.ari.events import EventRouter, parse_event

CHANNEL = {
    "id": "1764043000.12",
    "name": "PJSIP/carrier-in-00000001",
    "state": "Ring",
    "caller": {"number": "+6591234567", "name": ""},
    "dialplan": {"context": "masking-inbound", "exten": "+6561234567", "priority": 1},
}


def test_stasis_start_carries_the_channel_and_app_args():
    e = parse_event({"type": "StasisStart", "channel": CHANNEL, "args": ["callee", "call-1"]})
    assert e.type == "StasisStart"
    assert e.args == ("callee", "call-1")
    assert (e.channel.id, e.channel.name, e.channel.state) == ("1764043000.12", "PJSIP/carrier-in-00000001", "Ring")
    assert (e.channel.caller_number, e.channel.exten) == ("+6591234567", "+6561234567")


def test_channel_without_caller_or_dialplan_gets_empty_fields():
    e = parse_event({"type": "StasisStart", "channel": {"id": "c1"}})
    assert (e.channel.caller_number, e.channel.exten, e.args) == ("", "", ())


def test_dial_carries_the_peer_id_and_dialstatus():
    e = parse_event({"type": "Dial", "caller": CHANNEL, "peer": {**CHANNEL, "id": "call-1-callee"},
                     "dialstatus": "BUSY"})
    assert (e.peer_id, e.dialstatus) == ("call-1-callee", "BUSY")
    assert e.channel is None


def test_a_soft_hangup_requests_flag_is_not_taken_for_a_hangup_cause():
    e = parse_event({"type": "ChannelHangupRequest", "channel": CHANNEL, "cause": 32, "soft": True})
    assert e.cause is None and e.soft_hangup == 32


def test_a_hard_hangup_request_carries_its_cause_and_no_soft_flags():
    e = parse_event({"type": "ChannelHangupRequest", "channel": CHANNEL, "cause": 17})
    assert e.cause == 17 and e.soft_hangup is None


def test_channel_destroyed_carries_the_cause():
    e = parse_event({"type": "ChannelDestroyed", "channel": CHANNEL, "cause": 17, "cause_txt": "User busy"})
    assert e.cause == 17
    assert e.channel.id == "1764043000.12"


def test_recording_finished_names_the_recording_and_its_channel():
    e = parse_event({"type": "RecordingFinished",
                     "recording": {"name": "call-1", "target_uri": "channel:call-1-caller", "state": "done"}})
    assert (e.recording_name, e.target_id) == ("call-1", "call-1-caller")


def test_playback_finished_names_the_playback_and_its_channel():
    e = parse_event({"type": "PlaybackFinished",
                     "playback": {"id": "pb-1", "target_uri": "channel:1764043000.12", "state": "done"}})
    assert (e.playback_id, e.target_id, e.playback_state) == ("pb-1", "1764043000.12", "done")


def test_an_event_keeps_its_fields_not_its_json():
    """A call holds some events for its whole length: the decoded JSON is not kept with them."""
    e = parse_event({"type": "RecordingStarted", "timestamp": "2026-12-06T03:50:00.123+0000",
                     "recording": {"name": "call-1", "target_uri": "channel:call-1-caller"}})
    assert e.timestamp == "2026-12-06T03:50:00.123+0000"
    assert not any(isinstance(value, dict) for value in vars(e).values())


def test_media_on_a_bridge_has_no_target_channel():
    e = parse_event({"type": "RecordingFinished", "recording": {"name": "r", "target_uri": "bridge:b-1"}})
    assert e.target_id is None
    assert e.channel_ids == set()


def test_channel_ids_collect_channel_peer_and_target():
    e = parse_event({"type": "Dial", "channel": CHANNEL, "peer": {"id": "p"},
                     "playback": {"id": "pb", "target_uri": "channel:t"}})
    assert e.channel_ids == {"1764043000.12", "p", "t"}


def router():
    new = []
    return EventRouter(new.append), new


def test_event_for_a_registered_channel_goes_to_its_queue():
    r, new = router()
    q = asyncio.Queue()
    r.register("1764043000.12", q)
    e = parse_event({"type": "ChannelDestroyed", "channel": CHANNEL, "cause": 16})
    r.dispatch(e)
    assert q.get_nowait() is e
    assert new == []


def test_event_touching_two_channels_of_one_call_is_queued_once():
    r, _ = router()
    q = asyncio.Queue()
    r.register("call-1-caller", q)
    r.register("call-1-callee", q)
    r.dispatch(parse_event({"type": "Dial", "channel": {"id": "call-1-caller"}, "peer": {"id": "call-1-callee"}}))
    assert q.qsize() == 1


def test_event_touching_channels_of_two_calls_reaches_both():
    r, _ = router()
    q1, q2 = asyncio.Queue(), asyncio.Queue()
    r.register("a", q1)
    r.register("b", q2)
    r.dispatch(parse_event({"type": "Dial", "channel": {"id": "a"}, "peer": {"id": "b"}}))
    assert (q1.qsize(), q2.qsize()) == (1, 1)


def test_unowned_stasis_start_is_a_new_inbound_call():
    r, new = router()
    e = parse_event({"type": "StasisStart", "channel": CHANNEL})
    r.dispatch(e)
    assert new == [e]


def test_owned_stasis_start_is_not_a_new_call():
    r, new = router()
    q = asyncio.Queue()
    r.register("1764043000.12", q)
    r.dispatch(parse_event({"type": "StasisStart", "channel": CHANNEL}))
    assert new == [] and q.qsize() == 1


def test_unowned_events_of_other_types_are_dropped():
    r, new = router()
    r.dispatch(parse_event({"type": "ChannelDestroyed", "channel": CHANNEL}))
    r.dispatch(parse_event({"type": "PlaybackFinished", "playback": {"id": "p", "target_uri": "channel:x"}}))
    assert new == []


def test_unregistered_channel_gets_no_more_events():
    r, _ = router()
    q = asyncio.Queue()
    r.register("1764043000.12", q)
    r.unregister("1764043000.12")
    r.dispatch(parse_event({"type": "ChannelDestroyed", "channel": CHANNEL}))
    assert q.empty()
    assert not r.owns("1764043000.12")


# ARI's event types (Asterisk 22's Events REST API): a literal naming one in
# the bridge's code is an event the code reads, and Asterisk must send it.
ARI_EVENT_TYPES = {
    "ApplicationMoveFailed", "ApplicationRegistered", "ApplicationReplaced", "ApplicationUnregistered",
    "BridgeAttendedTransfer", "BridgeBlindTransfer", "BridgeCreated", "BridgeDestroyed", "BridgeMerged",
    "BridgeVideoSourceChanged", "ChannelCallerId", "ChannelConnectedLine", "ChannelCreated", "ChannelDestroyed",
    "ChannelDialplan", "ChannelDtmfReceived", "ChannelEnteredBridge", "ChannelHangupRequest", "ChannelHold",
    "ChannelLeftBridge", "ChannelStateChange", "ChannelTalkingFinished", "ChannelTalkingStarted",
    "ChannelToneDetected", "ChannelTransfer", "ChannelUnhold", "ChannelUserevent", "ChannelVarset",
    "ContactStatusChange", "DeviceStateChanged", "Dial", "EndpointStateChange", "PeerStatusChange",
    "PlaybackContinuing", "PlaybackFailed", "PlaybackFinished", "PlaybackStarted", "RecordingFailed",
    "RecordingFinished", "RecordingStarted", "StasisEnd", "StasisStart", "TextMessageReceived",
}


def test_every_event_type_the_code_names_is_one_the_service_asks_asterisk_for():
    from pathlib import Path
    import re

    from bridge.calls.events import EVENTS_USED

    named = set()
    for path in (Path(__file__).resolve().parents[2] / "bridge").rglob("*.py"):
        named |= set(re.findall(r"""["']([A-Z][A-Za-z]+)["']""", path.read_text())) & ARI_EVENT_TYPES
    assert named, "the scan found no event type at all"
    assert named <= EVENTS_USED, f"read by the code but filtered out: {sorted(named - EVENTS_USED)}"
    assert EVENTS_USED <= ARI_EVENT_TYPES


async def test_the_filter_is_asked_for_and_a_refusal_leaves_calls_working():
    from bridge.ari import AriError
    from bridge.calls.events import EVENTS_USED, ask_for_events_used

    class Ari:
        def __init__(self, refuse):
            self.refuse, self.asked = refuse, None

        async def filter_events(self, allowed):
            self.asked = set(allowed)
            if self.refuse:
                raise AriError(404, "PUT", "/applications/x/eventFilter")

    for refuse in (False, True):
        ari = Ari(refuse)
        await ask_for_events_used(ari)  # never raises
        assert ari.asked == EVENTS_USED
