"""Operating a running `drawbridge run`: /healthz, /readyz and /metrics on HTTP_LISTEN, the one
INFO line per finished job (without its prompt), LOG_FORMAT=json, and HTTP_LISTEN's errors.

The bot runs as a real subprocess against the fake Telegram and a DevWebUI in this process;
the test reads its endpoints as Prometheus and a container healthcheck would.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from bot.logs import setup_logging
from bot.metrics import Metrics, Snapshot
from bot.monitor import Monitor
from bot.service import Service
from bot.settings import Settings
from devwebui import DevWebUI
from storage.vocab import JobState
from tests.fakes.telegram_api import FakeTelegram
from tests.harness.cli import free_port
from tests.harness.engine import ALICE, BOB, eventually, running_engine, small
from tests.harness.memory import MemoryReplier
from tests.harness.process import BotProcess, bot_env, jobs, photos, until
from tests.harness.settings import make_settings

pytestmark = pytest.mark.timeout(180)

PROMPTS = ("a quiet harbour", "a red kite", "a stone bridge")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(page: dict[Any, float], name: str, **labels: str) -> float:
    """One sample's value; KeyError naming it when it is missing."""
    key = (name, tuple(sorted(labels.items())))
    if key not in page:
        raise KeyError(f"{name}{labels} not in /metrics: {sorted(k for k in page if k[0] == name)}")
    return page[key]


