"""The policy file, moderation, tier merging, the priority weight in the fair queue and the
relax lane (units; the end-to-end tests are test_telegram_govern.py and test_discord_govern.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.fairqueue import Entry, FairQueue
from bot.policy import PolicyFileError, PolicyRefused, Who, load_policy, tier_of
from bot.policy.moderation import Moderation, fold
from bot.relaxqueue import LaneQueue

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_file_loads() -> None:
    policy = load_policy(ROOT / "policy.example.toml")
    assert {t.name for t in policy.tiers} == {"supporters", "mods"}
    assert policy.moderation.negative_prefix == "nsfw, lowres"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[moderation]\nbanned_words = ['a'\n", "is not valid TOML"),
        ("[moderation]\nbanned_words = 'gore'\n", "moderation.banned_words must be a list"),
        ("[moderation]\nbanned_regex = ['(']\n", "banned_regex[0] '(' is not a regex"),
        ("[moderation]\nbaned_words = []\n", "unknown key moderation.baned_words"),
        ("[tiers.gold]\npriority = 0\n", "tiers.gold.priority must be a number > 0"),
        ("[tiers.gold]\ndaily_credits = 'many'\n", "tiers.gold.daily_credits must be a whole"),
        ("[tiers.gold]\ndiscord_roles = [true]\n", "tiers.gold.discord_roles must be a list of"),
        ("[tiers.gold]\nadmin = 'yes'\n", "tiers.gold.admin must be true or false"),
        ("[colours]\n", "unknown key colours"),
    ],
)
def test_a_bad_file_names_file_place_and_problem(tmp_path, text, message) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    rendered = caught.value.render("en")
    assert str(path) in rendered and message in rendered


def test_a_toml_mistake_names_its_line(tmp_path) -> None:
    path = write(tmp_path, "[moderation]\n\nbanned_words = [\n  'a',\n  b\n]\n")
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    assert "line 5" in caught.value.render("en")


def test_a_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(PolicyFileError, match="cannot be read"):
        load_policy(tmp_path / "nope.toml")


def test_words_fold_accents_and_case_and_match_whole_words() -> None:
    mod = Moderation.build(banned_words=["Gore", "禁止"], strip_words=["HD"])
    assert fold("GORÉ Ｇｏｒｅ") == "gore gore"  # NFKD: accents and full-width forms
    for prompt in ("a gore scene", "a GORÉ scene", "gore!", "<lora:x_gore-y:1> cat", "这是禁止的"):
        with pytest.raises(PolicyRefused):
            mod.check(prompt, "", None)
    for prompt in ("gorengan", "a goretex coat", "禁"):
        mod.check(prompt, "", None)
    with pytest.raises(PolicyRefused):
        mod.check("a cat", "some gore", None)
    assert mod.cleaned("hd, a cat, HD photo") == "a cat, photo"


def test_regex_models_and_the_negative_prefix() -> None:
    import re

    mod = Moderation.build(
        banned_regex=[re.compile(r"\bage\s*\d\b", re.I)],
        banned_models=["bad.safetensors"],
        negative_prefix="lowres",
    )
    with pytest.raises(PolicyRefused) as caught:
        mod.check("Age 5 portrait", "", None)
    assert caught.value.key == "policy.refused.pattern"
    with pytest.raises(PolicyRefused) as caught:
        mod.check("a cat", "", "models/bad.safetensors [abc123]")
    assert caught.value.key == "policy.refused.model"
    mod.check("a cat", "", "good.safetensors")
    assert mod.negative("") == "lowres" and mod.negative("blurry") == "lowres, blurry"
    assert mod.negative("lowres, blurry") == "lowres, blurry"  # a reroll keeps it once


def test_several_tiers_give_the_most_generous_of_each_field(tmp_path) -> None:
    path = write(
        tmp_path,
        """
