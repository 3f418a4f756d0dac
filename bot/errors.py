"""One tree of errors; every one a user sees carries a catalogue key and says what to do.

DrawbridgeError                 (key + params → a sentence from bot.i18n)
├── UserInputError              the request is wrong; nothing queued or charged
│   ├── OptionError             a flag is unknown, malformed or out of range
│   └── ImageError              an image cannot be used (format, size, corrupt, mask)
├── RefusedError                the request is fine but not allowed now
│   ├── QuotaExceeded           not enough credits
│   ├── QueueFull               per-user cap on queued jobs reached
│   ├── NotAllowed              e.g. cancelling another user's job
│   ├── ShuttingDown            drawbridge is restarting: try again in a minute
│   └── NoBackendCanDraw        no backend has what the request needs (checkpoint, LoRA …)
├── NotFound                    unknown job, preset, model …
├── DatabaseError               the database cannot be used (operator-facing, CLI only)
├── ListenError                 HTTP_LISTEN cannot be served (operator-facing, CLI only)
├── StorageError                the database failed; the write was rolled back whole (the
│                               storage.vocab.StorageFault it stands for says which sentence)
├── DeliveryFailed              a result could not be delivered (the platform stayed away for
│                               DELIVERY_RETRY_SECONDS, or refused it); the job is refunded
└── WebUIError                  a backend failed; carries the backend URL
    ├── WebUIUnreachable        connection refused / DNS / reset
    ├── WebUITimeout            no answer within the timeout
    ├── WebUIAuthError          401: WEBUI_AUTH missing or wrong
    ├── WebUINoAPI              404 on /sdapi/v1/*: started without --api
    ├── WebUIRequestError       4xx/5xx with a JSON error body (422, 500 …)
    │   └── WebUIServerError    5xx: the backend failed (OOM, restarting); another may not
    └── WebUIEmptyResult        200 without the pictures asked for (SD.Next on any error,
                                an interrupted model load, an upscale that did nothing)
"""

from __future__ import annotations

from typing import Any

from storage.vocab import StorageFault


class DrawbridgeError(Exception):
    """Base of every error drawbridge raises on purpose."""

    key: str = "error.internal"
    private: bool = False  # said only to the user (a DM, an ephemeral), never in the chat

    def __init__(self, key: str | None = None, /, **params: Any) -> None:
        self.key = key or type(self).key
        self.params = params
        super().__init__(self.render("en"))

    def render(self, locale: str | None = "en") -> str:
        """The sentence for a user, in their language."""
        from bot.i18n import t

        return t(locale, self.key, **self.params)


class UserInputError(DrawbridgeError):
    """The request itself is wrong; nothing is queued or charged."""

    key = "error.input"


class OptionError(UserInputError):
    """A flag is unknown, malformed or out of range."""

    key = "option.unknown"


class ImageError(UserInputError):
    """An image cannot be used."""

    key = "image.unreadable"


class RefusedError(DrawbridgeError):
    """The request is fine but cannot be accepted now."""


class QuotaExceeded(RefusedError):
    """Not enough credits left for this job."""

    key = "quota.exceeded"


class QueueFull(RefusedError):
    """The user already has the maximum number of queued jobs."""

    key = "queue.full"


class NotAllowed(RefusedError):
    """The user may not do this (for example cancel another user's job)."""

    key = "error.not_allowed"


class ShuttingDown(RefusedError):
    """drawbridge is stopping (a restart or a deploy) and takes no new work; nothing charged."""

    key = "service.restarting"


class NoBackendCanDraw(RefusedError):
    """No backend has everything the request needs; the sentence names what they offer."""

    key = "route.none"


class NotFound(DrawbridgeError):
    """Something the user named does not exist."""

    key = "error.not_found"


class DatabaseError(DrawbridgeError):
    """The database cannot be reached or used; the key names the reason (db.auth, …)."""

    key = "db.unreachable"


