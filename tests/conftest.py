"""Shared fixtures. Everything runs against real servers on 127.0.0.1; nothing of ours is mocked."""

from __future__ import annotations
