"""The bench's arithmetic and its memory probe: what BENCHMARKS.md's verdicts rest on."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from crm_pipeline.bench.measure import Measurement
from crm_pipeline.bench.peak_rss import PeakTreeRss, tree_rss_kib

HOLD_MIB = 300


def test_a_ratio_target_is_judged_on_the_median_ratio() -> None:
    m = Measurement("P1", "transform", "s", "<= 1.25x", 1.25, higher_is_better=False)
    m.samples += [(12.0, 10.0), (30.0, 10.0), (11.0, 10.0)]  # ratios 1.2, 3.0, 1.1: median 1.2
    assert m.median_ratio == 1.2 and m.met is True
    assert m.row()[4] == "1.20x (1.10 to 3.00)"


def test_an_absolute_target_has_no_baseline_or_ratio_column() -> None:
    m = Measurement("P6", "whole pass", "min", "<= 15 min", None, higher_is_better=False, target_value=15.0)
    m.samples.append((16.5, 0.0))
    row = m.row()
    assert row[2:5] == ["16.50 min", "—", "—"] and m.met is False


def test_peak_rss_counts_a_child_that_holds_memory_and_has_exited() -> None:
    """The child allocates and touches HOLD_MIB, holds it a moment, then exits before the probe stops."""
    holder = f"b = bytearray({HOLD_MIB} * 1024 * 1024); import time; time.sleep(1.5)"
    with PeakTreeRss(interval_s=0.05) as probe:
        before = tree_rss_kib(os.getpid())
        child = subprocess.Popen([sys.executable, "-c", holder])
        child.wait(timeout=60)
        time.sleep(0.1)
    assert probe.peak_kib >= before + HOLD_MIB * 1024 * 0.9
    assert probe.peak_gib == probe.peak_kib / 1024 / 1024
