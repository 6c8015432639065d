"""Click-to-call against the fake ARI of test_flow: which legs it creates, in which order, and what each hears."""
from __future__ import annotations

import asyncio
import dataclasses
import uuid

from bridge.ari import EventRouter
import pytest

from bridge.api.calls import connect_request
from bridge.api.errors import ApiError
from bridge.calls import ids
from bridge.calls.connect import ConnectRequest, connect_call, connect_row
from bridge.calls.deps import CallDeps
from bridge.config import Settings
from bridge.sessions.models import RouteLookup
from tests.unit.test_flow import FakeAri, FakeStore, live_session


async def run_connect(outcomes: list[str], first: str = "a", ring_timeouts: tuple[int, int] = (2, 2),
                      **session_fields) -> tuple[FakeAri, dict, dict]:
    """Returns the fake ARI, the call row as finally written, and the row as inserted before the call."""
    router = EventRouter(lambda event: None)
    ari, store = FakeAri(router), FakeStore(RouteLookup(number_in_pool=True, sessions=()))
    ari.answer_dial_with = outcomes
    deps = CallDeps(ari=ari, store=store, router=router, settings=Settings(dial_timeout=2))
    session = dataclasses.replace(live_session(), **session_fields)
    request = ConnectRequest(first=first, first_ring_timeout_seconds=ring_timeouts[0],
                             second_ring_timeout_seconds=ring_timeouts[1], custom_field="ticket-42")
    row = connect_row(uuid.uuid4(), session, request, "node")
    await asyncio.wait_for(connect_call(deps, session, request, row), 10)
    return ari, {**row, **store.final()}, row


def creates(ari: FakeAri) -> list[tuple]:
    return [r for r in ari.requests if r[0] == "create"]


async def test_the_first_party_is_called_then_the_second_both_showing_only_the_virtual_number():
    ari, final, row = await run_connect(["ANSWER", "ANSWER"], first="b")
    first_leg = row["caller_channel_id"]

    (_, first_id, first_endpoint, first_vars), (_, second_id, second_endpoint, second_vars) = creates(ari)
    assert (first_id, first_endpoint, second_endpoint) == \
        (first_leg, "PJSIP/+6598765432@carrier-out", "PJSIP/+6591234567@carrier-out")
    assert set(first_vars.values()) == set(second_vars.values()) == {"+6560000001"}
    assert all(r[2] is None for r in ari.requests if r[0] == "dial"), "dial?caller= would copy an identity"
    connecting = ("play", first_leg, ("sound:pls-hold-while-try",))
    bridged = ("add", ids.bridge(row["call_id"]), (first_leg, second_id))
    order = [connecting, ("ring", first_leg), creates(ari)[1], ("ring_stop", first_leg), bridged]
    assert [ari.requests.index(r) for r in order] == sorted(ari.requests.index(r) for r in order)
    assert ("answer", first_leg) not in ari.requests and ("progress", first_leg) not in ari.requests
    assert (final["disposition"], final["hangup_by"], final["direction"]) == ("answered", "caller", "b_to_a")
    assert final["caller_answered_at"] <= final["answered_at"]


async def test_a_busy_first_party_means_nobody_else_is_called_and_nothing_is_played():
    ari, final, _ = await run_connect(["BUSY"])

    assert len(creates(ari)) == 1 and not any(r[0] == "play" for r in ari.requests)
    assert final["disposition"] == "busy" and "caller_answered_at" not in final


async def test_a_second_party_not_answering_gives_the_first_the_prompt_then_a_hangup():
    ari, final, row = await run_connect(["ANSWER", "NOANSWER"])
    first_leg = row["caller_channel_id"]

    prompt = [r for r in ari.requests if r[0] == "play"][-1]
    assert prompt == ("play", first_leg, ("sound:number-not-answering", "sound:please-try-call-later"))
    assert ari.hangups_of(first_leg) == [("hangup", first_leg, 19)]
    assert ari.requests.index(prompt) < ari.requests.index(ari.hangups_of(first_leg)[0])
    assert (final["disposition"], final["hangup_by"]) == ("no_answer", "system") and "answered_at" not in final


