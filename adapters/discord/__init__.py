"""Discord adapter (discord.py): `serve(engine, settings, stop)` runs the bot.

Modules: `service` (client, login, command sync, shutdown), `commands` (the command tree),
`slash` (slash options derived from the option declaration, localisation), `draw` (starting a
job from an interaction), `replies` (replies to our results), `init_image` (the "Use as init
image" message command), `actions` and `views` (buttons), `replier` (one job's status and
result), `encode` (fitting the upload limit), `texts` (status lines, embeds), `runtime`
(shared state and channel rules).
"""

from adapters.discord.service import DiscordStartError, serve

__all__ = ["DiscordStartError", "serve"]
