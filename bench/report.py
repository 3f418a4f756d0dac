"""Figures, their targets, the table and bench/results.json."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True)
class Figure:
    key: str
    unit: str
    op: str  # "<=", ">=" or "=="; "" when the figure has no target of its own
    target: float | str | None  # a number, or the key of another figure times `factor`
    factor: float = 1.0

    def limit(self, results: Results) -> float | None:
        if isinstance(self.target, str):
            other = results.get(self.target)
            return None if other is None else other * self.factor
        return self.target

    def target_text(self, results: Results) -> str:
        if not self.op:
            return "—"
        if isinstance(self.target, str):
            limit = self.limit(results)
            shown = "?" if limit is None else _num(limit)
            return f"{self.op} {self.factor:g}× 10k ({shown})"
        return f"{self.op} {_num(self.target)}"

    def holds(self, results: Results) -> bool | None:
        value, limit = results.get(self.key), self.limit(results)
        if not self.op or value is None or limit is None:
            return None
        compare: Callable[[float, float], bool] = {
            "<=": operator.le,
            ">=": operator.ge,
            "==": operator.eq,
        }[self.op]
        return compare(value, limit)


FIGURES: list[Figure] = [
    Figure("overhead_ms_p50", "ms", "<=", 2),
    Figure("overhead_ms_p99", "ms", "<=", 10),
    Figure("overhead_received_ms_p50", "ms", "", None),
    Figure("overhead_received_ms_p99", "ms", "", None),
    Figure("idle_gap_ms_median", "ms", "<=", 20),
    Figure("idle_gap_ms_p95", "ms", "", None),
    Figure("makespan_ratio_1", "", "<=", 1.02),
    Figure("makespan_ratio_4", "", "<=", 1.03),
    Figure("light_wait_jobs_b10", "jobs", "<=", 2),
    Figure("light_wait_jobs_b100", "jobs", "<=", 2),
    Figure("light_wait_jobs_b1000", "jobs", "<=", 2),
    Figure("queue_op_us_10k", "µs", "<=", 5),
    Figure("queue_op_us_100k", "µs", "<=", "queue_op_us_10k", 2.0),
    Figure("reservations_per_s", "/s", ">=", 2000),
    Figure("overspend", "", "==", 0),
    Figure("bytes_per_queued_job", "B", "<=", 2048),
    Figure("peak_mib_2048_result", "MiB", "<=", 64),
    Figure("decode_peak_mib_default", "MiB", "<=", 16),
    Figure("decode_peak_mib_allowed", "MiB", "<=", 450),
    Figure("model_switches_mixed", "", "<=", 4),
    # the whole path through python-telegram-bot and a fake Bot API with Telegram's limits
    Figure("tg_overhead_ms_p50", "ms", "", None),
    Figure("tg_overhead_gap_ms_p50", "ms", "<=", 1.5),
    Figure("tg_overhead_ms_p99", "ms", "<=", 10),
    Figure("tg_burst_enqueued_s", "s", "<=", 2),
    Figure("tg_burst_light_beyond_jobs", "jobs", "<=", 2),
    Figure("tg_burst_light_reached_ms", "ms", "", None),
    Figure("tg_burst_delivered_s", "s", "", None),
    Figure("tg_burst_calls_per_job", "", "", None),
    Figure("tg_calls_per_job_private", "", "<=", 4),
    Figure("tg_calls_per_job_group", "", "<=", 3),
    Figure("tg_429s", "", "==", 0),
    Figure("tg_results_lost", "", "==", 0),
    Figure("tg_bytes_per_queued_job", "B", "<=", 4096),
    # the same path through discord.py and the fake Discord (per-route buckets); the
    # overhead targets are the Telegram ones, the bare bot a discord.py command
    Figure("dc_overhead_ms_p50", "ms", "", None),
    Figure("dc_overhead_gap_ms_p50", "ms", "<=", 1.5),
    Figure("dc_overhead_ms_p99", "ms", "<=", 10),
    Figure("dc_calls_per_job_dm", "", "", None),
    Figure("dc_calls_per_job_guild", "", "", None),
    Figure("dc_429s", "", "==", 0),
    Figure("dc_results_lost", "", "==", 0),
    # scale (bench/scale.py): the queue at 100 000 users, the day change, a restart
    Figure("position_us_100k", "µs", "<=", 50),
    Figure("job_start_us_100k", "µs", "<=", 50),
    Figure("daily_reset_stall_ms", "ms", "<=", 50),
    Figure("daily_reset_stall_cpu_ms", "ms", "", None),
    Figure("daily_reset_draw_ms", "ms", "", None),
    Figure("restart_serving_s", "s", "<=", 2),
    Figure("restart_stall_ms", "ms", "<=", 100),
    Figure("restart_stall_cpu_ms", "ms", "", None),
    Figure("restart_rss_mib", "MiB", "<=", 250),
    Figure("restart_rss_before_mib", "MiB", "", None),
    Figure("restart_loaded_s", "s", "", None),
    Figure("restart_queue_miscount", "", "<=", 2),
    # NSFW_CHECK: nudenet on the bot's CPU, per delivered picture (no target: it is a cost)
    Figure("nsfw_load_s", "s", "", None),
    Figure("nsfw_ms_per_image_512", "ms", "", None),
    Figure("nsfw_ms_per_image_1024", "ms", "", None),
    # SQLite file bytes per delivered job (bench/dbsize.py)
    Figure("db_bytes_per_job", "B", "", None),
    Figure("db_bytes_per_job_kept", "B", "", None),
    Figure("db_bytes_per_job_pruned", "B", "", None),
]


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value)}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.3f}"
    return f"{value:.4f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "—"
    return f"{value / base:.3g}×"


def table(ours: Results, base: Results) -> list[str]:
    """Markdown table: figure, value, target, baseline, ratio (ours ÷ baseline), pass/fail."""
    lines = [
        "| figure | value | target | FIFO baseline | ratio | result |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for fig in FIGURES:
        if fig.key not in ours:
            continue
        value = ours.get(fig.key)
        held = fig.holds(ours)
        verdict = "—" if held is None else ("pass" if held else "**FAIL**")
        unit = f" {fig.unit}" if fig.unit else ""
        lines.append(
            f"| `{fig.key}` | {_num(value)}{unit} | {fig.target_text(ours)} | "
            f"{_num(base.get(fig.key))}{unit} | {_ratio(value, base.get(fig.key))} | {verdict} |"
        )
    return lines


def failures(ours: Results) -> list[str]:
    return [f.key for f in FIGURES if f.key in ours and f.holds(ours) is False]


def write(path: Path, ours: Results, base: Results) -> None:
    """results.json: exactly the figures' keys, plus the baseline's under `baseline`."""
    keys = [f.key for f in FIGURES]
    data: dict[str, Any] = {k: ours.get(k) for k in keys}
    data["baseline"] = {k: base.get(k) for k in keys}
    path.write_text(json.dumps(data, indent=2) + "\n")