async def scrape(http: httpx.AsyncClient) -> dict[Any, float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_health_readiness_metrics_and_job_lines_of_a_running_bot(tmp_path) -> None:
    port = free_port()  # the WebUI is not there yet: no backend is up at start
    async with FakeTelegram() as fake:
        env = bot_env(
            tmp_path,
            fake,
            DevWebUI(port=port),
            MAX_ATTEMPTS="2",
            BACKEND_COOLOFF="0.1",
            WEBUI_NAMES="gpu-a",
        )
        async with await BotProcess(tmp_path, env).start() as bot:
            root = await bot.http_root()
            async with httpx.AsyncClient(base_url=root, timeout=10) as http:
                health = await http.get("/healthz")
                assert health.status_code == 200, health.text
                body = health.json()
                assert body["status"] == "ok" and body["database"] == "ok"
                assert body["adapters"] == {"telegram": "connected"}
                assert body["backends"] == [{"backend": "gpu-a", "state": "down", "running": 0}]
                ready = await http.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["missing"] == ["no backend up"]
                page = await scrape(http)
                assert value(page, "drawbridge_backend_up", backend="gpu-a") == 0
                assert value(page, "drawbridge_jobs_total", outcome="delivered") == 0

                async with DevWebUI(port=port, delay=3.0) as webui:

                    async def is_ready() -> bool:
                        return (await http.get("/readyz")).status_code == 200

                    await until(is_ready, 20, "/readyz 200 once the WebUI is up")
                    assert (await http.get("/healthz")).json()["backends"][0]["state"] == "up"

                    # a burst of one user: queued behind the slow first render
                    ann, bob = fake.user(3001, "Ann"), fake.user(3002, "Bob")
                    for i, prompt in enumerate(PROMPTS):
                        fake.send_text(bob, bob, f"/draw {prompt} --seed {i}")

                    async def bob_queued() -> dict[Any, float] | None:
                        # all three taken in (so /cancel finds the third), one still queued
                        if len(await jobs(env["DATABASE_URL"])) < len(PROMPTS):
                            return None
                        page = await scrape(http)
                        queued = value(page, "drawbridge_queue_depth")
                        return page if queued >= 1 else None

                    page = await until(bob_queued, 30, "Bob's jobs queued")
                    assert value(page, "drawbridge_queue_users") == 1  # one user, not a series each
                    queued = value(page, "drawbridge_queue_depth")
                    assert value(page, "drawbridge_queued_per_user_gcount") == 1
                    assert value(page, "drawbridge_queued_per_user_gsum") == queued
                    assert not any("3002" in str(key) for key in page)  # no user ids as labels
                    fake.send_text(bob, bob, "/cancel")  # his newest
                    await until(
                        lambda: cancelled(env["DATABASE_URL"]), 20, "Bob's newest cancelled"
                    )
                    webui.delay = 0.05
                    # (updates are handled concurrently: which of the three is newest is not fixed)
                    await until(
                        lambda: sum(photos(fake)[p] for p in PROMPTS) == 2, 60, "Bob's pictures"
                    )

                    webui.fail_next("oom", times=2)  # both attempts fail: a failover, then failed
                    fake.send_text(ann, ann, "/draw a broken vase --seed 9")

                    async def settled() -> dict[Any, float] | None:
                        page = await scrape(http)
                        done = value(page, "drawbridge_jobs_total", outcome="delivered")
                        failed = value(page, "drawbridge_jobs_total", outcome="failed")
                        return page if done == 2 and failed == 1 else None

                    page = await until(settled, 60, "two delivered, one failed")

            rows = await jobs(env["DATABASE_URL"])
            delivered = [j for j in rows if j.state == JobState.DELIVERED.value]
            assert len(delivered) == 2
            assert value(page, "drawbridge_jobs_total", outcome="cancelled") == 1
            assert value(page, "drawbridge_jobs_total", outcome="undelivered") == 0
            assert value(page, "drawbridge_credits_spent_total") == sum(j.cost for j in delivered)
            assert sum(j.cost for j in delivered) > 0
            # waited: every job a backend took (the failed one once, not per attempt; the
            # cancelled one too if it had been sent to wait on the WebUI's lock)
            taken = [j for j in rows if j.started_at is not None]
            assert len(taken) >= 3
            assert value(page, "drawbridge_job_wait_seconds_count") == len(taken)
            assert value(page, "drawbridge_job_run_seconds_count") == 2
            assert value(page, "drawbridge_failovers_total") == 1
            assert value(page, "drawbridge_backend_up", backend="gpu-a") == 1
            assert value(page, "drawbridge_messages_sent_total", platform="telegram") > 0
            assert value(page, "drawbridge_deliveries_retried_total", platform="telegram") == 0
            assert value(page, "drawbridge_gpu_idle_gap_seconds_count") >= 0  # exact: below
            assert not any("127.0.0.1" in str(key) or fake.token in str(key) for key in page)

            # one INFO line per finished job, with what an operator needs and never the prompt
            ended = [line for line in bot.lines if " INFO bot.engine: job finished: " in line]
            assert len(ended) == 4, bot.log
            by_outcome = {line.rsplit("outcome=", 1)[1]: line for line in ended}
            assert set(by_outcome) == {"delivered", "cancelled", "failed"}
            line = by_outcome["delivered"]
            for field in (
                "user=telegram:3002",
                "platform=telegram",
                "chat=3002",
                "mode=txt2img",
                "size=256x256",
                "steps=4",
                "backend=gpu-a",
                "seconds=",
            ):
                assert field in line, line
            assert {line.split("job_id=")[1].split()[0] for line in ended} >= {
                j.id for j in delivered
            }
            for prompt in (*PROMPTS, "a broken vase"):
                assert prompt not in bot.log  # not at INFO, nowhere
            await bot.terminate()


async def cancelled(url: str) -> bool:
    return any(j.state == JobState.CANCELLED.value for j in await jobs(url))


async def test_json_logs_are_one_object_a_line_and_carry_no_secret(tmp_path) -> None:
    async with FakeTelegram() as fake, DevWebUI(delay=0.05, auth=("ops", "hunter2-webui")) as ui:
        env = bot_env(tmp_path, fake, ui, LOG_FORMAT="json", WEBUI_AUTH="ops:hunter2-webui")
        async with await BotProcess(tmp_path, env).start() as bot:
            cy = fake.user(4001, "Cy")
            fake.send_text(cy, cy, "/draw a paper lantern --seed 4")
            await until(lambda: photos(fake)["a paper lantern"], 30, "the picture")
            await bot.wait_log("outcome=delivered")
            await bot.terminate()
    records = [json.loads(line) for line in bot.lines if line.strip()]  # every line parses
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    (job,) = [r for r in records if "outcome=" in r["message"]]
    assert job["level"] == "INFO" and job["logger"] == "bot.engine"
    assert job["job"]["outcome"] == "delivered" and job["job"]["user"] == "telegram:4001"
    assert job["job"]["size"] == "256x256" and job["job"]["cost"] > 0
    assert any(r["message"].startswith("drawbridge running") for r in records)
    secret = fake.token.partition(":")[2]
    for text in (fake.token, secret, "hunter2-webui", "a paper lantern"):
        assert text not in bot.log


def test_json_lines_mask_secrets_in_messages_and_tracebacks(capsys) -> None:
    token = "123456789:AAHfake-telegram-token-value_xyz"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(Settings(_env_file=None, telegram_token=token, log_format="json"))
        log = logging.getLogger("drawbridge.test")
        log.warning("POST https://api.telegram.org/bot%s/getUpdates", token)
        try:
            raise RuntimeError(f"failed at /bot{token}/sendPhoto")
        except RuntimeError:
            log.exception("upload failed")
    finally:
        root.handlers[:], root.level = saved
    lines = capsys.readouterr().err.strip().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "POST https://api.telegram.org/bot***/getUpdates"
    assert second["message"] == "upload failed" and "/bot***/sendPhoto" in second["exc_info"]
    assert token not in "\n".join(lines)


async def test_a_taken_port_is_one_line_and_a_failed_exit(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with FakeTelegram() as fake, DevWebUI() as webui:
            env = bot_env(tmp_path, fake, webui, HTTP_LISTEN=f"127.0.0.1:{port}", LOG_LEVEL="ERROR")
            bot = await BotProcess(tmp_path, env).start(ready=None)
            code = await bot.wait(60)
    assert code == 1, bot.log
    (line,) = [line for line in bot.lines if line.strip()]
    assert line.startswith(
        f"drawbridge: Cannot serve /healthz and /metrics on HTTP_LISTEN=127.0.0.1:{port}"
    )
    assert "HTTP_LISTEN=off" in line
    assert not fake.calls_of("getUpdates")  # it stopped before taking any update


async def test_http_listen_off_runs_without_the_server(tmp_path) -> None:
    async with FakeTelegram() as fake, DevWebUI() as webui:
        env = bot_env(tmp_path, fake, webui, HTTP_LISTEN="off")
        async with await BotProcess(tmp_path, env).start() as bot:
            assert await bot.terminate() == 0
    assert "drawbridge running" in bot.log and "/healthz" not in bot.log


@pytest.mark.parametrize(
    ("written", "address"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("[::1]:8080", ("::1", 8080)),
        ("off", None),
        ("", None),
        (" OFF ", None),
    ],
)
def test_http_listen_as_operators_write_it(written, address) -> None:
    assert Settings(_env_file=None, http_listen=written).http_address() == address


@pytest.mark.parametrize("written", ["8080", "localhost", "127.0.0.1:http", "1.2.3.4:70000"])
def test_a_malformed_http_listen_says_what_to_write(written) -> None:
    with pytest.raises(ValidationError, match=re.escape("must be HOST:PORT, e.g. 127.0.0.1:8080")):
        Settings(_env_file=None, http_listen=written)


def test_default_http_listen_is_local_and_log_format_is_text() -> None:
    settings = Settings(_env_file=None)
    assert settings.http_address() == ("127.0.0.1", 8080)
    assert settings.log_format == "text"
    with pytest.raises(ValidationError, match="LOG_FORMAT 'xml' must be text or json"):
        Settings(_env_file=None, log_format="xml")


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(process=False), Metrics(process=False)
    one.job_ended("delivered", cost=3, ran=1.5)
    one.watch(lambda: Snapshot(queued=4, per_user=(1, 3)))
    first, second = samples(one.render().decode()), samples(two.render().decode())
    assert value(first, "drawbridge_jobs_total", outcome="delivered") == 1
    assert value(first, "drawbridge_credits_spent_total") == 3
    assert value(first, "drawbridge_queue_depth") == 4
    assert value(first, "drawbridge_queued_per_user_bucket", le="1.0") == 1
    assert value(first, "drawbridge_queued_per_user_bucket", le="2.0") == 1
    assert value(first, "drawbridge_queued_per_user_bucket", le="3.0") == 2
    assert value(second, "drawbridge_jobs_total", outcome="delivered") == 0
    assert value(second, "drawbridge_queue_depth") == 0


async def test_gpu_idle_gaps_are_counted_between_jobs_while_work_waits(tmp_path) -> None:
    async with (
        DevWebUI(delay=1.0) as webui,
        running_engine(tmp_path, [webui]) as engine,
    ):
        replier = MemoryReplier()
        await engine.submit(ALICE, small("alone"), replier)
        await replier.wait(lambda r: len(r.results) == 1)
        # it found the backend idle with nothing waiting: no gap
        assert value(_page(engine), "drawbridge_gpu_idle_gap_seconds_count") == 0
        for prompt in ("one", "two", "three"):
            await engine.submit(BOB, small(prompt), replier)
        await replier.wait(lambda r: len(r.results) == 4)
        # the second and third of the burst each followed a job while work waited; one of them
        # may have been prefetched onto the WebUI's lock already (no gap: it went straight on)
        assert value(_page(engine), "drawbridge_gpu_idle_gap_seconds_count") in (1, 2)

        async def page() -> dict[Any, float]:
            return _page(engine)

        done = await eventually(
            page, lambda p: value(p, "drawbridge_jobs_total", outcome="delivered") == 4
        )
        assert value(done, "drawbridge_job_wait_seconds_count") == 4


def _page(engine: Any) -> dict[Any, float]:
    return samples(engine.metrics.render().decode())


async def test_healthz_is_503_once_the_database_is_gone(tmp_path) -> None:
    settings = make_settings(tmp_path, ["http://127.0.0.1:9"], http_listen="127.0.0.1:0")
    service = Service(settings)  # its one backend refuses connections: down
    listen = settings.http_address()
    assert listen is not None
    try:
        await service.__aenter__()
        async with (
            Monitor(service, listen, lambda: {"discord": "connected"}) as monitor,
            httpx.AsyncClient(base_url="http://{}:{}".format(*monitor.address)) as http,
        ):
            healthy = await http.get("/healthz")
            assert healthy.status_code == 200 and healthy.json()["adapters"] == {
                "discord": "connected"
            }
            ready = await http.get("/readyz")  # connected, but the one backend is down
            assert ready.status_code == 503 and ready.json()["missing"] == ["no backend up"]
            await service.aclose()  # the database connection is gone
            broken = await http.get("/healthz")
            assert broken.status_code == 503
            assert broken.json()["status"] == "database unavailable"
            assert broken.json()["database"] != "ok"
    finally:
        await service.aclose()
