"""The catalogue: every entry in both languages, with the same placeholders."""

from __future__ import annotations

import string

import pytest

from bot.i18n import LANGUAGES, MESSAGES, normalize_locale, t


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_entry_has_every_language_with_the_same_placeholders(key):
    entry = MESSAGES[key]
    assert set(entry) == set(LANGUAGES), key
    assert _fields(entry["en"]) == _fields(entry["zh"]), key


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("zh-CN", "zh"),
        ("zh_hans", "zh"),
        ("zh-TW", "zh"),
        ("en-US", "en"),
        (None, "en"),
        ("de", "en"),
    ],
)
def test_locales_map_to_a_catalogue_language(locale, expected):
    assert normalize_locale(locale) == expected


def test_missing_parameter_never_raises():
    assert t("en", "queue.full").startswith("You already have {count}")
