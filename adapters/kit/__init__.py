"""What both chat platforms share, written once: the `Adapter` lifecycle, a runtime with
readiness and background tasks, and the coalesced, throttled status message of a job.

Nothing here imports a platform library; each adapter plugs its own calls in.
"""

from adapters.kit.adapter import Adapter, AdapterStartError
from adapters.kit.runtime import NotReady, Runtime, bot_route, token_of
from adapters.kit.status import StatusMessage, StatusView
from adapters.kit.tasks import TaskSet

__all__ = [
    "Adapter",
    "AdapterStartError",
    "NotReady",
    "Runtime",
    "StatusMessage",
    "StatusView",
    "TaskSet",
    "bot_route",
    "token_of",
]