[tiers.a]
discord_roles = [1]
daily_credits = 50
max_steps = 20
models = ["x"]
[tiers.b]
discord_roles = ["2"]
daily_credits = 30
max_queued = 9
priority = 2
models = ["y"]
[tiers.c]
telegram_users = [7]
telegram_chats = [-100]
admin = true
""",
    )
    tiers = load_policy(path).tiers
    both = tier_of(tiers, Who("discord", "5", roles=("1", "2")))
    assert (both.daily_credits, both.max_queued, both.max_steps, both.priority) == (50, 9, 20, 2)
    assert both.models == {"x", "y"} and both.label == "a + b" and not both.admin
    assert tier_of(tiers, Who("telegram", "7")).admin
    assert tier_of(tiers, Who("telegram", "8", chat_id="-100")).admin
    assert tier_of(tiers, Who("telegram", "8", chat_id="-101")).name == ""


def entry(job: str, user: str, cost: float = 1.0, weight: float = 1.0, relax: bool = False):
    e = Entry(job, user, cost)
    e.weight, e.relax = weight, relax
    return e


def order(queue: FairQueue) -> list[str]:
    taken = []
    while (e := queue.pop()) is not None:
        taken.append(e.job_id)
    return taken


def test_a_priority_weight_moves_jobs_ahead_exactly() -> None:
    plain, weighted = FairQueue(), FairQueue()
    for q, w in ((plain, 1.0), (weighted, 2.0)):
        for n in range(3):
            q.push(entry(f"b{n}", "bob"))
        for n in range(3):
            q.push(entry(f"a{n}", "alice", weight=w))
    assert order(plain) == ["b0", "a0", "b1", "a1", "b2", "a2"]
    # weight 2: Alice's jobs advance her virtual time by half a credit each
    assert order(weighted) == ["a0", "b0", "a1", "a2", "b1", "b2"]


def test_relax_jobs_go_only_when_no_credited_job_waits() -> None:
    queue = LaneQueue()
    queue.push(entry("r0", "alice", relax=True))
    queue.push(entry("c0", "bob"))
    queue.push(entry("r1", "carol", relax=True))
    queue.push(entry("c1", "bob"))
    assert len(queue) == 4 and queue.count("alice") == 1 and "r1" in queue
    assert [e.job_id for e in queue.in_order()] == ["c0", "c1", "r0", "r1"]
    assert queue.ahead("r0") == (2, 2.0)
    # a backend that suits only relax jobs still takes none while a credited one waits
    assert queue.first_matching(lambda e: e.job_id.startswith("r"), depth=64) is None
    assert queue.peek().job_id == "c0"
    assert queue.take("c0").job_id == "c0" and queue.take("c1").job_id == "c1"
    assert queue.first_matching(lambda e: e.job_id == "r1", depth=64).job_id == "r1"
    assert queue.remove("r1").job_id == "r1"
    assert order(queue) == ["r0"]


def test_the_roles_remembered_per_user_are_bounded(tmp_path) -> None:
    """A user known by key only (the daily refill, the CLI) gets the tier of the roles they
    last came with; the memory of those roles keeps the most recent users, not everyone ever."""
    from bot.governor import Governor
    from bot.types import Requester
    from tests.harness.settings import make_settings

    policy = write(tmp_path, "[tiers.gold]\ndiscord_roles = [9]\ndaily_credits = 77\n")
    settings = make_settings(tmp_path, ["http://127.0.0.1:9"], policy_file=policy, daily_credits=10)
    governor = Governor(settings, None, seen_max=3)  # type: ignore[arg-type]  # no bans asked
    users = [Requester("discord", str(n), chat_id="c", roles=("9",)) for n in range(5)]
    for user in users:
        assert governor.tier(user).daily_credits == 77
    assert governor.allowance_by_key("discord:4") == 77  # roles remembered
    assert governor.allowance_by_key("discord:2") == 77
    assert governor.allowance_by_key("discord:0") == 10  # the oldest forgotten: default credits
    assert len(governor._seen) == 3
    governor.tier(users[0])  # back again: remembered again, the oldest of the rest goes
    assert governor.allowance_by_key("discord:0") == 77
    assert governor.allowance_by_key("discord:2") == 10
