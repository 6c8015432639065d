"""Click-to-call against the fake ARI of test_flow: which legs it creates, in which order, and what each hears."""
from __future__ import annotations

import asyncio
import dataclasses
import uuid

from bridge.ari import EventRouter
from bridge.calls import ids
from bridge.calls.connect import ConnectRequest, connect_call, connect_row
from bridge.calls.flow import CallDeps
from bridge.config import Settings
from bridge.sessions.models import RouteLookup
from tests.unit.test_flow import FakeAri, FakeStore, live_session


async def run_connect(outcomes: list[str], first: str = "a", **session_fields) -> tuple[FakeAri, dict, dict]:
    """Returns the fake ARI, the call row as finally written, and the row as inserted before the call."""
    router = EventRouter(lambda event: None)
    ari, store = FakeAri(router), FakeStore(RouteLookup(number_in_pool=True, sessions=()))
    ari.answer_dial_with = outcomes
    deps = CallDeps(ari=ari, store=store, router=router, settings=Settings(dial_timeout=2))
    session = dataclasses.replace(live_session(), **session_fields)
    request = ConnectRequest(first=first, ring_timeout_seconds=2, custom_field="ticket-42")
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
