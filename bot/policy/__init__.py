"""The operator's policy (POLICY_FILE): moderation of prompts, tiers of users, NSFW chats.

`load_policy` reads and checks the TOML file (bot.policy.file); `Moderation` decides what a
prompt may say (bot.policy.moderation); `tier_of` merges the tiers a user is in
(bot.policy.tiers). The running service keeps one `Policy` and swaps it whole on reload.
"""

from bot.policy.file import Policy, PolicyFileError, load_policy
from bot.policy.moderation import Moderation, PolicyRefused
from bot.policy.tiers import Tier, Who, tier_of

__all__ = [
    "Moderation",
    "Policy",
    "PolicyFileError",
    "PolicyRefused",
    "Tier",
    "Who",
    "load_policy",
    "tier_of",
]
