"""Every command, declared once: its name, help, parameters, who may use it and where.

The Telegram menu (setMyCommands), the Discord command tree and the `drawbridge` CLI's help are
derived from `COMMANDS`; a new command is one declaration here, one service method if it needs
one, and one handler on each platform that offers it (tests check that every declaration has
its handler and its catalogue texts).

Catalogue texts: `help_key` names the command's description. Each platform words it in its own
part of bot/i18n.py — Telegram's menu `telegram.<help_key>`, Discord's `discord.<help_key>` (and
the localised name `discord.<help_key>.name`), the CLI's `cli.<help_key>` — because a menu
line, a slash-command description and `--help` text are written differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Audience(StrEnum):
    """Who may use a command."""

    EVERYONE = "everyone"
    ADMIN = "admin"  # ADMIN_IDS in chat; the operator at the terminal


class Where(StrEnum):
    """Where a command is offered."""

    TELEGRAM = "telegram"
    DISCORD = "discord"
    CLI = "cli"


class Kind(StrEnum):
    """What a parameter holds (each platform turns it into its own form)."""

    PROMPT = "prompt"  # what to draw
    DRAW_OPTIONS = "draw_options"  # every option of bot.options.draw_options, and the pictures
    PICTURE = "picture"
    JOB = "job"  # a job id, as /queue shows it
    DEFAULTS = "defaults"  # preset, size, steps, negative, favourites (bot.defaults), reset
    MESSAGE = "message"  # the message a context-menu command was used on
    USER = "user"  # platform:id, or a CLI name
    AMOUNT = "amount"
    PORT = "port"
    HOST = "host"
    SECONDS = "seconds"
    PATH = "path"  # a file on the operator's machine
    ADMIN = "admin"  # an /admin subcommand and its words (bot.service.Service.admin)
    DAYS = "days"
    TEXT = "text"
    DATE = "date"
    INTERROGATOR = "interrogator"  # which of the WebUI's interrogators describes a picture


@dataclass(frozen=True)
class Param:
    """One parameter of a command."""

    name: str
    kind: Kind
    required: bool = False


CHAT = frozenset({Where.TELEGRAM, Where.DISCORD})


@dataclass(frozen=True)
class Command:
    """One command as users (or the operator) see it."""

    name: str
    help_key: str
    params: tuple[Param, ...] = ()
    audience: Audience = Audience.EVERYONE
    where: frozenset[Where] = CHAT

    def catalogue_key(self, where: Where) -> str:
        """The key of this command's description on `where`."""
        return f"{where.value}.{self.help_key}"


def _cmd(
    name: str,
    *params: Param,
    audience: Audience = Audience.EVERYONE,
    where: frozenset[Where] = CHAT,
) -> Command:
    return Command(name, f"cmd.{name.replace(' ', '.')}", params, audience, where)


COMMANDS: tuple[Command, ...] = (
    # --- chat ------------------------------------------------------------------------------
    _cmd("start", where=frozenset({Where.TELEGRAM})),
    _cmd(
        "draw",
        Param("prompt", Kind.PROMPT, required=True),
        Param("options", Kind.DRAW_OPTIONS),
        where=frozenset({Where.TELEGRAM, Where.DISCORD}),
    ),
    _cmd(
        "inpaint",
        Param("image", Kind.PICTURE, required=True),
        Param("mask", Kind.PICTURE, required=True),
        Param("prompt", Kind.PROMPT, required=True),
        where=frozenset({Where.DISCORD}),
    ),
    _cmd("cancel", Param("job", Kind.JOB)),
    _cmd("queue"),
    _cmd("quota"),
    _cmd("models"),
    _cmd("settings", Param("defaults", Kind.DEFAULTS)),
    _cmd("help"),
    _cmd("use_as_init", Param("message", Kind.MESSAGE), where=frozenset({Where.DISCORD})),
    # admins in chat: Discord hides it by default member permissions, Telegram lists it only
    # in the admins' private chats; the service checks ADMIN_IDS and admin tiers either way
    _cmd("admin", Param("action", Kind.ADMIN, required=True), audience=Audience.ADMIN),
    _cmd(
        "describe",
        Param("picture", Kind.PICTURE, required=True),
        Param("interrogator", Kind.INTERROGATOR),
    ),
    _cmd("describe_message", Param("message", Kind.MESSAGE), where=frozenset({Where.DISCORD})),
    _cmd("history", Param("job", Kind.JOB), Param("page", Kind.AMOUNT)),
    # --- the operator's terminal ------------------------------------------------------------
    _cmd("run", audience=Audience.ADMIN, where=frozenset({Where.CLI})),
    _cmd(
        "draw",
        Param("words", Kind.PROMPT, required=True),
        audience=Audience.ADMIN,
        where=frozenset({Where.CLI}),
    ),
    _cmd("backends", audience=Audience.ADMIN, where=frozenset({Where.CLI})),
    _cmd("quota", audience=Audience.ADMIN, where=frozenset({Where.CLI})),
    _cmd(
        "quota show",
        Param("user", Kind.USER, required=True),
        audience=Audience.ADMIN,
        where=frozenset({Where.CLI}),
    ),
    _cmd(
        "quota grant",
        Param("user", Kind.USER, required=True),
        Param("amount", Kind.AMOUNT, required=True),
        audience=Audience.ADMIN,
        where=frozenset({Where.CLI}),
    ),
    _cmd(
        "ban",
        Param("user", Kind.USER, required=True),
        Param("days", Kind.DAYS),
        Param("reason", Kind.TEXT),
        audience=Audience.ADMIN,
        where=frozenset({Where.CLI}),
    ),
    _cmd(
        "unban",
        Param("user", Kind.USER, required=True),
        audience=Audience.ADMIN,
        where=frozenset({Where.CLI}),
    ),
    _cmd("audit", audience=Audience.ADMIN, where=frozenset({Where.CLI})),
    _cmd(
        "audit export",
        Param("file", Kind.PATH, required=True),
        Param("since", Kind.DATE),
        Param("user", Kind.USER),
        audience=Audience.ADMIN,
        where=frozenset({Where.CLI}),
    ),
    _cmd("stats", audience=Audience.ADMIN, where=frozenset({Where.CLI})),
    _cmd("db", audience=Audience.ADMIN, where=frozenset({Where.CLI})),
    _cmd("db upgrade", audience=Audience.ADMIN, where=frozenset({Where.CLI})),
    _cmd("db check", audience=Audience.ADMIN, where=frozenset({Where.CLI})),
    _cmd(
        "db backup",
        Param("file", Kind.PATH, required=True),
        audience=Audience.ADMIN,
        where=frozenset({Where.CLI}),
    ),
    _cmd(
        "dev-webui",
        Param("port", Kind.PORT),
        Param("host", Kind.HOST),
        Param("delay", Kind.SECONDS),
        audience=Audience.ADMIN,
        where=frozenset({Where.CLI}),
    ),
)


def commands_on(where: Where, audience: Audience | None = None) -> list[Command]:
    """The commands offered on `where` (for one audience, or all), in declaration order."""
    return [
        c for c in COMMANDS if where in c.where and (audience is None or c.audience is audience)
    ]


def command(where: Where, name: str) -> Command:
    """The declaration of `name` on `where`; KeyError if there is none."""
    for c in COMMANDS:
        if c.name == name and where in c.where:
            return c
    raise KeyError(f"no command {name!r} on {where.value}")
