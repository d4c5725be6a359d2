"""One benchmark result: repeated timings of a measurement and of its baseline, taken in the same run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Measurement:
    """``key`` (P2, P4, ...), what is measured, the target, and each repetition's (value, baseline) pair.

    ``higher_is_better`` says whether the ratio value/baseline should be high (throughput) or low (time). The
    target is a ratio to the baseline (``target_ratio``) or an absolute value (``target_value``)."""

    key: str
    name: str
    unit: str
    target: str
    target_ratio: float | None
    higher_is_better: bool
    target_value: float | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)
    note: str = ""

    def ratios(self) -> list[float]:
        return [value / baseline for value, baseline in self.samples if baseline]

    @property
    def median_ratio(self) -> float | None:
        ratios = self.ratios()
        return statistics.median(ratios) if ratios else None

    @property
    def median_value(self) -> float | None:
        return statistics.median(v for v, _ in self.samples) if self.samples else None

    @property
    def met(self) -> bool | None:
        if self.target_value is not None and self.median_value is not None:
            value = self.median_value
            return value >= self.target_value if self.higher_is_better else value <= self.target_value
        ratio = self.median_ratio
        if ratio is None or self.target_ratio is None:
            return None
        return ratio >= self.target_ratio if self.higher_is_better else ratio <= self.target_ratio

    def row(self) -> list[str]:
        values = [v for v, _ in self.samples]
        baselines = [b for _, b in self.samples if b]  # an absolute target (P6) has none
        ratios = self.ratios()
        verdict = {True: "met", False: "**not met**", None: "n/a"}[self.met]
        return [
            self.key,
            self.name,
            f"{statistics.median(values):,.2f} {self.unit}" if values else "—",
            f"{statistics.median(baselines):,.2f} {self.unit}" if baselines else "—",
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f} to {max(ratios):.2f})" if ratios else "—",
            self.target,
            verdict,
        ]
