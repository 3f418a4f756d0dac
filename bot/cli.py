"""`drawbridge` command line: run, draw, backends, quota, ban/unban, audit export, stats, db
upgrade/check/backup, dev-webui."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bot import __version__
from bot.commands import Where, command
from bot.errors import DrawbridgeError, UserInputError
from bot.i18n import t
from bot.options import Limits, draw_options, usage_line
from bot.presets import PresetBook
from bot.settings import Settings

EXIT_USAGE = 2
EXIT_FAILED = 1
# the most `drawbridge quota grant` gives at once (far below the database's 2^63)
MAX_GRANT = 1_000_000_000


def _help(name: str) -> str:
    """The `--help` line of a subcommand, from its declaration in bot.commands."""
    return t("en", command(Where.CLI, name).catalogue_key(Where.CLI))


def _draw_epilog() -> str:
    # the flags come from the option declaration (presets named by PRESETS_FILE aside)
    flags = usage_line(draw_options(Limits(), PresetBook()))
    return (
        f"draw flags: {flags}\n"
        "CLI only: [--init-image PATH] [--mask PATH] [--control-image PATH] [--out DIR] "
        "[--user NAME]\n"
        'example: drawbridge draw "a red fox" --seed 42 --steps 20 --size 512x512\n'
    )


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
    parser.add_argument("--version", action="version", version=f"drawbridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help=_help("run"))
    draw = sub.add_parser(
        "draw",
        help=_help("draw"),
        epilog=_draw_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    draw.add_argument("words", nargs=argparse.REMAINDER, help="PROMPT and draw flags")
    backends = sub.add_parser("backends", help=_help("backends"))
    backends.add_argument(
        "--refresh",
        action="store_true",
        help="let every WebUI rescan its checkpoint and LoRA folders first",
    )
    quota = sub.add_parser("quota", help=_help("quota"))
    qsub = quota.add_subparsers(dest="quota_command", required=True, metavar="ACTION")
    show = qsub.add_parser("show", help=_help("quota show"))
    show.add_argument("user")
    grant = qsub.add_parser("grant", help=_help("quota grant"))
    grant.add_argument("user")
    grant.add_argument("amount", type=int)
    ban = sub.add_parser("ban", help=_help("ban"))
    ban.add_argument("user")
    ban.add_argument("--days", type=float, default=None, help="for N days (default: until unban)")
    ban.add_argument("--reason", default="", help="why (kept with the ban)")
    unban = sub.add_parser("unban", help=_help("unban"))
    unban.add_argument("user")
    audit = sub.add_parser("audit", help=_help("audit"))
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    export = asub.add_parser("export", help=_help("audit export"))
    export.add_argument("file", type=Path, metavar="FILE.csv")
    export.add_argument("--since", default=None, help="YYYY-MM-DD (UTC)")
    export.add_argument("--user", default=None, help="platform:id")
    sub.add_parser("stats", help=_help("stats"))
    db = sub.add_parser("db", help=_help("db"))
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("upgrade", help=_help("db upgrade"))
    dbsub.add_parser("check", help=_help("db check"))
    backup = dbsub.add_parser(
        "backup",
        help=_help("db backup"),
        description="Copies the SQLite database by SQLite's online backup API (safe while "
        "drawbridge runs). For PostgreSQL it prints the pg_dump command to use instead.",
    )
    backup.add_argument("file", type=Path, metavar="FILE")
    # its options are dev-webui's own (parsed by _dev_webui), so the tool is imported only
    # when it runs, not for every drawbridge command
    sub.add_parser("dev-webui", help=_help("dev-webui"), add_help=False)
    return parser


DEV_WEBUI = (
    "Serves the SD-WebUI API (AUTOMATIC1111, Forge or SD.Next, by --flavor) on 127.0.0.1 and "
    "answers with placeholder PNGs of the right size. It draws no real images."
)


def _dev_webui(argv: list[str]) -> int:
    """`drawbridge dev-webui [options]`: the stand-in WebUI until Ctrl-C."""
    from devwebui import add_arguments, options_of, run_devwebui

    parser = argparse.ArgumentParser(prog="drawbridge dev-webui", description=DEV_WEBUI)
    add_arguments(parser)
    parser.set_defaults(delay=2.0)
    args = parser.parse_args(argv)
    print(
        f"dev-webui: a stand-in SD-WebUI ({args.flavor}) drawing PLACEHOLDER images on "
        f"http://{args.host}:{args.port} ({args.delay:g} s per job). Ctrl-C stops it.",
        file=sys.stderr,
    )
    run_devwebui(args.host, args.port, args.delay, **options_of(args))
    return 0


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
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "dev-webui":
        return _dev_webui(unknown)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return asyncio.run(_dispatch(args))
    except CliError as exc:
        print(f"drawbridge: {exc}", file=sys.stderr)
        return exc.code
    except DrawbridgeError as exc:
        print(f"drawbridge: {exc.render('en')}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UserInputError) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace) -> int:
    settings = load_settings()
    from bot.logs import setup_logging

    setup_logging(settings)
    from bot import service

    try:
        return await _with_database(settings, args)
    except DrawbridgeError:
        raise
    except Exception as exc:
        known = service.database_problem(exc, settings)
        if known is None:
            raise
        raise known from None


async def _with_database(settings: Settings, args: argparse.Namespace) -> int:
    from bot import service

    if args.command == "db" and args.db_command == "backup":
        outcome = await service.backup_database(settings, args.file)
        print(outcome.line, file=sys.stdout if outcome.copied else sys.stderr)
        return 0 if outcome.copied else EXIT_USAGE
    if args.command == "db" and args.db_command == "check":
        print(await service.check_database(settings))
        return 0
    # compose starts the bot beside its database: wait for it rather than die at once
    await service.wait_for_database(settings)
    if args.command == "run":
        from bot.app import run

        return await run(settings)
    if args.command == "draw":
        return await _draw(settings, list(args.words))
    if args.command == "backends":
        return await _backends(settings, refresh=args.refresh)
    if args.command == "quota":
        return await _quota(settings, args)
    if args.command in ("ban", "unban", "audit", "stats"):
        return await _govern(settings, args)
    if args.command == "db":
        await service.upgrade_database(settings)
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
    control = _take(words, "--control-image")
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
        control_path=Path(control) if control else None,
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


async def _backends(settings: Settings, *, refresh: bool = False) -> int:
    from bot.service import Service

    async with Service(settings, run_jobs=False) as service:
        lines, any_up = await service.backend_report(refresh=refresh)
    for line in lines:
        print(line)
    return 0 if any_up else EXIT_FAILED


async def _quota(settings: Settings, args: argparse.Namespace) -> int:
    from bot.service import Service
    from bot.texts import quota_text

    key = user_key(args.user)
    async with Service(settings, run_jobs=False) as service:
        if args.quota_command == "grant":
            if not 0 < args.amount <= MAX_GRANT:
                raise CliError(
                    f"N must be a whole number of credits from 1 to {MAX_GRANT}", EXIT_USAGE
                )
            balance = await service.grant(key, args.amount)
            print(t("en", "quota.granted", amount=args.amount, user=key, balance=balance))
            return 0
        print(quota_text("en", await service.quota(key), key))
        return 0


AUDIT_COLUMNS = (
    "time", "user key", "platform", "chat", "prompt", "negative", "mode", "size", "model",
    "seed", "cost", "outcome", "result hash",
)  # fmt: skip


async def _govern(settings: Settings, args: argparse.Namespace) -> int:
    """`drawbridge ban|unban|audit export|stats`."""
    import csv
    from datetime import UTC, datetime

    from bot.service import Service

    async with Service(settings, run_jobs=False) as service:
        if args.command == "ban":
            key = args.user if ":" in args.user else user_key(args.user)
            if args.days is not None and args.days <= 0:
                raise CliError("--days must be a positive number of days", EXIT_USAGE)
            until = await service.ban(key, days=args.days, reason=args.reason, by="cli")
            print(t("en", "cli.banned", user=key, until=until))
            return 0
        if args.command == "unban":
            key = args.user if ":" in args.user else user_key(args.user)
            done = await service.unban(key)
            print(t("en", "cli.unbanned" if done else "cli.not_banned", user=key))
            return 0 if done else EXIT_FAILED
        if args.command == "stats":
            for line in await service.stats_lines("en"):
                print(line)
            return 0
        since = None
        if args.since:
            try:
                since = datetime.fromisoformat(args.since).replace(tzinfo=UTC)
            except ValueError:
                raise CliError("--since must be a date like 2026-12-01", EXIT_USAGE) from None
        rows = await service.audit(since=since, user=args.user)
    try:
        with args.file.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(AUDIT_COLUMNS)
            for r in rows:
                writer.writerow(
                    [
                        r.at.isoformat(timespec="seconds"), r.user_key, r.platform, r.chat,
                        r.prompt, r.negative, r.mode, f"{r.width}x{r.height}", r.model,
                        r.seed, r.cost, r.outcome, r.result_hash,
                    ]
                )  # fmt: skip
    except OSError as exc:
        raise CliError(f"cannot write {args.file}: {exc.strerror or exc}") from None
    print(t("en", "cli.audit_written", n=len(rows), file=args.file))
    return 0


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig()
    raise SystemExit(main())
