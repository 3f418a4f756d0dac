"""The delivery contract between the core and an adapter: settled only after
`Replier.deliver` returned; `DeliveryFailed` (or any error) fails and refunds the job and the
replier is asked to tell the user; a bookkeeping write never fails a drawn picture."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.errors import DeliveryFailed
from bot.types import JobResult
from devwebui import DevWebUI
from tests.harness.memory import MemoryChat, MemoryReplier, memory_service
from tests.harness.process import books_closed


class Unreachable(MemoryReplier):
    """A platform that never confirms the upload: the edge's retries ran out."""

    def __init__(self, error: Exception) -> None:
        super().__init__("unreachable")
        self.error = error
        self.tried: list[JobResult] = []

    async def deliver(self, result: JobResult) -> None:
        self.tried.append(result)
        raise self.error


@pytest.mark.parametrize("error", [DeliveryFailed(), OSError("connection reset")])
async def test_an_undeliverable_result_is_refunded_and_the_user_told(
    tmp_path: Path, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "asyncio")
    async with (
        DevWebUI(delay=0.05) as webui,
        memory_service(tmp_path, webui, daily_credits=10) as service,
    ):
        ann = MemoryChat(service, "ann")
        ann.replier = replier = Unreachable(error)
        await ann.send("/draw a message in a bottle")
        text = await ann.failure()
        assert len(replier.tried) == 1 and replier.results == []
        ((job_id, reason, refunded),) = replier.failures
        assert isinstance(reason, DeliveryFailed) and refunded == 1
        assert "could not be sent" in text
        view = await service.quota(ann.requester.key)
        assert (view.available, view.reserved) == (10, 0)
    (job,) = await books_closed(service.settings.database_url)
    assert (job.id, job.state, job.error) == (job_id, "failed", "delivery failed")
    assert job.notice == "sent"  # the user was told: nobody tells it again after a restart
    assert [r for r in caplog.records if r.name == "asyncio"] == []  # no lost task errors


async def test_settled_only_after_the_platform_confirmed(tmp_path: Path) -> None:
    seen: list[int] = []

    class Confirming(MemoryReplier):
        async def deliver(self, result: JobResult) -> None:
            # while the platform has not confirmed, the credits are still only reserved
            view = await service.quota("memory:ann")
            seen.append(view.reserved)
            await super().deliver(result)

    async with (
        DevWebUI(delay=0.05) as webui,
        memory_service(tmp_path, webui, daily_credits=10) as service,
    ):
        ann = MemoryChat(service, "ann")
        ann.replier = Confirming("ann")
        await ann.send("/draw a careful courier")
        await ann.result()
    assert seen == [1]
    (job,) = await books_closed(service.settings.database_url)
    assert job.state == "delivered"
