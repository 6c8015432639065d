"""Two-channel recordings: the caller left, the counterpart right, in step."""
from datetime import datetime, timedelta, timezone

from bridge.recordings.convert import Pcm, write_wav
from bridge.recordings.stereo import merge, split, start_delays

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def test_each_party_lands_on_its_own_channel():
    caller, counterpart = write_wav(Pcm(8000, [1000] * 80)), write_wav(Pcm(8000, [-2000] * 40))

    stereo, seconds = merge(caller, counterpart)

    left, right = split(stereo)
    assert left.samples == [1000] * 80 and right.samples == [-2000] * 40 + [0] * 40
    assert seconds == 0.01 and stereo[22:24] == b"\x02\x00"


def test_the_channel_that_started_later_is_delayed_by_the_difference():
    assert start_delays(T0, T0 + timedelta(milliseconds=5)) == (0, 40)
    assert start_delays(T0 + timedelta(milliseconds=10), T0) == (80, 0)
    assert start_delays(None, T0) == (0, 0)
    stereo, _ = merge(write_wav(Pcm(8000, [7] * 10)), write_wav(Pcm(8000, [9] * 10)), (0, 3))
    left, right = split(stereo)
    assert right.samples[:4] == [0, 0, 0, 9] and left.samples[:10] == [7] * 10 and len(left.samples) == 13


def test_a_party_who_said_nothing_gives_a_silent_channel():
    stereo, _ = merge(write_wav(Pcm(8000, [5] * 8)), write_wav(Pcm(8000, [])))
    assert split(stereo)[1].samples == [0] * 8
