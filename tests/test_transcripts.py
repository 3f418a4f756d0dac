"""Core flows as chat transcripts through the one door, with the in-memory adapter: no platform,
no fakes, a real DevWebUI and a real SQLite file (errbot's test backend is the model)."""

from __future__ import annotations

import pytest

from bot.types import IMAGE_ACTIONS, JOB_ACTIONS, JobResult, Pictures
from devwebui import DevWebUI
from tests.harness.memory import MemoryChat, MemoryReplier, memory_service
from tests.harness.pictures import png_bytes, sample_photo

pytestmark = pytest.mark.timeout(60)


def payloads(webui: DevWebUI, kind: str = "txt2img") -> list[dict]:
    return [body for path, body in webui.requests if path.endswith(f"/{kind}")]


async def test_draw_a_fox_with_seed_1(tmp_path) -> None:
    async with DevWebUI(delay=0.05) as webui, memory_service(tmp_path, webui) as service:
        alice = MemoryChat(service, "alice")
        answer = await alice.send("/draw a fox --seed 1")
        assert answer.startswith("queued job ")
        result = await alice.result()
        (payload,) = payloads(webui)
        assert (payload["prompt"], payload["seed"]) == ("a fox", 1)
        assert [image.seed for image in result.images] == [1]
        assert result.prompt == "a fox" and result.job_id == alice.handles[0].job_id
        quota = await alice.send("/quota")
        assert f"{10_000 - result.cost} credits left today" in quota


async def test_a_wrong_flag_is_a_sentence_and_queues_nothing(tmp_path) -> None:
    async with DevWebUI(delay=0.05) as webui, memory_service(tmp_path, webui) as service:
        alice = MemoryChat(service, "alice")
        answer = await alice.send("/draw a castle --stepz 30")
        assert answer.startswith("Unknown option --stepz.") and "did you mean --steps?" in answer
        assert await alice.send("/queue") == "The queue is empty."
        assert "10000 credits left today" in await alice.send("/quota")
        assert payloads(webui) == []


async def test_cancel_the_newest_job_gives_the_credits_back(tmp_path) -> None:
    webui = DevWebUI(delay=0.05)
    await webui.start()
    await webui.kill()  # nothing can run: the jobs stay queued
    async with memory_service(tmp_path, webui) as service:
        alice = MemoryChat(service, "alice")
        assert await alice.send("/cancel") == "You have no queued or running jobs."
        await alice.send("/draw one")
        await alice.send("/draw two")
        newest = alice.handles[-1]
        queue = await alice.send("/queue")
        assert "Your jobs:" in queue and newest.job_id in queue
        answer = await alice.send("/cancel")
        assert answer == f"cancelled job {newest.job_id}, {newest.cost} credits back"
        returned = "credit was" if newest.cost == 1 else "credits were"  # plural forms
        assert await alice.failure() == f"Cancelled. Your {newest.cost} {returned} returned."
        bob = MemoryChat(service, "bob")
        first = alice.handles[0].job_id
        assert "Only the person who started this job" in await bob.send(f"/cancel {first}")


async def test_settings_become_the_defaults_of_the_next_draw(tmp_path) -> None:
    async with DevWebUI(delay=0.05) as webui, memory_service(tmp_path, webui) as service:
        alice = MemoryChat(service, "alice")
        shown = await alice.send("/settings steps 7")
        assert "Steps: 7" in shown
        wrong = await alice.send("/settings preset nope")
        assert wrong == "There is no preset called 'nope'. Presets: default."
        too_big = await alice.send("/settings size 4096x4096")
        assert "--size" in too_big
        await alice.send("/draw a fox")
        await alice.result()
        assert payloads(webui)[0]["steps"] == 7
        assert "Steps: preset's (4)" in await alice.send("/settings reset")


