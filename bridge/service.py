"""The running bridge: ARI events in, one task per call, the HTTP API, webhooks.

Lifecycle, with faults in mind:
- start: take this Asterisk node's lease (a PostgreSQL advisory lock), so a
  second instance waits as a standby instead of stealing calls; a lease lost
  with the database (restart, primary change) is taken again when it is back;
- every (re)connection to ARI: reconcile (adopt calls a previous process or
  connection left in progress, release what cannot be resumed, hang up
  orphans, tell running calls about legs that vanished while disconnected);
- database down: call-row writes are spooled and replayed; old plaintext recordings get sealed;
- SIGTERM: drain (new calls go to the fallback; calls in progress, the fallback's too, get `drain_seconds`), then stop.
"""
from __future__ import annotations

import asyncio
import signal
import uuid

import asyncpg
from aiohttp import web

from bridge import metrics
from bridge.agi import FallbackAgi
from bridge.ami import AsteriskMonitor
from bridge.api.app import make_app
from bridge.ari import AriClient, AriError, AriNotConnected, Event, EventRouter, EventStream
from bridge.ari.events import Channel
from bridge.auditing import audit_configuration, checkpoint_periodically
from bridge.calls import ids
from bridge.calls.adopt import adopt_call
from bridge.calls.connect import ConnectRequest, connect_call, connect_row
from bridge.calls.deps import CallDeps
from bridge.calls.events import ask_for_events_used
from bridge.calls.flow import masked_call
from bridge.calls.spool import Spool, replay_forever
from bridge.calls.sweep import sweep_forever
from bridge.calls.unclosed import close_left_call
from bridge.privacy import purposes
from bridge.console.app import install_console
from bridge.config import ConfigError, Settings
from bridge.housekeeping import expire_sessions_periodically, purge_periodically
from bridge.logs import get_logger
from bridge.privacy.crypto import AuditKeyMissing, KeyRing
from bridge.recordings.backfill import seal_in_background
from bridge.recordings.wait_audio import sync_wait_audio
from bridge.sessions.models import MaskingSession
from bridge.stack.edge_watch import EdgeWatch
from bridge.stack.kamailio import EdgeRpc
from bridge.stack.trunks import outbound_presentation
from bridge.store import Store
from bridge.store.errors import StoreError, StoreUnavailable
from bridge.store.lease import NodeLease
from bridge.webhooks import Dispatcher

