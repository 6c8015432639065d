"""Call and session events delivered to the business, signed, from an outbox.

Events are rows in `webhook_outbox`, written in the same transaction as (or
right after) what they report, so none is lost when the receiver, or this
process, is down. A session's events are sent in the order they were written.
A dispatcher task sends due rows, retries with exponential backoff, and
dead-letters an event after `webhook_max_attempts`; the events a claim took
are marked delivered together (`DeliveryMarks`).

Signature: `X-Masking-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
with `X-Masking-Timestamp` the Unix time the request was signed. Receivers
should reject timestamps older than five minutes (replays). See `verify`.

Requests go out through bridge/outbound/ (https, public destinations or the
allow-list, no redirects); a failure is stored as a category (`http_500`,
`connection_refused`...), never as what the receiver said. Each delivery is a
disclosure: its audit row (destination host and country, bridge/privacy/ledger.py)
commits with the outbox's mark. The country is MASKING_DESTINATION_COUNTRIES's for
the host, else the one its session's purpose declares (the registry's webhooks
countries), else "unknown".
"""
from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import time
from typing import Mapping

from bridge import metrics
from bridge.logs import get_logger
from bridge.outbound.client import DeliveryFailed, OutboundHttp, status_category
from bridge.outbound.policy import OutboundPolicy
from bridge.privacy import ledger, purposes
from bridge.store import Store
from bridge.store.errors import StoreUnavailable

