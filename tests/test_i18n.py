"""The catalogue: every entry in both languages, with the same placeholders."""

from __future__ import annotations

import string

import pytest

from bot.i18n import LANGUAGES, MESSAGES, Plural, normalize_locale, t


def _fields(text: str | Plural) -> set[str]:
    if isinstance(text, Plural):  # both forms name the same placeholders, the count among them
        assert _fields(text.one) == _fields(text.other)
        assert text.count in _fields(text.one)
        return _fields(text.one)
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_entry_has_every_language_with_the_same_placeholders(key):
    entry = MESSAGES[key]
    assert set(entry) == set(LANGUAGES), key
    assert _fields(entry["en"]) == _fields(entry["zh"]), key


@pytest.mark.parametrize(
    ("key", "params", "one", "other"),
    [
        ("queue.cancelled", {}, "Your 1 credit was returned.", "Your 3 credits were returned."),
        ("queue.failed", {"reason": "x"}, "1 credit was", "3 credits were"),
        ("quota.exceeded", {"balance": 0, "reset": "00:00"}, "needs 1 credit and", "needs 3 "),
        ("queue.full", {"limit": 5}, "have 1 job waiting", "have 3 jobs waiting"),
        ("queue.summary", {"queued": 0, "running": 0}, "on 1 server.", "on 3 servers."),
    ],
)
def test_counts_take_their_plural_form_in_english_and_read_the_same_in_chinese(
    key, params, one, other
):
    count = MESSAGES[key]["en"]
    assert isinstance(count, Plural)
    singular = t("en", key, **{count.count: 1}, **params)
    plural = t("en", key, **{count.count: 3}, **params)
    assert one in singular and other in plural and "(s)" not in singular + plural
    zh_one, zh_three = (t("zh", key, **{count.count: n}, **params) for n in (1, 3))
    assert zh_one.replace("1", "3") == zh_three  # Chinese has one form


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
