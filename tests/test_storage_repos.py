"""Jobs, users, actions and results repositories: round trips and restarts."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.types import JobState
from storage.db import Database
from storage.jobs import new_job_id

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PARAMS = json.dumps({"requester": {"platform": "telegram", "user_id": "42"}, "spec": {"n": 2}})


async def make_job(db: Database, *, user: str = "telegram:42", **kwargs: Any) -> str:
    job = await db.jobs.create(
        user_key=user, platform="telegram", prompt="a cat", params=PARAMS, cost=3, **kwargs
    )
    return job.id


# --- jobs ----------------------------------------------------------------------------------


async def test_job_round_trip(db: Database) -> None:
    reply = json.dumps({"chat": 7, "message": 99})
    created = await db.jobs.create(
        id="abc123",
        user_key="telegram:42",
        platform="telegram",
        chat_id="7",
        mode="img2img",
        prompt="a cat, 猫",
        params=PARAMS,
        cost=12,
        reply_ref=reply,
        created_at=T0,
    )
    job = await db.jobs.get("abc123")
    assert job is not None
    assert job == created
    assert (job.state, job.mode, job.cost, job.attempts, job.chat_id) == (
        "queued",
        "img2img",
        12,
        0,
        "7",
    )
    assert json.loads(job.params) == json.loads(PARAMS)
    assert job.reply_ref == reply
    assert json.loads(job.result_refs) == []
    assert job.created_at == T0 and job.created_at.tzinfo is not None
    assert job.started_at is None and job.finished_at is None
    assert await db.jobs.get("missing") is None


async def test_job_create_serialises_objects(db: Database) -> None:
    job = await db.jobs.create(
        user_key="u:1", platform="u", prompt="p", params={"seed": 5}, cost=1, reply_ref={"m": 1}
    )
    stored = await db.jobs.get(job.id)
    assert stored is not None
    assert (json.loads(stored.params), json.loads(stored.reply_ref or "")) == (
        {"seed": 5},
        {"m": 1},
    )


async def test_set_state_records_times_and_fields(db: Database) -> None:
    job_id = await make_job(db)
    assert await db.jobs.set_state(job_id, JobState.RUNNING, backend="http://gpu:7860", attempts=1)
    running = await db.jobs.get(job_id)
    assert running is not None
    assert (running.state, running.backend, running.attempts) == ("running", "http://gpu:7860", 1)
    assert running.started_at is not None and running.finished_at is None
    refs = json.dumps(["ab" * 32, "cd" * 32])
    assert await db.jobs.set_state(job_id, "delivered", result_refs=refs)
    delivered = await db.jobs.get(job_id)
    assert delivered is not None
    assert delivered.state == "delivered" and json.loads(delivered.result_refs) == [
        "ab" * 32,
        "cd" * 32,
    ]
    assert delivered.finished_at is not None and delivered.finished_at >= running.started_at
    assert await db.jobs.set_state("missing", "delivered") is False
    with pytest.raises(TypeError):
        await db.jobs.set_state(job_id, "failed", prompt="changed")
    with pytest.raises(ValueError):
        await db.jobs.set_state(job_id, "exploded")


async def test_set_state_only_from_is_compare_and_set(db: Database) -> None:
    job_id = await make_job(db)
    await db.jobs.set_state(job_id, "running")
    # Cancelling "only while queued" loses against the worker that already took the job.
    assert await db.jobs.set_state(job_id, "cancelled", only_from=["queued"]) is False
    job = await db.jobs.get(job_id)
    assert job is not None and job.state == "running"
    assert await db.jobs.set_state(job_id, "cancelled", only_from=["queued", "running"])
    job = await db.jobs.get(job_id)
    assert job is not None and job.state == "cancelled"


async def test_list_by_state_oldest_first_and_requeue_running(db: Database) -> None:
    ids = [
        await make_job(db, created_at=T0 + timedelta(seconds=s), id=f"j{s}") for s in (3, 1, 2, 0)
    ]
    assert ids == ["j3", "j1", "j2", "j0"]
    await db.jobs.set_state("j1", "running", backend="http://a")
    await db.jobs.set_state("j2", "running")
    await db.jobs.set_state("j3", "delivered")
    assert [j.id for j in await db.jobs.list_by_state(["queued"])] == ["j0"]
    assert [j.id for j in await db.jobs.list_by_state(["running", "delivered"])] == [
        "j1",
        "j2",
        "j3",
    ]
    # After a restart, jobs the old process was running are queued again, in order.
    assert await db.jobs.requeue_running() == ["j1", "j2"]
    assert await db.jobs.requeue_running() == []
    queued = await db.jobs.list_by_state([JobState.QUEUED])
    assert [j.id for j in queued] == ["j0", "j1", "j2"]
    assert all(j.backend is None and j.started_at is None for j in queued)


async def test_count_active(db: Database) -> None:
    a, b, _queued = [await make_job(db) for _ in range(3)]
    await make_job(db, user="discord:1")
    await db.jobs.set_state(a, "running")
    await db.jobs.set_state(b, "failed")
    assert await db.jobs.count_active("telegram:42") == 2
    assert await db.jobs.count_active("discord:1") == 1
    assert await db.jobs.count_active("nobody") == 0


async def test_delete_finished_before_takes_results_and_actions(db: Database) -> None:
    old, recent, queued = [await make_job(db) for _ in range(3)]
    await db.jobs.set_state(old, "delivered", finished_at=T0)
    await db.jobs.set_state(recent, "delivered", finished_at=T0 + timedelta(days=10))
    await db.results.add(old, 0, "ref-old", 1, 64, 64, "")
    key = await db.actions.create(old, 0, "upscale")
    assert await db.jobs.delete_finished_before(T0 + timedelta(days=1)) == 1
    assert await db.jobs.get(old) is None
    assert await db.results.for_job(old) == []
    assert await db.actions.get(key) is None
    assert await db.jobs.get(recent) is not None and await db.jobs.get(queued) is not None


def test_new_job_id_is_short_and_unambiguous() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 8 and not set(i) & set("01lo") for i in ids)


# --- users ---------------------------------------------------------------------------------


async def test_user_upsert_refreshes_name_and_keeps_created_at(db: Database) -> None:
    first = await db.users.upsert("telegram:42", "telegram", "Ann", "en")
    second = await db.users.upsert("telegram:42", "telegram", "Ann B.", "zh")
    assert (second.display_name, second.locale) == ("Ann B.", "zh")
    assert second.created_at == first.created_at
    assert await db.users.get("telegram:42") == second
    assert await db.users.get("telegram:43") is None


async def test_settings_save_only_named_fields(db: Database) -> None:
    assert await db.users.get_settings("telegram:42") is None
    saved = await db.users.save_settings("telegram:42", width=768, height=512, preset="anime")
    assert (saved.width, saved.height, saved.preset, saved.steps) == (768, 512, "anime", None)
    saved = await db.users.save_settings("telegram:42", steps=30, negative="blurry")
    assert (saved.width, saved.preset, saved.steps, saved.negative) == (768, "anime", 30, "blurry")
    saved = await db.users.save_settings("telegram:42", preset=None)  # None clears
    assert (saved.preset, saved.width) == (None, 768)
    assert await db.users.get_settings("telegram:42") == saved
    with pytest.raises(TypeError):
        await db.users.save_settings("telegram:42", cfg=7)


# --- actions -------------------------------------------------------------------------------


async def test_action_keys_survive_a_restart(db_url: str) -> None:
    async with Database(db_url) as database:
        job_id = await make_job(database)
        keys = [await database.actions.create(job_id, i, "variations") for i in range(20)]
        cancel = await database.actions.create(job_id, 0, "cancel")
    assert len(set(keys)) == 20
    allowed = set(string.ascii_letters + string.digits + "-_")
    assert all(0 < len(k) <= 12 and set(k) <= allowed for k in [*keys, cancel])
    async with Database(db_url) as database:
        action = await database.actions.get(keys[7])
        assert action is not None
        assert (action.job_id, action.image_index, action.kind) == (job_id, 7, "variations")
        assert (await database.actions.get(cancel)) is not None
        assert await database.actions.get("nope") is None


async def test_action_kind_is_checked(db: Database) -> None:
    job_id = await make_job(db)
    with pytest.raises(ValueError):
        await db.actions.create(job_id, 0, "explode")


# --- results -------------------------------------------------------------------------------


async def test_results_round_trip_and_retention(db: Database) -> None:
    job_id, other = await make_job(db), await make_job(db)
    second = await db.results.add(job_id, 1, "ref-b", 2**32 - 1, 512, 768, "Steps: 20")
    first = await db.results.add(job_id, 0, "ref-a", 7, 512, 768, "Steps: 20, Seed: 7")
    shared = await db.results.add(other, 0, "ref-a", 7, 512, 768, "")
    assert first.id is not None and second.id is not None and shared.id is not None
    got = await db.results.for_job(job_id)
    assert [(r.image_index, r.image_ref, r.seed, r.width, r.height) for r in got] == [
        (0, "ref-a", 7, 512, 768),
        (1, "ref-b", 2**32 - 1, 512, 768),
    ]
    assert got[0].infotext == "Steps: 20, Seed: 7"

    now = datetime.now(UTC)
    assert await db.results.older_than(now - timedelta(hours=1)) == []
    old = await db.results.older_than(now + timedelta(seconds=1))
    assert {r.id for r in old} == {first.id, second.id, shared.id}
    # A naive datetime is taken as UTC.
    assert len(await db.results.older_than(now.replace(tzinfo=None) + timedelta(seconds=1))) == 3

    assert await db.results.delete([first.id, second.id]) == 2
    assert await db.results.for_job(job_id) == []
    # ref-a is still used by the other job's result; ref-b is not.
    assert await db.results.refs_in_use(["ref-a", "ref-b"]) == {"ref-a"}
    assert await db.results.delete([]) == 0
