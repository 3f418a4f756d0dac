"""Which job a WebUI's progress belongs to.

GET /sdapi/v1/progress describes whatever the WebUI runs: another user's prefetched job while
ours is still being encoded (encoding happens after the lock is released), a job of another
client on a shared server, a UI user's. A job's progress, preview and interrupt are used only
once the backend is proven to run *that* job:

- task mode (A1111 >= 1.6 and Forge in webui mode): every request carries a `force_task_id`
  and POST /internal/progress for that id says whether it is queued, running or finished;
- timestamp mode (SD.Next, A1111 --nowebui, upscales): the `job_timestamp` seen just before
  the request was sent is its baseline; a job adopts the first timestamp that differs from it,
  from those of our earlier jobs, and whose job looks like ours (its kind on A1111/Forge, its
  step count) — and only when every earlier job of ours on that backend is already bound. The
  timestamp is compared again before every use; a progress that falls back means a new job
  started within the same second.
"""

from __future__ import annotations

from bot.backends import Needs
from bot.webui.client import Progress
from bot.webui.flavour import Flavour

# A job this close to its end is left to finish (and its result dropped): an interrupt sent
# now could land after it ended, on whatever the WebUI starts next.
INTERRUPT_MARGIN = 0.5
# A1111 shows 0.01 from state.begin on; at or below it nothing samples (a model loads).
LOADING_PROGRESS = 0.011
# progress may fall back this much within one job (a hires pass restarts its steps) …
FALLBACK = 0.05
SEEN_KEPT = 16  # timestamps of our own jobs remembered per backend


def task_id(job_id: str, attempt: int) -> str:
    """The force_task_id of one attempt at a job (shaped like the WebUI's own task ids)."""
    return f"task(drawbridge-{job_id}-{attempt})"


def interruptible(eta: float | None) -> bool:
    """Whether an interrupt sent now lands on this job (None: it has only just started)."""
    return eta is None or eta > INTERRUPT_MARGIN


def sampling(progress: Progress) -> bool:
    """Whether the WebUI is sampling (not loading a model, not waiting, not idle): only then
    can a progress that does not move be a stall."""
    step, _ = progress.sampling
    return progress.active and (step > 0 or progress.progress > LOADING_PROGRESS)


def signature(progress: Progress) -> tuple[object, ...]:
    """What changes whenever the WebUI makes progress on anything."""
    step, steps = progress.sampling
    return (
        progress.job_timestamp,
        progress.state.get("job_no"),
        step,
        steps,
        round(progress.progress, 4),
        progress.active,
    )


def looks_like(progress: Progress, needs: Needs, flavour: Flavour) -> bool:
    """Whether the running job could be this one: A1111/Forge name API jobs by their kind
    (a UI job carries its task id instead), and its sampling pass has one of our step counts."""
    if flavour is not Flavour.SDNEXT and progress.job:
        job = progress.job
        if not (job == needs.webui_job or job.startswith("Batch ")):
            return False
    _, steps = progress.sampling
    return not (steps and needs.steps and steps not in needs.steps)


def fell_back(previous: float, now: float) -> bool:
    """A progress lower than the last one of the same job: another job started meanwhile."""
    return previous > 0 and now < previous - FALLBACK
