"""Asterisk's own state, watched over AMI (panoramisk), and the one call
action ARI lacks: MixMonitor.

ARI says whether our application is connected; AMI says what Asterisk itself
is doing: fully booted, reloading a module, shutting down. The service shows
it in `/readyz` and `/metrics`; `masking doctor` reads the same state.

Recording a call with MixMonitor on its caller's channel costs Asterisk what
an operator's own dialplan recording costs; ARI can only record a snoop
channel (a channel of its own per call) or the bridge (software mixing):
bench/RESULTS.md measures the three.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Iterable, Mapping

from panoramisk import Manager

from bridge import metrics
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.logs import get_logger

log = get_logger("bridge.ami")

ACTION_LIMIT = 5.0  # seconds an action may take to be answered


class AmiError(Exception):
    """AMI is not connected, did not answer in time, or refused the action."""


def registration_states(events: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Each outbound registration's status (Registered, Rejected, ...) by its
    trunk's name, from the answer to PJSIPShowRegistrationsOutbound."""
    return {e["ObjectName"]: e.get("Status", "Unknown") for e in events
            if e.get("Event") == "OutboundRegistrationDetail" and e.get("ObjectName")}


class AsteriskMonitor:
    def __init__(self, settings: Settings):
        self.state = "disconnected"  # disconnected | booted | shutting_down
        self.logged_in = False
        self.reloads = 0
        self.last_change: datetime | None = None
        # Trunks' outbound registrations: read at login, again at every
        # Registry event (which names URIs, not the trunk).
        self.registrations: dict[str, str] = {}
        self.manager = Manager(
            host=settings.ami_host, port=settings.ami_port, username=settings.ami_user,
            secret=settings.ami_password, ping_delay=5, reconnect_timeout=2,
            on_disconnect=self._disconnected, on_login=self._logged_in,
            log=logging.getLogger("bridge.ami.panoramisk"))
        self.manager.register_event("FullyBooted", self._booted)
        self.manager.register_event("Shutdown", self._shutting_down)
        self.manager.register_event("Reload", self._reloaded)
        self.manager.register_event("Registry", self._read_registrations)

    @property
    def fully_booted(self) -> bool:
        return self.state == "booted"

    def start(self) -> None:
        self.manager.connect()

    def stop(self) -> None:
        self.manager.connect = lambda *args, **kwargs: None  # panoramisk reconnects after close()
        self.manager.close()

    def _set(self, state: str) -> None:
        if state != self.state:
            log.info("asterisk.state", state=state, previous=self.state)
            self.state, self.last_change = state, utcnow()

    def _booted(self, _manager, _event) -> None:
        self._set("booted")

    def _shutting_down(self, _manager, event) -> None:
        log.warning("asterisk.shutdown", restart=event.get("Restart"))
        self._set("shutting_down")

    def _reloaded(self, _manager, event) -> None:
        self.reloads += 1
        metrics.asterisk_reloads_total.inc()
        log.info("asterisk.reload", module=event.get("Module"), status=event.get("Status"))

    def _disconnected(self, _manager, _exc) -> None:
        self.logged_in = False
        self._set("disconnected")

    def _logged_in(self, *args) -> None:
        self.logged_in = True
        self._read_registrations(*args)

    async def action(self, action: dict[str, str]) -> Mapping[str, str]:
        """Send one action and return its answer; AmiError unless it succeeded."""
        if not self.logged_in:
            raise AmiError("AMI is not connected")
        try:
            answer = await asyncio.wait_for(self.manager.send_action(action), ACTION_LIMIT)
        except (OSError, TimeoutError, AttributeError) as exc:
            raise AmiError(f"{action['Action']}: no answer ({type(exc).__name__})") from None
        if answer.get("Response") != "Success":
            raise AmiError(f"{action['Action']}: {answer.get('Message') or 'refused'}")
        return answer

    async def mixmonitor(self, channel_id: str, file: str = "", options: str = "") -> None:
        """Start MixMonitor on a channel (by its unique id, as ARI names it).
        The action also takes a shell command to run afterwards: never sent."""
        await self.action({"Action": "MixMonitor", "Channel": channel_id, "File": file, "Options": options})

    async def stop_mixmonitor(self, channel_id: str) -> bool:
        """Stop MixMonitor on a channel; Asterisk has closed its files when
        this returns True. False: the channel is gone or records nothing."""
        try:
            await self.action({"Action": "StopMixMonitor", "Channel": channel_id})
            return True
        except AmiError:
            return False

    def _read_registrations(self, *_args) -> None:
        asyncio.ensure_future(self._refresh_registrations())

    async def _refresh_registrations(self) -> None:
        try:
            answer = await asyncio.wait_for(
                self.manager.send_action({"Action": "PJSIPShowRegistrationsOutbound"}, as_list=True), 5)
        except (OSError, TimeoutError, AttributeError):
            return  # not connected (no protocol) or no answer: the next login reads them again
        states = registration_states(answer if isinstance(answer, list) else [answer])
        for trunk, status in states.items():
            if self.registrations.get(trunk) != status:
                log.info("trunk.registration", trunk=trunk, status=status, previous=self.registrations.get(trunk))
        self.registrations = states
        for trunk, status in states.items():
            metrics.trunk_registered.labels(trunk).set(1 if status == "Registered" else 0)