async def test_the_first_party_hears_the_sessions_wait_audio_then_ringback_while_the_second_rings():
    audio_id = uuid.uuid4()
    ari, final, row = await run_connect(["ANSWER", "ANSWER"], wait_audio_id=audio_id)
    first_leg = row["caller_channel_id"]

    waiting = ("play", first_leg, (f"sound:masking/wait/{audio_id}", "tone:ring"))
    connecting = ("play", first_leg, ("sound:pls-hold-while-try",))
    stopped = next(r for r in ari.requests if r[0] == "stop_playback")
    bridged = next(r for r in ari.requests if r[0] == "add")
    order = [connecting, waiting, creates(ari)[1], stopped, bridged]
    assert [ari.requests.index(r) for r in order] == sorted(ari.requests.index(r) for r in order)
    assert not any(r[0] in ("ring", "ring_stop") for r in ari.requests), "plain ringback instead of the wait audio"
    assert final["disposition"] == "answered"


# -- ring timeouts, one per leg ------------------------------------------------------------
# "RINGING" as a leg's outcome: it rings until the service gives up on it.

async def test_the_first_legs_ring_timeout_ends_a_first_party_who_rings_on_and_nobody_else_is_called():
    ari, final, _ = await run_connect(["RINGING"], ring_timeouts=(1, 300))

    assert len(creates(ari)) == 1
    assert (final["disposition"], final["dial_status"]) == ("no_answer", "NOANSWER")
    assert "caller_answered_at" not in final


async def test_the_second_legs_ring_timeout_ends_a_second_party_who_rings_on():
    ari, final, _ = await run_connect(["ANSWER", "RINGING"], ring_timeouts=(300, 1))

    assert len(creates(ari)) == 2
    assert (final["disposition"], final["dial_status"]) == ("no_answer", "NOANSWER")
    assert final["caller_answered_at"] and "answered_at" not in final


@pytest.mark.parametrize("body, timeouts", [
    ({}, (30, 30)),
    ({"ring_timeout_seconds": 20}, (20, 20)),
    ({"ring_timeout_seconds": 20, "first_ring_timeout_seconds": 5}, (5, 20)),
    ({"second_ring_timeout_seconds": 45}, (30, 45)),
    ({"first_ring_timeout_seconds": 1, "second_ring_timeout_seconds": 300}, (1, 300)),
])
def test_each_leg_rings_for_its_own_timeout_or_the_shared_one_or_the_dial_timeout(body, timeouts):
    request = connect_request({"from": "a", **body}, Settings(dial_timeout=30))

    assert (request.first_ring_timeout_seconds, request.second_ring_timeout_seconds) == timeouts


def test_the_default_ring_timeout_is_capped_at_the_apis_maximum():
    request = connect_request({"from": "b"}, Settings(dial_timeout=900))

    assert (request.first_ring_timeout_seconds, request.second_ring_timeout_seconds) == (300, 300)


@pytest.mark.parametrize("field, value, message", [
    ("first_ring_timeout_seconds", 0, "first_ring_timeout_seconds must be between 1 and 300"),
    ("second_ring_timeout_seconds", 301, "second_ring_timeout_seconds must be between 1 and 300"),
    ("first_ring_timeout_seconds", "10", "first_ring_timeout_seconds must be an integer"),
    ("second_ring_timeout_seconds", True, "second_ring_timeout_seconds must be an integer"),
    ("second_ring_timeout_seconds", None, "second_ring_timeout_seconds must be an integer"),
    ("first_ring_timeout_seconds", 2.5, "first_ring_timeout_seconds must be an integer"),
    ("ring_timeout_seconds", -1, "ring_timeout_seconds must be between 1 and 300"),
])
def test_a_bad_ring_timeout_is_refused_naming_its_field(field, value, message):
    with pytest.raises(ApiError) as refused:
        connect_request({"from": "a", field: value}, Settings(dial_timeout=30))

    assert (refused.value.status, refused.value.code, refused.value.field, refused.value.message) == \
        (422, "invalid_field", field, message)
