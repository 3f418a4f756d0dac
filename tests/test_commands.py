"""Every command is declared once in bot.commands; each platform's menu, tree and help derive
from it, and every declaration has its handler and its texts."""

from __future__ import annotations

import argparse

from adapters.discord.commands import HANDLERS as DISCORD_HANDLERS
from adapters.telegram.commands import bot_commands
from adapters.telegram.service import HANDLERS as TELEGRAM_HANDLERS
from bot.cli import build_parser
from bot.commands import COMMANDS, Audience, Kind, Where, command, commands_on
from bot.i18n import LANGUAGES, MESSAGES, t


def test_every_declaration_has_its_texts_in_both_languages() -> None:
    for declared in COMMANDS:
        for where in declared.where:
            key = declared.catalogue_key(where)
            if where is Where.DISCORD:
                assert f"{key}.name" in MESSAGES, key
                if not any(p.kind is Kind.MESSAGE for p in declared.params):
                    assert key in MESSAGES, key
            else:
                assert key in MESSAGES, key
            for lang in LANGUAGES:
                text = MESSAGES.get(key, MESSAGES.get(f"{key}.name", {})).get(lang)
                assert text, (key, lang)


def test_every_chat_command_has_a_handler_on_each_platform_offering_it() -> None:
    telegram = {c.name for c in commands_on(Where.TELEGRAM)}
    assert telegram == set(TELEGRAM_HANDLERS)
    discord_slash = {
        c.name
        for c in commands_on(Where.DISCORD)
        if not any(p.kind in (Kind.MESSAGE, Kind.ADMIN) for p in c.params)
    }
    assert discord_slash == set(DISCORD_HANDLERS)
    # Discord registers the English name the declaration gives
    for c in commands_on(Where.DISCORD):
        if not any(p.kind is Kind.MESSAGE for p in c.params):  # context menus: a label
            assert t("en", f"{c.catalogue_key(Where.DISCORD)}.name") == c.name


def test_the_telegram_menu_is_the_declared_commands() -> None:
    menu = bot_commands("en")
    names = [c.command for c in menu]
    assert names[:2] == ["start", "help"]
    assert sorted(names) == sorted(c.name for c in commands_on(Where.TELEGRAM, Audience.EVERYONE))
    draw = next(c for c in menu if c.command == "draw")
    assert draw.description == t(
        "en", command(Where.TELEGRAM, "draw").catalogue_key(Where.TELEGRAM)
    )
    assert [c.command for c in bot_commands("zh")] == names


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                found[full] = helps.get(name) or ""
                found.update(_subcommands(sub, f"{full} "))
    return found


def test_the_cli_help_is_the_declared_operator_commands() -> None:
    shown = _subcommands(build_parser())
    declared = {c.name: c for c in commands_on(Where.CLI)}
    assert set(shown) == set(declared)
    for name, help_text in shown.items():
        assert declared[name].audience is Audience.ADMIN
        assert help_text == t("en", declared[name].catalogue_key(Where.CLI))
