"""Two-channel recordings on real calls: the caller's voice on the left
channel, the counterpart's on the right, told apart by who played audio."""
from __future__ import annotations

import asyncio
import io
import wave

import pytest

from bridge.recordings.stereo import split
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.integration.conftest import new_parties, wait_for_call_row
from tests.integration.test_masked_call import assert_no_leftovers, sealed_audio
from tests.support.rtp import rms

SPEAKS = '<nop><action><exec play_pcap_audio="pcap/g711a.pcap"/></action></nop>'


def two_channel_session(stack):
    parties = new_parties(stack, add_session=False)

    async def create():
        store = await Store.connect(stack.dsn, stack.keys)
        try:
            await store.sessions.create(SessionRequest(parties.a, parties.b, ttl_seconds=600, record=True,
                                                      purpose="delivery_order", recording_channels=2,
                                                      virtual_number=parties.virtual_number))
        finally:
            await store.close()

    asyncio.run(create())
    return parties


@pytest.mark.parametrize("speaker", ["caller", "counterpart"])
def test_each_party_is_on_its_own_channel_of_the_recording(stack, place_call, speaker):
    parties = two_channel_session(stack)
    if speaker == "caller":  # the caller plays speech, the counterpart is silent (no echo)
        call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", uas_args=(), talk_ms=4000)
    else:  # the counterpart plays speech, the caller sends nothing
        call = place_call(parties.a, parties.virtual_number, uac="uac_silent.xml", uas="uas_notice.xml",
                          uas_values={"after_answer": SPEAKS}, uas_args=(), talk_ms=4000)
    assert call.caller.succeeded, call.caller.output

    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    assert row["recording_channels"] == 2
    audio = sealed_audio(stack, row["recording"])
    with wave.open(io.BytesIO(audio)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
    left, right = (rms(channel.samples) for channel in split(audio))
    loud, quiet = (left, right) if speaker == "caller" else (right, left)
    assert loud > 200 and quiet < loud / 4, (left, right)
    assert_no_leftovers(stack)