log = get_logger("bridge.service")
# Seconds a reconciliation gives a predecessor's spooled writes before it
# reads which calls were left in progress; calls whose writes still wait are
# taken by a reconciliation this much later.
REPLAY_BEFORE_RECONCILE = 10.0
FALLBACK_CONTEXT, FALLBACK_LABEL = "masking-inbound", "drain"  # dialplan/extensions.conf


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.node = f"{settings.ari_url}/{settings.ari_app}"
        self.calls: set[asyncio.Task] = set()
        self.router = EventRouter(self._on_new_channel)
        self.ari = AriClient(settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app)
        self.stream = EventStream(settings.ari_url, self.ari.auth, settings.ari_app, self.router,
                                  on_connected=self._on_connected)
        self.store: Store | None = None
        self.deps: CallDeps | None = None
        self.draining = False
        self._asterisk_started: str | None = None  # Asterisk's startup time, to notice restarts
        self.lease = NodeLease(settings.database_url, self.node, settings.db_timeout)
        self._tasks: list[asyncio.Task] = []
        self._http: web.AppRunner | None = None

    async def start(self) -> None:
        keys = KeyRing.load(self.settings.keys_path)
        if keys.audit_active is None:  # every audited action would fail: refuse to start instead
            raise AuditKeyMissing(f"{keys.path} holds no audit key: run `masking db upgrade`"
                                  " (or `masking keys add-audit`)")
        self.store = await Store.connect(self.settings.database_url, keys, self.settings.db_timeout,
                                         self.settings.db_pool_size, self.settings.db_lookup_pool_size,
                                         outbox_notify=False,  # its events wake its own sender (migration 0035)
                                         default_webhook_url=self.settings.webhook_url or None)
        self._tasks.append(asyncio.create_task(warn_if_privileged(self.store), name="database-role"))
        self._tasks.append(asyncio.create_task(audit_configuration(self.store, self.settings), name="audit-config"))
        self.asterisk = AsteriskMonitor(self.settings)
        self.asterisk.start()
        # Behind an edge: each node's state as the edge sees it, in /metrics.
        self.edge = EdgeWatch(EdgeRpc.of(self.settings)) if self.settings.edge.rpc_port else None
        self.spool = Spool(self.settings.state_dir / "spool" / "calls.jsonl")
        self.deps = CallDeps(ari=self.ari, store=self.store, router=self.router, settings=self.settings,
                             node=self.node, spool=self.spool, ami=self.asterisk,
                             presentation=outbound_presentation(self.settings))
        app = make_app(self.store, self.settings, readiness=self._readiness, active_calls=lambda: len(self.calls),
                       place_call=self.place_call)
        install_console(app)
        if self.settings.test_hooks:
            app.router.add_post("/debug/ari/drop", self._drop_ari)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        await web.TCPSite(self._http, self.settings.http_host, self.settings.http_port).start()
        # The fallback serves calls whenever the Stasis app is not registered:
        # also while this instance waits as a standby.
        self.agi = FallbackAgi(self.store, self.ari, self.settings, self.node, self.spool)
        await self.agi.start()
        await self.lease.acquire()
        self._tasks.append(asyncio.create_task(self.lease.keep(), name="lease"))
        self._tasks.append(asyncio.create_task(self.stream.run(), name="ari-events"))
        self.dispatcher = Dispatcher(self.store, self.settings.webhook_secret, self.settings.webhook_max_attempts,
                                     policy=self.settings.outbound_policy,
                                     countries=self.settings.destination_country_map,
                                     registry=purposes.registry_for(self.settings))
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="webhooks"))
        self._tasks.append(asyncio.create_task(expire_sessions_periodically(self.store, self.settings),
                                               name="session-expiry"))
        self._tasks.append(asyncio.create_task(replay_forever(self.spool, self.store), name="spool-replay"))
        self._tasks.append(asyncio.create_task(metrics.watch_event_loop_lag(), name="event-loop-lag"))
        self._tasks.append(asyncio.create_task(seal_in_background(self.store), name="recordings-seal"))
        self._tasks.append(asyncio.create_task(
            sweep_forever(self.deps, self.settings.recording_sweep_seconds), name="recordings-sweep"))
        self._tasks.append(asyncio.create_task(sync_wait_audio(self.store, self.settings), name="wait-audio-sync"))
        if self.edge is not None:
            self._tasks.append(asyncio.create_task(self.edge.run(), name="edge-watch"))
        if self.settings.purge_interval_seconds > 0:
            self._tasks.append(asyncio.create_task(purge_periodically(self.store, self.settings), name="purge"))
        if self.settings.audit_checkpoint_seconds > 0:
            self._tasks.append(asyncio.create_task(checkpoint_periodically(self.store, self.settings),
                                                   name="audit-checkpoints"))
        log.info("service.started", ari=self.settings.ari_url, app=self.settings.ari_app,
                 http_port=self.settings.http_port)

    async def drain(self) -> None:
        """Stop taking calls; give the ones in progress (the fallback's too) `drain_seconds` to end."""
        self.draining = True
        log.info("service.draining", active_calls=len(self.calls), seconds=self.settings.drain_seconds)
        deadline = asyncio.get_running_loop().time() + self.settings.drain_seconds
        if self.calls:
            await asyncio.wait(set(self.calls), timeout=self.settings.drain_seconds)
        while getattr(self, "agi", None) and self.agi.pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self.stream.stop()
        if self.calls:
            # Cancelled calls release their channels in their `finally`.
            for task in self.calls:
                task.cancel()
            await asyncio.wait(set(self.calls), timeout=5)
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # before the store closes: the webhook sender writes the marks it holds
            await asyncio.wait(self._tasks, timeout=10)
        if self._http:
            await self._http.cleanup()
        await self.agi.stop()
        self.asterisk.stop()
        await self.ari.close()
        await self.lease.release()
        if self.store:
            await self.store.close()
        log.info("service.stopped")

    # -- calls ------------------------------------------------------------------------
    def _on_new_channel(self, event: Event) -> None:
        if event.args and event.args[0] in ids.OWN_LEG_ROLES:
            return  # a leg of ours whose call has already ended; reconcile cleans it
        if self.draining:
            self._spawn(self._to_fallback(event), f"fallback-{event.channel.id}")
            return
        self._spawn(masked_call(self.deps, event), f"call-{event.channel.id}")

    async def place_call(self, session: MaskingSession, request: ConnectRequest) -> uuid.UUID:
        """Start a click-to-call; its row exists when this returns (StoreUnavailable if it cannot)."""
        if not self.stream.connected.is_set() or self.draining:
            raise AriNotConnected("not connected to Asterisk")
        row = connect_row(uuid.uuid4(), session, request, self.node)
        await self.store.calls.insert(**row)
        self._spawn(connect_call(self.deps, session, request, row), f"connect-{row['call_id']}")
        return row["call_id"]

    def _spawn(self, coroutine, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self.calls.add(task)
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task) -> None:
        self.calls.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call.crashed", error=repr(task.exception()))

    async def _to_fallback(self, event: Event) -> None:
        try:
            await self.ari.continue_in_dialplan(event.channel.id, FALLBACK_CONTEXT, event.channel.exten,
                                                FALLBACK_LABEL)
            log.info("call.sent_to_fallback", reason="draining")
        except AriError as exc:
            log.warning("call.fallback_failed", status=exc.status)

    # -- faults ---------------------------------------------------------------------------
    async def _on_connected(self) -> None:
        # Not awaited inline: the websocket must be read while we reconcile.
        self._tasks.append(asyncio.create_task(self._reconcile(), name="reconcile"))

    async def _reconcile(self) -> None:
        try:
            await ask_for_events_used(self.ari)
            app = await self.ari.application()
        except AriError as exc:
            log.warning("reconcile.failed", status=exc.status)
            return
        live = set(app.get("channel_ids", []))
        try:
            started = (await self.ari.info()).get("status", {}).get("startup_time")
        except AriError:
            started = None
        restarted = self._asterisk_started is not None and started != self._asterisk_started
        self._asterisk_started = started
        await self._tell_calls_about_vanished_legs(live, restarted)
        claimed_channels: set[str] = set()
        claimed_bridges: set[str] = set()
        # A predecessor's writes still in the spool come first: a row its replay
        # has inserted says `in_progress` until the call's last write lands.
        # Calls with writes still waiting there are not taken for abandoned.
        try:
            await asyncio.wait_for(self.spool.replay(self.store), REPLAY_BEFORE_RECONCILE)
        except asyncio.TimeoutError:
            log.warning("reconcile.spool_not_replayed")  # its calls wait for a later reconciliation
        except (StoreError, OSError) as exc:
            log.error("spool.replay_failed", error=type(exc).__name__)
        spooled = await asyncio.to_thread(self.spool.call_ids)
        try:
            in_progress = await self.store.calls.in_progress(self.node)
        except StoreUnavailable:
            in_progress = []
        adopted, waiting = 0, False
        for record in in_progress:
            if record["caller_channel_id"] in self.deps.active:
                continue
            call_id = record["id"]
            claimed_channels |= {record["caller_channel_id"], record["callee_channel_id"], ids.snoop_channel(call_id),
                                 ids.callee_channel(call_id)}
            claimed_bridges.add(ids.bridge(call_id))
            if call_id in spooled:
                waiting = True  # the database went away again mid-replay, or the replay is long
                continue
            self._spawn(adopt_call(self.deps, record, live), f"adopted-{call_id}")
            adopted += 1
        await asyncio.sleep(0)  # let adopted calls register their channels
        claimed_bridges |= {call.bridge_id for call in self.deps.active.values()}
        for channel_id in live - claimed_channels:
            if not self.router.owns(channel_id):
                await self._serve_or_release(channel_id)
        for bridge_id in set(app.get("bridge_ids", [])) - claimed_bridges:
            try:
                await self.ari.destroy_bridge(bridge_id)
            except AriError:
                pass
        try:
            left = await self.store.calls.left_open(self.node)
        except StoreUnavailable:
            left = []  # the sweep's timer tries again
        for call_id in left:
            if not any(call.id == call_id for call in self.deps.active.values()):
                self._spawn(close_left_call(self.deps, call_id), f"close-{call_id}")
        if waiting:
            self._tasks.append(asyncio.create_task(self._reconcile_later(), name="reconcile-again"))
        log.info("reconcile.done", live_channels=len(live), adopted=adopted)

    async def _reconcile_later(self) -> None:
        """Calls left in progress whose writes waited in the spool: once it is replayed."""
        await asyncio.sleep(REPLAY_BEFORE_RECONCILE)
        await self._reconcile()

    async def _serve_or_release(self, channel_id: str) -> None:
        """A leg of our app that no call owns: a caller who arrived while no
        process was listening is served now; anything else is released."""
        try:
            data = await self.ari.channel(channel_id)
            if data is None or self.router.owns(channel_id) or channel_id in self.deps.active:
                return  # gone, or its StasisStart arrived meanwhile and a call took it
            waiting_caller = (data.get("dialplan", {}).get("context") == FALLBACK_CONTEXT
                              and data.get("state") in ("Ring", "Ringing"))
            if waiting_caller and not self.draining:
                channel = Channel.from_json(data)
                log.info("reconcile.late_caller_served", channel_id=channel_id)
                self._on_new_channel(Event(type="StasisStart", channel=channel, args=(channel.exten,)))
                return
            await self.ari.hangup(channel_id, 34)
            log.warning("reconcile.orphan_hung_up", channel_id=channel_id)
        except AriError:
            pass

    async def _tell_calls_about_vanished_legs(self, live: set[str], restarted: bool) -> None:
        """Hangups that happened while disconnected reached no one: say them now.
        If Asterisk restarted meanwhile the legs died with it (ChannelVanished:
        the call is recorded as interrupted); otherwise a party hung up while we
        were not listening (an ordinary hangup, cause unknown)."""
        kind = "ChannelVanished" if restarted else "ChannelDestroyed"
        for call in list(self.deps.active.values()):
            for channel_id in (call.caller_id, call.callee_id, call.snoop_id, call.callee_snoop_id):
                # A leg registered but not yet created has not entered Stasis:
                # it is not missing, it is coming.
                if channel_id and channel_id not in live and self.router.has_entered(channel_id) \
                        and not await self.ari.channel_exists(channel_id):
                    self.router.dispatch(Event(type=kind, channel=Channel(channel_id, "", "Down", "", "")))

    async def _drop_ari(self, _request: web.Request) -> web.Response:
        await self.stream.drop()
        return web.json_response({"dropped": True})

    # -- health and time ---------------------------------------------------------------
    async def _readiness(self) -> dict[str, bool]:
        checks = {"ari": self.stream.connected.is_set(), "asterisk": self.asterisk.fully_booted,
                  "database": True, "accepting_calls": not self.draining}
        try:
            await self.store.ping()
        except StoreUnavailable:
            checks["database"] = False
        return checks