log = get_logger("bridge.webhooks")
TOLERANCE_SECONDS = 300
DELIVERY_TIMEOUT = 5.0
DUE_BATCH = 20  # events claimed by one query
MARK_WITHIN = 10.0  # seconds an accepted event may wait for its mark (its claim lasts 60)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float | None = None) -> bool:
    """What a receiver runs: True when the body is ours and fresh.

    >>> sig = sign("s3cret", 1700000000, b'{"a":1}')
    >>> verify("s3cret", "1700000000", b'{"a":1}', sig, now=1700000010)
    True
    """
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    if abs((now or time.time()) - stamp) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature)


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failures: 1, 2, 4 ... 600."""
    return float(min(600, 2 ** max(0, attempts)))


class Dispatcher:
    def __init__(self, store: Store, secret: str, max_attempts: int, poll_interval: float = 0.5,
                 policy: OutboundPolicy | None = None, countries: Mapping[str, str] | None = None,
                 registry: purposes.Registry | None = None, listening_poll_interval: float = 5.0,
                 gather_seconds: float = 0.2):
        """`poll_interval`: how often to look for due events while no LISTEN
        connection tells of them; `listening_poll_interval` while one does (for
        what it cannot tell: a claim a dead process left, expiring).
        `gather_seconds`: told of an event, how long to let the events written
        with it (the other calls' ringing, answered...) come too, so that one
        query claims them all rather than one query each."""
        self.store, self.secret, self.max_attempts = store, secret, max_attempts
        self.countries = dict(countries or {})  # destination host -> country, for the ledger
        self.registry = registry  # else, the one country the session's purpose declares
        self.poll_interval, self.listening_poll_interval = poll_interval, listening_poll_interval
        self.gather_seconds = gather_seconds
        self.policy = policy or OutboundPolicy()
        self.wakeup = asyncio.Event()
        self._retries: list[float] = []  # loop times of the retries this process set (a heap)
        self._marks = DeliveryMarks(store)

    async def run(self) -> None:
        """Send what is due, then sleep until told of more (this process's own
        writes, or NOTIFY from another process's), until a retry it set is due,
        or at most a poll interval. Polling twice a second was most of an idle
        service's CPU and a query per second per node for the database."""
        self.store.outbox.on_due = self.wakeup.set
        listener = self.store.outbox_listener(self.wakeup.set)
        try:
            async with OutboundHttp(self.policy, timeout=DELIVERY_TIMEOUT) as http:
                while True:
                    listening = await listener.ensure()
                    self.wakeup.clear()  # before the query: an event told during it wakes the next wait
                    answered = await self._send_due(http)
                    try:
                        await asyncio.wait_for(self.wakeup.wait(), self._idle_wait(listening and answered))
                        await asyncio.sleep(self.gather_seconds)
                    except TimeoutError:
                        if listening:
                            await listener.check()
        finally:
            if self.store.outbox.on_due == self.wakeup.set:
                self.store.outbox.on_due = None
            await self._marks.write()  # what was accepted before a stop: not sent twice
            await listener.close()

    def _idle_wait(self, rely_on_being_told: bool) -> float:
        wait = self.listening_poll_interval if rely_on_being_told else self.poll_interval
        if self._retries:
            now = asyncio.get_running_loop().time()
            while self._retries and self._retries[0] <= now:
                heapq.heappop(self._retries)
                wait = 0.0  # one is due: look now, the later ones stay set
            if self._retries:
                wait = min(wait, self._retries[0] - now)
        return max(0.0, wait)

    def _retry_later(self, seconds: float) -> None:
        """After the database set the retry (its clock starts then): look again at that time."""
        heapq.heappush(self._retries, asyncio.get_running_loop().time() + seconds + 0.05)

    async def _send_due(self, http: OutboundHttp) -> bool:
        """What is due, a batch at a time while batches come back full (an
        event written meanwhile is told, and wakes the next wait). False when
        the database could not say: look again soon, not at the long poll."""
        while True:
            try:
                due = await self.store.outbox.due(DUE_BATCH)
            except StoreUnavailable:
                return False
            if not due:
                return True
            # One session's events go out one after another, in the order they
            # were written (ringing before answered); sessions in parallel.
            by_session: dict[object, list[dict]] = {}
            for event in due:
                by_session.setdefault(event["session_id"] or event["id"], []).append(event)
            results = await asyncio.gather(*(self._deliver_in_order(http, events)
                                             for events in by_session.values()), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("webhook.dispatch_error", error=type(result).__name__)
            await self._marks.write()
            if len(due) < DUE_BATCH:
                return True

    async def _deliver_in_order(self, http: OutboundHttp, events: list[dict]) -> None:
        events = sorted(events, key=lambda e: e["id"])
        for i, event in enumerate(events):
            retry_in = await self._deliver(http, event)
            if self._marks.overdue():  # a slow session holds the batch: mark the others' now
                await self._marks.write()
            if retry_in is not None:
                # The rest go out with it at its next attempt, still behind it.
                rest = [e["id"] for e in events[i + 1:]]
                if rest:
                    try:
                        await self.store.outbox.reschedule(rest, retry_in)
                    except StoreUnavailable:
                        pass  # their claim expires; they are tried again later
                self._retry_later(retry_in)
                return

    async def _deliver(self, http: OutboundHttp, event: dict) -> float | None:
        """None once delivered (or dead-lettered); else seconds to the next attempt."""
        payload = event["payload"]
        body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "masking-bridge",
                   "X-Masking-Event": event["event_type"], "X-Masking-Event-Id": str(event["event_id"]),
                   "X-Masking-Timestamp": str(timestamp), "X-Masking-Signature": sign(self.secret, timestamp, body)}
        detail = ""
        try:
            answer = await http.post(event["url"], body, headers)
            if 200 <= answer.status < 300:
                # The ledger's row of the disclosure commits with the delivery mark.
                destination = ledger.destination_details(
                    event["url"], self.countries, purposes.declared_country(self.registry, event.get("purpose")))
                self._marks.add(event, destination)
                metrics.webhooks_delivered_total.labels(event["event_type"]).inc()
                return None
            error = status_category(answer.status)  # a 3xx too: redirects are not followed
        except DeliveryFailed as exc:
            error, detail = exc.category, exc.detail  # the detail is ours (a rule, a type), for the log only
        attempts = event["attempts"] + 1
        metrics.webhooks_failed_total.labels(event["event_type"]).inc()
        retry_in = None if attempts >= self.max_attempts else backoff(attempts - 1)
        if retry_in is None:
            metrics.webhooks_dead_lettered_total.labels(event["event_type"]).inc()
        log.warning("webhook.failed", event_type=event["event_type"], event_id=str(event["event_id"]),
                    attempts=attempts, error=error, detail=detail, dead=retry_in is None)
        try:
            await self.store.outbox.failed(event["id"], error, retry_in)
        except StoreUnavailable:
            pass  # the claim expires and the event is tried again
        return retry_in


class DeliveryMarks:
    """Delivered events, marked together: the batch a claim took is marked in
    one transaction once its deliveries are done (or, held up by a slow
    receiver, once an acceptance waited MARK_WITHIN), its ledger rows chained
    in one append (`AuditTrail.append_rows`): one mark a batch, not six round
    trips an event. A session's next event goes out once the one before was
    accepted, not marked; a mark that cannot be written leaves its events
    claimed until the claim expires, and they are sent again (receivers drop
    duplicates by id), as when this process dies between sending and marking."""

    def __init__(self, store: Store):
        self.store = store
        self._accepted: list[tuple[dict, dict[str, str], float]] = []  # and the loop time it was accepted
        self._writing = asyncio.Lock()

    def add(self, event: dict, destination: dict[str, str]) -> None:
        self._accepted.append((event, destination, asyncio.get_running_loop().time()))

    def overdue(self) -> bool:
        """An acceptance has waited MARK_WITHIN for its mark: a batch held up by
        a slow receiver is not to hold the others' past their claim."""
        return bool(self._accepted) and asyncio.get_running_loop().time() - self._accepted[0][2] > MARK_WITHIN

    async def write(self) -> None:
        """Mark what was accepted since the last write; never raises (a failed
        write is logged, and its events are sent again after their claim)."""
        async with self._writing:  # two sessions finding marks overdue: one writes them
            await self._write()

    async def _write(self) -> None:
        group = [(event, destination) for event, destination, _ in self._accepted]
        if not group:
            return
        try:
            await self.store.outbox.delivered([event["id"] for event, _ in group],
                                              lambda conn: self.store.disclosures.webhooks_delivered(group, conn))
        except StoreUnavailable:
            log.warning("webhook.marks_unwritten", events=len(group))
        except Exception as exc:
            log.error("webhook.marks_failed", events=len(group), error=type(exc).__name__)
        # Cancelled half-way (a stop), the group stays for the dispatcher's last write.
        del self._accepted[:len(group)]
