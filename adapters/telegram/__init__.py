"""Telegram adapter (python-telegram-bot): `TelegramAdapter(service, settings)` is the bot.

Modules: `service` (the Adapter: Application, polling/webhook, handler table), `draw` (/draw,
text and pictures), `commands` (/start /help /cancel /queue /quota /models, the menu),
`settings_menu` (/settings), `buttons` (result and status buttons), `replier` (the status
message and results of one job), `delivery` (photo / document / album), `media` (pictures users
send), `keyboards` (callback_data), `texts` (captions, status lines, platform limits), `runtime`
(shared state).
"""

from adapters.telegram.service import TelegramAdapter, TelegramStartError, build_application

__all__ = ["TelegramAdapter", "TelegramStartError", "build_application"]
