"""Benchmarks: is the core fair, fast, and does it keep the GPU busy? (`python -m bench`)

Every figure is measured for drawbridge and for a FIFO baseline built the way the popular bots
work (bench/fifo.py), side by side in one process against the same dev-webui servers.

Modules: `live` (overhead, idle gap, makespan, light-user wait, model switches against
dev-webui), `queueops` (FairQueue operations), `quota` (SQLite reservations), `memory`
(bytes per queued job, peak memory of a 2048×2048 result); `report` prints the table and writes
bench/results.json.
"""
