"""`drawbridge` command line: run, draw, backends, quota, db upgrade, dev-webui."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.errors import DrawbridgeError, ImageError, OptionError
from bot.i18n import t
from bot.settings import Settings

EXIT_USAGE = 2
EXIT_FAILED = 1

DRAW_EPILOG = """\
draw flags: PROMPT [--neg TEXT] [--ar W:H | --size WxH] [--steps N] [--cfg X] [--seed N]
  [--sampler NAME] [--model NAME] [--n N] [--strength X] [--hires | --no-hires] [--preset NAME]
  [--invert] [--fill original|fill|noise|nothing] [--only-masked]
CLI only: [--init-image PATH] [--mask PATH] [--out DIR] [--user NAME]
example: drawbridge draw "a red fox" --seed 42 --steps 20 --size 512x512
"""


class CliError(Exception):
    """A message for the terminal and an exit code; never a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="drawbridge",
        description="Stable Diffusion WebUI in Discord and Telegram, with fair queues and quotas.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="start every chat adapter that has a token")
    draw = sub.add_parser(
        "draw",
        help="draw one job from the terminal (same parser, quota, queue and WebUI client)",
        epilog=DRAW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    draw.add_argument("words", nargs=argparse.REMAINDER, help="PROMPT and draw flags")
    sub.add_parser("backends", help="health, loaded model and queue of each WebUI backend")
    quota = sub.add_parser("quota", help="show or grant credits")
    qsub = quota.add_subparsers(dest="quota_command", required=True, metavar="ACTION")
    show = qsub.add_parser("show", help="a user's credits (USER is platform:id, or a CLI name)")
    show.add_argument("user")
    grant = qsub.add_parser("grant", help="give a user N extra credits that survive resets")
    grant.add_argument("user")
    grant.add_argument("amount", type=int)
    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("upgrade", help="apply migrations (also done at every start)")
    dev = sub.add_parser(
        "dev-webui",
        help="a stand-in SD-WebUI that draws PLACEHOLDER images (no GPU, for trying and tests)",
        description="Serves the SD-WebUI API on 127.0.0.1 and answers with placeholder PNGs of "
        "the right size. It draws no real images.",
    )
    dev.add_argument("--port", type=int, default=7860)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--delay", type=float, default=2.0, help="seconds per job (default 2)")
    return parser


def user_key(name: str) -> str:
    """'telegram:123' stays as it is; a bare name is a CLI user."""
    return name if ":" in name else f"cli:{name}"


def load_settings() -> Settings:
    """Settings from the environment and .env, with errors an operator can act on."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise CliError(f"Settings are not valid: {problems}", EXIT_USAGE) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `drawbridge` console script."""
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_dispatch(args))
    except CliError as exc:
        print(f"drawbridge: {exc}", file=sys.stderr)
        return exc.code
    except DrawbridgeError as exc:
        print(f"drawbridge: {exc.render('en')}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, OptionError | ImageError) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "dev-webui":
        from bot.devwebui import serve

        print(
            f"dev-webui: a stand-in SD-WebUI drawing PLACEHOLDER images on "
            f"http://{args.host}:{args.port} ({args.delay:g} s per job). Ctrl-C stops it.",
            file=sys.stderr,
        )
        await serve(args.port, args.delay, host=args.host)
        return 0
    settings = load_settings()
    from bot.logs import setup_logging

    setup_logging(settings)
    if args.command == "run":
        from bot.app import run

        return await run(settings)
    if args.command == "draw":
        return await _draw(settings, list(args.words))
    if args.command == "backends":
        return await _backends(settings)
    if args.command == "quota":
        return await _quota(settings, args)
    if args.command == "db":
        from storage.db import upgrade

        await upgrade(settings.database_url)
        print("database is up to date")
        return 0
    raise CliError(f"unknown command {args.command}", EXIT_USAGE)


def _take(words: list[str], flag: str) -> str | None:
    """Remove `flag VALUE` (or flag=VALUE) from words; returns VALUE."""
    for i, word in enumerate(words):
        if word == flag:
            if i + 1 >= len(words):
                raise CliError(f"{flag} needs a value", EXIT_USAGE)
            value = words[i + 1]
            del words[i : i + 2]
            return value
        if word.startswith(flag + "="):
            del words[i]
            return word.split("=", 1)[1]
    return None


def _quote(word: str) -> str:
    return f'"{word}"' if (" " in word or not word) and '"' not in word else word


async def _draw(settings: Settings, words: list[str]) -> int:
    from bot.cli_draw import draw_once

    init = _take(words, "--init-image")
    mask = _take(words, "--mask")
    out = Path(_take(words, "--out") or "outputs")
    user = _take(words, "--user") or "local"
    text = " ".join(_quote(w) for w in words)
    started = time.monotonic()
    result = await draw_once(
        settings,
        text,
        user=user,
        init_path=Path(init) if init else None,
        mask_path=Path(mask) if mask else None,
        out_dir=out,
    )
    for note in result.notes:
        print(note)
    for path, image in zip(result.paths, result.images, strict=True):
        print(f"{path}  seed {image.seed}  {image.width}x{image.height}")
    print(
        f"model {result.model or '(loaded)'}  time {time.monotonic() - started:.1f}s  "
        f"cost {result.cost} credits"
    )
    return 0


async def _backends(settings: Settings) -> int:
    from storage.db import Database

    async with Database(settings.database_url, **settings.database_options()) as db:
        jobs = await db.jobs.list_by_state(["queued", "running"])
    running: dict[str, int] = {}
    for job in jobs:
        if job.state == "running" and job.backend:
            running[job.backend] = running.get(job.backend, 0) + 1
    failed = 0
    for url in settings.webui_urls:
        line, ok = await _backend_line(settings, url)
        failed += not ok
        print(f"{line}  drawbridge jobs on it: {running.get(url, 0)}")
    queued = [job for job in jobs if job.state == "queued"]
    users = len({job.user_key for job in queued})
    print(f"queue: {len(queued)} job(s) waiting from {users} user(s)")
    return EXIT_FAILED if failed == len(settings.webui_urls) else 0


async def _backend_line(settings: Settings, url: str) -> tuple[str, bool]:
    """One backend's health, loaded model and what it is doing."""
    from bot.webui.client import WebUIClient

    async with WebUIClient(
        url,
        auth=settings.webui_credentials(),
        timeout=settings.webui_connect_timeout * 2,
        connect_timeout=settings.webui_connect_timeout,
    ) as client:
        try:
            await client.ping()
            options = await client.options()
            progress = await client.progress(skip_current_image=True)
        except DrawbridgeError as exc:
            return f"{client.display}  DOWN  {exc.render('en')}", False
        busy = (
            f"busy {progress.progress:.0%} ({progress.state.get('job') or 'job'})"
            if progress.active
            else "idle"
        )
        model = options.get("sd_model_checkpoint")
        return f"{client.display}  UP  model {model}  {busy}", True


async def _quota(settings: Settings, args: argparse.Namespace) -> int:
    from bot.quota import Quotas
    from storage.db import Database

    key = user_key(args.user)
    async with Database(settings.database_url, **settings.database_options()) as db:
        quotas = Quotas(db, settings)
        if args.quota_command == "grant":
            if args.amount <= 0:
                raise CliError("N must be a positive number of credits", EXIT_USAGE)
            balance = await quotas.grant(key, args.amount)
            print(t("en", "quota.granted", amount=args.amount, user=key, balance=balance))
            return 0
        view: Any = await quotas.show(key)
        print(
            t(
                "en",
                "quota.show",
                user=key,
                balance=view.available,
                allowance=view.allowance,
                bonus=view.bonus,
                reserved=view.reserved,
                reset=quotas.reset_label(),
            )
        )
        return 0


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig()
    raise SystemExit(main())
