"""The operator's HTTP side of `drawbridge run` on HTTP_LISTEN: `GET /healthz`, `/readyz` and
`/metrics`. Started by the app like an adapter (`async with Monitor(...)`), and like one it
reaches drawbridge only through `bot.service`.

- /healthz: 200 while the process and the database work, 503 when the database does not
  answer; a JSON body with each adapter's and each backend's state (never a URL or secret).
- /readyz: 200 when at least one adapter is connected and one backend is up, else 503.
- /metrics: the service's registry in the Prometheus text format (bot/metrics.py).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any, Self

from aiohttp import web

from bot import __version__
from bot.errors import ListenError
from bot.metrics import CONTENT_TYPE
from bot.service import Service

log = logging.getLogger(__name__)

CONNECTED = "connected"  # the adapter state /readyz waits for


class Monitor:
    """The health and metrics server; `address` is where it listens once entered."""

    def __init__(
        self,
        service: Service,
        listen: tuple[str, int],
        adapters: Callable[[], Mapping[str, str]],
    ) -> None:
        self.service = service
        self.listen = listen
        self.adapters = adapters  # adapter name → its state ("starting", "connected" …)
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        host, port = self.listen
        try:
            # bound here, not by aiohttp: a taken port is one sentence, and port 0 is told
            sock = socket.create_server(
                (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
            )
        except OSError as exc:
            raise ListenError(
                listen=self.service.settings.http_listen, detail=exc.strerror or str(exc)
            ) from None
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        bound = sock.getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        log.info("http: /healthz, /readyz and /metrics on %s:%d", self.address[0], self.address[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- what it answers -----------------------------------------------------------------
    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the /healthz body): healthy while the database answers."""
        fault = await self.service.database_fault()
        now = self.service.snapshot()
        body = {
            "status": "ok" if fault is None else "database unavailable",
            "version": __version__,
            "database": "ok" if fault is None else fault,
            "adapters": dict(self.adapters()),
            "backends": [
                {
                    "backend": b.label,
                    "state": "down" if not b.up else "cooling" if b.cooling else "up",
                    "running": b.running,
                }
                for b in now.backends
            ],
            "queued": now.queued,
            "running": now.running,
        }
        return fault is None, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the /readyz body): an adapter connected and a backend up."""
        adapters = dict(self.adapters())
        connected = [name for name, state in adapters.items() if state == CONNECTED]
        up = [b.label for b in self.service.snapshot().backends if b.up]
        missing = []
        if not connected:
            missing.append("no chat platform connected")
        if not up:
            missing.append("no backend up")
        body = {"ready": not missing, "adapters": adapters, "backends_up": up, "missing": missing}
        return not missing, body

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, body = await self.health()
        return web.json_response(body, status=200 if ok else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, body = self.readiness()
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        data = self.service.metrics.render()
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE})
