"""Discord adapter (discord.py): `DiscordAdapter(service, settings)` is the bot.

Modules: `service` (the Adapter: client, login, command sync, shutdown), `commands` (the command
tree, derived from bot.commands), `slash` (slash options derived from the option declaration,
localisation), `draw` (starting a job from an interaction), `replies` (replies to our results),
`init_image` (the "Use as init image" message command), `actions` and `views` (buttons),
`replier` (one job's status and result), `encode` (fitting the upload limit), `texts` (status
lines, embeds), `runtime` (shared state and channel rules).
"""

from adapters.discord.service import DiscordAdapter, DiscordStartError

__all__ = ["DiscordAdapter", "DiscordStartError"]
