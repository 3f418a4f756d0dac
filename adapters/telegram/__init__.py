"""Telegram adapter (python-telegram-bot): `serve(engine, settings, stop)` runs the bot.

Modules: `service` (Application, polling/webhook, handler table), `draw` (/draw, text and
pictures), `commands` (/start /help /cancel /queue /quota /models), `settings_menu`
(/settings), `buttons` (result and status buttons), `replier` (the status message and results
of one job), `delivery` (photo / document / album), `media` (pictures users send), `keyboards`
(callback_data), `texts` (captions, status lines, platform limits), `runtime` (shared state).
"""

from adapters.telegram.service import TelegramStartError, build_application, serve

__all__ = ["TelegramStartError", "build_application", "serve"]
