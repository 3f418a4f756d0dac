"""What both chat platforms share, written once: the `Adapter` lifecycle, a runtime with
readiness and background tasks, the outbox every message leaves through (per-chat lanes,
priorities, budgets, retries), the spool of results waiting for it, the per-user input limits,
the coalesced status message of a job, and the one status message of a user's burst of jobs
in a chat (burst.py).

Nothing here imports a platform library; each adapter plugs its own calls in.
"""

from adapters.kit.adapter import Adapter, AdapterStartError
from adapters.kit.limits import Admission, InputLimits
from adapters.kit.outbox import Flood, GaveUp, LaneSpec, Outbox, Priority, Verdict, Window
from adapters.kit.runtime import NotReady, Runtime, bot_route, token_of
from adapters.kit.spool import Held, Spool
from adapters.kit.status import StatusMessage, StatusView
from adapters.kit.tasks import TaskSet

__all__ = [
    "Adapter",
    "AdapterStartError",
    "Admission",
    "Flood",
    "GaveUp",
    "Held",
    "InputLimits",
    "LaneSpec",
    "NotReady",
    "Outbox",
    "Priority",
    "Runtime",
    "Spool",
    "StatusMessage",
    "StatusView",
    "TaskSet",
    "Verdict",
    "Window",
    "bot_route",
    "token_of",
]
