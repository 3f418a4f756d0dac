"""Which WebUI a backend is (AUTOMATIC1111, Forge or SD.Next) and what it lets us do.

Told apart as `forks.md` describes: SD.Next answers GET /sdapi/v1/version (A1111 and Forge
have no such route), Forge's GET /sdapi/v1/options carries `forge_*` keys, anything else is
AUTOMATIC1111. Beside the flavour a health check learns the settings the server refuses to
change (`--freeze-settings` and friends, from GET /sdapi/v1/cmd-flags) and whether
POST /internal/progress binds progress to one request (A1111 >= 1.6 and Forge in webui mode).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.errors import WebUIAuthError, WebUIError, WebUIRequestError
from bot.webui.client import WebUIClient

log = logging.getLogger(__name__)

# a task id no request carries: the answer only tells whether the route exists
PROBE_TASK = "task(drawbridge-probe)"


class Flavour(StrEnum):
    """The WebUI fork behind a backend."""

    A1111 = "a1111"
    FORGE = "forge"
    SDNEXT = "sdnext"

    @property
    def display_name(self) -> str:
        """The fork's name as its users write it."""
        return _TITLES[self]


_TITLES = {Flavour.A1111: "AUTOMATIC1111", Flavour.FORGE: "Forge", Flavour.SDNEXT: "SD.Next"}


@dataclass(frozen=True)
class Identity:
    """What a health check learns about a backend beyond "it answers"."""

    flavour: Flavour
    # GET /sdapi/v1/options, or None when it failed (it can 500 on a stored value of the
    # wrong type while generation still works)
    options: dict[str, Any] | None
    # option keys the server refuses to change; None: every one (--freeze-settings)
    frozen: frozenset[str] | None
    # POST /internal/progress answers: a request's force_task_id binds progress to it
    binds_tasks: bool

    @property
    def loaded_model(self) -> str | None:
        """The checkpoint the server's settings name (its title), if known."""
        if not self.options:
            return None
        value = self.options.get("sd_model_checkpoint")
        return str(value) if value else None


def frozen_options(flags: dict[str, Any] | None) -> frozenset[str] | None:
    """Option keys a server started with these flags refuses to change (None: all of them).

    A1111/Forge assert on any change (a 500 "changing settings is disabled", also when an
    override is restored); SD.Next's --freeze silently ignores every change, so the model
    would never switch. Frozen sections cannot be mapped to keys from outside: all of them.
    """
    if not flags:
        return frozenset()
    if (
        flags.get("freeze_settings")
        or flags.get("freeze")
        or flags.get("freeze_settings_in_sections")
    ):
        return None
    specific = flags.get("freeze_specific_settings")
    if specific:
        return frozenset(k.strip() for k in str(specific).split(",") if k.strip())
    return frozenset()


def flavour_of(version: dict[str, Any] | None, options: dict[str, Any] | None) -> Flavour:
    """The flavour from GET /version (SD.Next only) and GET /options (Forge's forge_* keys)."""
    if version is not None:
        return Flavour.SDNEXT
    if options and any(str(key).startswith("forge_") for key in options):
        return Flavour.FORGE
    return Flavour.A1111


async def identify(client: WebUIClient) -> Identity:
    """Ask a live backend what it is; connection failures propagate (the backend is down)."""
    version = await client.version()
    options: dict[str, Any] | None
    try:
        options = await client.options()
    except WebUIRequestError as exc:  # includes a 200 that is not an object
        log.warning(
            "backend %s: GET /sdapi/v1/options failed (%s); drawing still works, the loaded "
            "model is unknown",
            client.display,
            exc.render("en"),
        )
        options = None
    flavour = flavour_of(version, options)
    try:
        flags = await client.cmd_flags()
    except WebUIAuthError:
        raise
    except WebUIRequestError:
        flags = None
    binds = False
    if flavour is not Flavour.SDNEXT:  # SD.Next's API takes no force_task_id
        try:
            await client.task_progress(PROBE_TASK)
            binds = True
        except WebUIError as exc:
            if exc.retryable and not isinstance(exc, WebUIRequestError):
                raise
            binds = False  # --nowebui: /internal/* is not registered
    return Identity(flavour, options, frozen_options(flags), binds)
