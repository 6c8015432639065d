"""Byte ranges of decrypted audio, as `web.FileResponse` answers them for a plain file."""
import pytest

from bridge.api.audio import RangeNotSatisfiable, requested_span


@pytest.mark.parametrize("rng, span", [
    (slice(None, None), None),  # no Range header: the whole audio, 200
    (slice(0, 100), (0, 100)),  # bytes=0-99
    (slice(900, None), (900, 1000)),  # bytes=900-
    (slice(900, 5000), (900, 1000)),  # an end past the audio is cut to it
    (slice(-100, None), (900, 1000)),  # bytes=-100: the last 100 bytes
    (slice(-5000, None), (0, 1000)),  # more than there is: all of it
])
def test_a_range_is_read_as_the_http_spec_says(rng, span):
    assert requested_span(rng, 1000) == span


@pytest.mark.parametrize("rng, size", [(slice(1000, None), 1000), (slice(0, 1), 0), (slice(-1, None), 0)])
def test_a_range_starting_at_or_past_the_end_is_not_satisfiable(rng, size):
    with pytest.raises(RangeNotSatisfiable):
        requested_span(rng, size)