class ListenError(DrawbridgeError):
    """The health and metrics server cannot listen on HTTP_LISTEN (port taken, bad host)."""

    key = "http.cannot_listen"


class DeliveryFailed(DrawbridgeError):
    """`Replier.deliver` gave up: the platform did not confirm the result within its retries.

    The engine fails the job and refunds it, then asks the replier to tell the user (the
    adapter sends that once the platform is reachable again)."""

    key = "delivery.reason"


class WebUIError(DrawbridgeError):
    """A WebUI backend failed; `retryable` says whether another backend may succeed."""

    key = "webui.error"
    retryable = False

    def __init__(self, key: str | None = None, /, **params: Any) -> None:
        params.setdefault("url", "?")
        params.setdefault("path", "?")
        super().__init__(key, **params)


class WebUIUnreachable(WebUIError):
    """Connection refused, reset or name not resolved."""

    key = "webui.unreachable"
    retryable = True


class WebUITimeout(WebUIError):
    """The WebUI did not answer in time."""

    key = "webui.timeout"
    retryable = True


class WebUIAuthError(WebUIError):
    """401: credentials missing or wrong."""

    key = "webui.auth"


class WebUINoAPI(WebUIError):
    """404 on an /sdapi/v1 route: the WebUI runs without --api (or is not a WebUI)."""

    key = "webui.no_api"


class WebUIRequestError(WebUIError):
    """The WebUI rejected the request or failed while running it."""

    key = "webui.request"


class WebUIServerError(WebUIRequestError):
    """A 5xx answer (CUDA out of memory, a proxy's 502/503/504): the backend's failure, so the
    job is tried on another backend."""

    retryable = True


class WebUIEmptyResult(WebUIError):
    """A 200 that carries none of the pictures asked for: the backend's failure, not the job's."""

    key = "webui.empty"
    retryable = True


class StorageError(DrawbridgeError):
    """The database failed (storage.vocab.StorageFault); the write was rolled back whole."""

    key = "storage.unavailable"

    @classmethod
    def from_fault(cls, fault: StorageFault) -> StorageError:
        """The user-facing error for a storage fault (its key says which sentence)."""
        return cls(fault.key)


# keys whose sentence names no host, port, path, raw error text or operator setting
_SAFE_WEBUI_KEYS = {"webui.empty", "webui.wrong_model", "webui.not_upscaled", "webui.stalled"}


def for_users(error: DrawbridgeError) -> DrawbridgeError:
    """What a chat user is told about `error`: a backend failure without its internals (host,
    port, the WebUI's raw error text, operator advice), saying what the user can do. The
    operator reads the detail in the log and in `drawbridge backends`."""
    if not isinstance(error, WebUIError) or error.key in _SAFE_WEBUI_KEYS:
        return error
    if isinstance(error, WebUIAuthError | WebUINoAPI):
        return DrawbridgeError("webui.misconfigured")
    if isinstance(error, WebUITimeout):
        return DrawbridgeError("webui.too_slow")
    if "OutOfMemory" in str(error.params.get("detail", "")):
        return DrawbridgeError("webui.out_of_memory")
    if error.key == "webui.sampler_not_found":
        return DrawbridgeError("webui.unknown_sampler")
    if isinstance(error, WebUIRequestError) and not isinstance(error, WebUIServerError):
        if error.key != "webui.bad_response":
            return DrawbridgeError("webui.rejected")
    return DrawbridgeError("webui.failed")


class Paused(RefusedError):
    """An admin paused drawing (`/admin pause`): new jobs are refused with the reason."""

    key = "admin.paused"


class Banned(RefusedError):
    """The user is banned; said privately, once per period."""

    key = "ban.banned"
    private = True


class NsfwWithheld(RefusedError):
    """NSFW_CHECK=block flagged a result: it is not sent, and the job is refunded."""

    key = "nsfw.withheld"


class TierRefused(RefusedError):
    """The request asks for more than the user's tier allows (size, steps, pictures, model)."""

    key = "tier.too_much"
    private = True