async def test_a_result_carries_working_button_keys_when_delivered(tmp_path) -> None:
    """The core stores every key of a result before delivery, so a replier sends it one-way."""
    async with DevWebUI(delay=0.05) as webui, memory_service(tmp_path, webui) as service:
        checked: list[JobResult] = []

        class Checking(MemoryReplier):
            async def deliver(self, result: JobResult) -> None:
                for image in result.images:  # already stored, before the platform sees them
                    assert (await service.original(image.keys["original"])).png == image.png
                checked.append(result)
                await super().deliver(result)

        alice = MemoryChat(service, "alice")
        alice.replier = Checking("alice")
        await alice.send("/draw an album --n 4")
        result = await alice.result()
        assert checked == [result]
        assert set(result.keys) == set(JOB_ACTIONS)
        assert all(set(image.keys) == set(IMAGE_ACTIONS) for image in result.images)
        keys = [*result.keys.values(), *(k for i in result.images for k in i.keys.values())]
        assert len(set(keys)) == 2 + 3 * 4


async def test_anyone_may_reroll_but_only_the_owner_may_delete(tmp_path) -> None:
    async with DevWebUI(delay=0.05) as webui, memory_service(tmp_path, webui) as service:
        alice, bob = MemoryChat(service, "alice"), MemoryChat(service, "bob")
        await alice.send("/draw a lighthouse --seed 5")
        result = await alice.result()
        answer = await bob.press(result.keys["reroll"], "reroll")
        assert answer.startswith("reroll: job ")
        reroll = await bob.result()  # charged to, and delivered to, whoever pressed
        assert reroll.prompt == "a lighthouse" and reroll.images[0].seed != 5
        assert "Only the person who started this job" in await bob.press(
            result.keys["delete"], "delete"
        )
        assert await alice.press(result.keys["delete"], "delete") == "delete: done"
        variation = await bob.press(result.images[0].keys["variations"], "variations")
        assert variation.startswith("variations: job ")
        await bob.result(2)
        assert payloads(webui, "img2img")[0]["prompt"] == "a lighthouse"


async def test_a_picture_makes_an_img2img_at_its_size(tmp_path) -> None:
    async with DevWebUI(delay=0.05) as webui, memory_service(tmp_path, webui) as service:
        alice = MemoryChat(service, "alice")
        picture = Pictures(init=png_bytes(sample_photo(320, 240)))
        await alice.send("/draw make it blue", picture)
        await alice.result()
        (body,) = payloads(webui, "img2img")
        assert (body["width"], body["height"]) == (320, 240) and "mask" not in body
        refused = await alice.send("/draw a mask alone", Pictures(mask=picture.init))
        assert refused.startswith("A mask needs a picture to go with it")


async def test_jobs_queued_at_shutdown_resume_in_their_conversation(tmp_path) -> None:
    webui = DevWebUI(delay=0.05)
    await webui.start()
    port = webui.port
    await webui.kill()
    async with memory_service(tmp_path, webui) as service:
        alice = MemoryChat(service, "alice")
        await alice.send("/draw after the restart")
    resumed = MemoryReplier("resumed")
    async with (
        DevWebUI(delay=0.05, port=port) as revived,
        memory_service(tmp_path, revived, resumed=lambda requester, ref: resumed),
    ):
        await resumed.wait(lambda r: r.results, timeout=15)
    assert resumed.results[0].job_id == alice.handles[0].job_id


async def test_a_cancel_button_from_before_job_ids_still_cancels(tmp_path) -> None:
    """Cancel buttons carry the job id; one drawn by an older version carries an action key."""
    webui = DevWebUI(delay=0.05)
    await webui.start()
    await webui.kill()
    async with memory_service(tmp_path, webui) as service:
        alice = MemoryChat(service, "alice")
        await alice.send("/draw still queued")
        job_id = alice.handles[0].job_id
        old_key = await service._engine.db.actions.create(job_id, 0, "cancel")  # white-box
        answer = await alice.send(f"/cancel {old_key}")
        assert answer == f"cancelled job {job_id}, {alice.handles[0].cost} credits back"
        again = await alice.send(f"/cancel {job_id}")
        assert again == f"There is no job {job_id} to cancel; it may have finished already."
