"""The per-key token bucket: a burst at once, then the sustained rate, and the wait it answers."""
from bridge.api.ratelimit import RateLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_waits_for_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)

    assert [limiter.retry_after("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.retry_after("k") == 0.5
    clock.now += 0.5
    assert limiter.retry_after("k") == 0


def test_an_idle_key_refills_only_up_to_its_burst():
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=2, clock=clock)
    limiter.retry_after("k")
    clock.now += 3600

    assert [limiter.retry_after("k") for _ in range(3)] == [0, 0, 0.1]


def test_keys_have_buckets_of_their_own_and_rate_zero_means_no_limit():
    limiter = RateLimiter(rate=1, burst=1, clock=Clock())
    assert (limiter.retry_after("a"), limiter.retry_after("b"), limiter.retry_after("a") > 0) == (0, 0, True)
    unlimited = RateLimiter(rate=0, burst=1, clock=Clock())
    assert all(unlimited.retry_after("a") == 0 for _ in range(1000))
