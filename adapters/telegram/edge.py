"""Telegram's side of the outbox: its budgets and what its errors mean.

Budgets are Telegram's published limits (settings): about one message a second per chat, 20 a
minute per group, 30 a second over all chats. Sends and edits count; deleting does not (the
outbox's windows hold a call's place while it is in flight and count it when answered, so
Telegram never sees more, however long an upload takes). Low-priority calls (refusals, status
edits) may fill 70 % of a group's or the global window, so results and first
acknowledgements always find room.
"""

from __future__ import annotations

import datetime as dtm
import warnings

from telegram.error import NetworkError, RetryAfter, TelegramError, TimedOut

from adapters.kit import Flood, LaneSpec, Outbox, Verdict, Window
from bot.settings import Settings

LOW_SHARE = 0.7
GROUP_EDITS_PER_WINDOW = 3.0  # a group's status edits: at most one per three of its messages


def is_group(chat_id: int) -> bool:
    """Groups and supergroups have negative ids (channels too; the bot is not used there)."""
    return chat_id < 0


class TelegramEdge:
    """The platform plug of Telegram's outbox."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def lane_spec(self, lane: object) -> LaneSpec:
        """A chat's window (and a group's), and its least gap between status edits."""
        settings = self.settings
        count, per = settings.telegram_chat_limit
        windows = [Window(count, per)]
        gap = settings.telegram_edit_interval
        if isinstance(lane, int) and is_group(lane):
            group_count, group_per = settings.telegram_group_limit
            windows.append(Window(group_count, group_per, low_share=LOW_SHARE))
            gap = max(gap, GROUP_EDITS_PER_WINDOW * group_per / group_count)
        return LaneSpec(windows, progress_gap=gap)

    def verdict(self, exc: BaseException) -> Flood | Verdict:
        """429 → Flood; network errors, timeouts, 5xx → transient; the rest → fatal."""
        if isinstance(exc, RetryAfter):
            return Flood(retry_seconds(exc))
        if isinstance(exc, TimedOut):
            return Verdict.TRANSIENT
        if isinstance(exc, NetworkError) and type(exc) is NetworkError:
            return Verdict.TRANSIENT  # not BadRequest: the server or the network failed
        if isinstance(exc, TelegramError | OSError):
            return Verdict.FATAL if isinstance(exc, TelegramError) else Verdict.TRANSIENT
        return Verdict.FATAL


def retry_seconds(exc: RetryAfter) -> float:
    """A 429's retry_after in seconds (PTB 22 keeps it as a timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB warns that the int form will become a timedelta
        value = exc.retry_after
    if isinstance(value, dtm.timedelta):
        return value.total_seconds()
    return float(value)


def make_outbox(settings: Settings) -> Outbox:
    """Telegram's outbox."""
    count, per = settings.telegram_global_limit
    return Outbox(
        TelegramEdge(settings),
        global_window=Window(count, per, low_share=LOW_SHARE),
        retry_seconds=settings.delivery_retry_seconds,
        name="telegram outbox",
    )