async def warn_if_privileged(store: Store) -> None:
    """Say so at start when the service's role could rewrite the audit trail or change the schema."""
    try:
        excess = await store.roles.excess_privileges()
    except (StoreError, asyncpg.PostgresError):
        return
    if excess:
        log.warning("database.role_too_powerful", privileges=excess,
                    hint="set MASKING_DATABASE_ADMIN_URL and run `masking db upgrade` (docs/security.md)")


async def serve_agi(settings: Settings) -> None:
    """Only the FastAGI fallback (for a standby host), until SIGINT or SIGTERM."""
    check_purposes(settings)
    store = await Store.connect(settings.database_url, KeyRing.load(settings.keys_path), settings.db_timeout,
                                settings.db_pool_size, settings.db_lookup_pool_size)
    ari = AriClient(settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app)
    spool = Spool(settings.state_dir / "spool" / "calls-agi.jsonl")
    agi = FallbackAgi(store, ari, settings, f"{settings.ari_url}/{settings.ari_app}", spool)
    await agi.start()
    replay = asyncio.create_task(replay_forever(spool, store))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        replay.cancel()
        await agi.stop()
        await ari.close()
        await store.close()


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then drain and stop."""
    check_purposes(settings)
    service = Service(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        await service.drain()
    finally:
        await service.stop()


def check_purposes(settings: Settings) -> None:
    """Refuse to start on a registry that does not load, or on an empty opt-out
    digit that a recording purpose does not allow (ConfigError: the CLI says why)."""
    try:
        purposes.check_opt_out_digit(purposes.registry_for(settings), settings.notice.opt_out_digit)
    except purposes.RegistryError as exc:
        raise ConfigError(str(exc)) from None
