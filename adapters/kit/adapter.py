"""The lifecycle every chat platform has, as `drawbridge run` drives it."""

from __future__ import annotations

from typing import Protocol, Self


class AdapterStartError(RuntimeError):
    """A platform could not start; the message is safe to log (it never holds a token)."""


class Adapter(Protocol):
    """One chat platform over the service.

    Building it registers its reply factory with the service (so jobs resumed at start find
    their conversation); entering it connects and starts taking updates, raising
    AdapterStartError with a sentence an operator can act on; leaving it disconnects and
    cancels its background work. `drawbridge run` builds every adapter, starts the service,
    then enters the adapters in order.
    """

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def wait_closed(self) -> None:
        """Return (or raise why) when the platform connection ends by itself."""
        ...
