"""The running bridge: ARI events in, one task per call, health over HTTP."""
from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from bridge.api.app import make_app
from bridge.ari import AriClient, AriError, Event, EventRouter, EventStream
from bridge.calls.flow import CallDeps, masked_call
from bridge.config import Settings
from bridge.logs import get_logger
from bridge.store import Store, StoreUnavailable, utcnow
from bridge.webhooks import Dispatcher

log = get_logger("bridge.service")


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.calls: set[asyncio.Task] = set()
        self.router = EventRouter(self._on_new_channel)
        self.ari = AriClient(settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app)
        self.stream = EventStream(settings.ari_url, self.ari.auth, settings.ari_app, self.router,
                                  on_connected=self._reconcile)
        self.store: Store | None = None
        self.deps: CallDeps | None = None
        self._tasks: list[asyncio.Task] = []
        self._http: web.AppRunner | None = None

    async def start(self) -> None:
        self.store = await Store.connect(self.settings.database_url, self.settings.db_timeout)
        self.deps = CallDeps(ari=self.ari, store=self.store, router=self.router, settings=self.settings)
        self._tasks.append(asyncio.create_task(self.stream.run(), name="ari-events"))
        self.dispatcher = Dispatcher(self.store, self.settings.webhook_secret, self.settings.webhook_max_attempts)
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="webhooks"))
        self._tasks.append(asyncio.create_task(self._expire_sessions(), name="session-expiry"))
        app = make_app(self.store, self.settings, readiness=self._readiness, active_calls=lambda: len(self.calls))
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        await web.TCPSite(self._http, self.settings.http_host, self.settings.http_port).start()
        log.info("service.started", ari=self.settings.ari_url, app=self.settings.ari_app,
                 http_port=self.settings.http_port)

    async def stop(self) -> None:
        self.stream.stop()
        for task in self._tasks:
            task.cancel()
        if self.calls:
            # Each call's `finally` releases its channels; give them a moment.
            done, pending = await asyncio.wait(self.calls, timeout=5)
            for task in pending:
                task.cancel()
        if self._http:
            await self._http.cleanup()
        await self.ari.close()
        if self.store:
            await self.store.close()
        log.info("service.stopped")

    def _on_new_channel(self, event: Event) -> None:
        if event.args and event.args[0] in ("callee", "snoop"):
            return  # a leg of ours whose call has already ended; reconcile cleans it
        task = asyncio.create_task(masked_call(self.deps, event), name=f"call-{event.channel.id}")
        self.calls.add(task)
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task) -> None:
        self.calls.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call.crashed", error=repr(task.exception()))

    async def _reconcile(self) -> None:
        """Hang up legs of our app that no call in this process owns.

        Left by a previous process (killed mid-call) they would otherwise sit
        in Stasis forever. Adopting live calls instead is the next step.
        """
        try:
            app = await self.ari.application()
        except AriError as exc:
            log.warning("reconcile.failed", status=exc.status)
            return
        for channel_id in app.get("channel_ids", []):
            if not self.router.owns(channel_id):
                try:
                    await self.ari.hangup(channel_id, 41)
                    log.warning("reconcile.orphan_hung_up", channel_id=channel_id)
                except AriError:
                    pass
        for bridge_id in app.get("bridge_ids", []):
            if not any(call.bridge_id == bridge_id for call in self.deps.active.values()):
                try:
                    await self.ari.destroy_bridge(bridge_id)
                except AriError:
                    pass

    async def _readiness(self) -> dict[str, bool]:
        checks = {"ari": self.stream.connected.is_set(), "database": True}
        try:
            await self.store.ping()
        except StoreUnavailable:
            checks["database"] = False
        return checks

    async def _expire_sessions(self) -> None:
        """Expire sessions at their time, without a cron: sleep until the next
        expiry (re-checking at least every 5 s for sessions created since)."""
        while True:
            try:
                expired = await self.store.expire_due(self.settings.webhook_url or None)
                if expired:
                    log.info("sessions.expired", count=len(expired))
                    self.dispatcher.wakeup.set()
                next_at = await self.store.next_expiry()
                delay = 5.0 if next_at is None else min(5.0, max(0.05, (next_at - utcnow()).total_seconds()))
            except StoreUnavailable:
                delay = 5.0
            await asyncio.sleep(delay)


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM."""
    service = Service(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()
