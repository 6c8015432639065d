"""Requests per API key: a token bucket each, in this process's memory.

A key may make `MASKING_API_BURST` requests at once and `MASKING_API_RATE` a
second sustained; beyond that it gets 429 `rate_limited` with `Retry-After`
(whole seconds until a request would pass). The buckets live in each process:
behind several processes or hosts a key gets the limit from each. Requests
without a valid key are refused before they reach a bucket (401).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from bridge.api.context import API_KEY, SETTINGS
from bridge.api.errors import ApiError


@dataclass
class Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`retry_after(key)`: 0 when the key may go on now, else seconds to wait."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, Bucket] = {}

    def retry_after(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self.buckets.setdefault(key, Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


LIMITER = web.AppKey("rate_limiter", RateLimiter)


def install(app: web.Application) -> None:
    settings = app[SETTINGS]
    app[LIMITER] = RateLimiter(settings.api_rate, settings.api_burst)


@web.middleware
async def rate_limit_middleware(request: web.Request, handler):
    """After auth: counts requests that carry a valid key, by that key."""
    key = request.get(API_KEY)
    if key is not None:
        wait = request.app[LIMITER].retry_after(str(key["id"]))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(429, "rate_limited", f"too many requests for this API key; retry in {seconds} s",
                           headers={"Retry-After": str(seconds)}, retry_after_seconds=seconds)
    return await handler(request)
