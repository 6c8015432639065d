"""The recording notice: played to each party before a recorded call connects.

PDPA (and GDPR alike) want people told before they are recorded, and the
business able to show that they were. `play_notice` plays the configured
notice to one leg, listens for the opt-out digit while it plays, and returns
what happened as evidence for the call row: which notice and version, to
which party, from when to when, whether it played to the end, whether the
party opted out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.ari import AriClient, AriError
from bridge.calls import media
from bridge.calls.decisions import sound_uris
from bridge.calls.deps import CallState
from bridge.calls.events import CallEvents
from bridge.clock import utcnow
from bridge.config import Notice

NOTICE_LIMIT = 60.0  # seconds; a notice that never reports its end is not waited on forever


@dataclass(frozen=True)
class NoticeHeard:
    party: str  # 'caller' or 'callee'
    notice_id: str
    version: str
    started_at: datetime
    ended_at: datetime
    completed: bool  # played to its end
    opted_out: bool  # the party pressed the opt-out digit during it

    def to_json(self) -> dict:
        return {"party": self.party, "notice_id": self.notice_id, "version": self.version,
                "started_at": self.started_at.isoformat(), "ended_at": self.ended_at.isoformat(),
                "completed": self.completed, "opted_out": self.opted_out}


async def play_notice(ari: AriClient, events: CallEvents, call: CallState, channel_id: str, party: str,
                      notice: Notice, stop_if_gone: tuple[str, ...]) -> NoticeHeard:
    """Play the notice to `channel_id` (answered, or in early media) and wait for
    its end, the opt-out digit, or a leg in `stop_if_gone` hanging up."""
    started_at = utcnow()
    outcome = playback_id = None
    try:
        playback_id = await media.play(ari, call, channel_id, sound_uris(notice.sound))
        outcome = await events.wait_for(
            lambda e: (e.type in ("PlaybackFinished", "PlaybackFailed") and e.playback_id == playback_id)
            or (e.type == "ChannelDtmfReceived" and e.channel is not None and e.channel.id == channel_id
                and bool(notice.opt_out_digit) and e.digit == notice.opt_out_digit),
            NOTICE_LIMIT, stop_if_gone=stop_if_gone,
        )
    except AriError:
        pass  # the leg went while we started the notice: not heard
    opted_out = outcome is not None and outcome.type == "ChannelDtmfReceived"
    if playback_id is not None:
        if outcome is None or opted_out:
            await media.stop(ari, call, channel_id, playback_id)
        else:
            media.ended(call, channel_id, playback_id)
    return NoticeHeard(party, notice.id, notice.version, started_at, utcnow(),
                       completed=played_to_end(outcome), opted_out=opted_out)


def played_to_end(outcome) -> bool:
    """A notice whose sound could not be played ends as `failed` (a
    PlaybackFailed event, or PlaybackFinished in state failed): not heard."""
    return (outcome is not None and outcome.type == "PlaybackFinished"
            and outcome.playback_state != "failed")
