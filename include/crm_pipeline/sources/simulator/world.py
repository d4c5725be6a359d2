"""A deterministic simulated company: its accounts, people and deals, as a pure function of time.

Every entity's life (creation, update events, archival, merge) is drawn from counter-based hashes of
``(seed, kind, index)`` (``draws.py``), so the state of the world at any simulated instant is reproducible without
storing it, a sync of any window ``(since, until]`` can be computed from the seed alone, and the lives of a
million entities are a handful of array operations. That is what lets the demo, the tests and the benchmarks
replay the same company at scales S, M and L.

Times are integer milliseconds since the POSIX epoch, as the CRMs' APIs give them. Updates happen once per
slot of an entity's own update interval, at a drawn instant inside the slot: the version of an entity at any
instant is then O(1) to compute, where a Poisson process needed every event drawn up to that instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal

import numpy as np

from crm_pipeline.sources.simulator.draws import Draws, Ints, indices

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH_MS = int(EPOCH.timestamp()) * 1000
HISTORY_DAYS = 365
DAY_MS = 86_400_000
NEVER = np.iinfo(np.int64).max  # an archival or merge that does not happen
MIN_INTERVAL_MS = 60_000
INTERVAL_SIGMA = 0.8

Scale = Literal["XS", "S", "M", "L"]

# Initial population per kind and scale; L follows the sizing (1M contacts, ~200k companies, ~500k deals,
# ~5M engagements and tasks). "opportunity" is Salesforce's own pipeline; "engagement" is HubSpot activity, "task"
# Salesforce activity. People and companies are shared: each CRM holds a part of them (see OVERLAP).
POPULATION: dict[str, dict[str, int]] = {
    "XS": {"company": 60, "contact": 300, "deal": 120, "owner": 6, "opportunity": 60, "engagement": 900, "task": 600},
    "S": {
        "company": 2_000,
        "contact": 10_000,
        "deal": 5_000,
        "owner": 20,
        "opportunity": 2_500,
        "engagement": 30_000,
        "task": 20_000,
    },
    "M": {
        "company": 20_000,
        "contact": 100_000,
        "deal": 50_000,
        "owner": 60,
        "opportunity": 25_000,
        "engagement": 300_000,
        "task": 200_000,
    },
    "L": {
        "company": 200_000,
        "contact": 1_000_000,
        "deal": 500_000,
        "owner": 200,
        "opportunity": 250_000,
        "engagement": 3_000_000,
        "task": 2_000_000,
    },
}
# New entities per simulated day, as a share of the initial population.
GROWTH_PER_DAY = {
    "company": 0.001,
    "contact": 0.003,
    "deal": 0.004,
    "owner": 0.0,
    "opportunity": 0.004,
    "engagement": 0.01,
    "task": 0.01,
}
# Mean days between updates. Each entity's own interval is log-normal around it (INTERVAL_SIGMA), so that the
# kind's update rate is 1 / mean while some entities go quiet for months.
MEAN_DAYS_BETWEEN_UPDATES = {
    "company": 60.0,
    "contact": 30.0,
    "deal": 9.0,
    "owner": 180.0,
    "opportunity": 9.0,
    "engagement": 400.0,
    "task": 20.0,
}
ARCHIVE_SHARE = {
    "company": 0.01,
    "contact": 0.02,
    "deal": 0.03,
    "owner": 0.0,
    "opportunity": 0.03,
    "engagement": 0.0,
    "task": 0.01,
}
MERGE_SHARE = {
    "company": 0.0,
    "contact": 0.01,
    "deal": 0.0,
    "owner": 0.0,
    "opportunity": 0.0,
    "engagement": 0.0,
    "task": 0.0,
}
# Share of the shared entities each CRM holds besides HubSpot (which holds every company and contact).
OVERLAP = {"company_in_salesforce": 0.5, "contact_in_salesforce": 0.4, "lead_in_salesforce": 0.15}


def to_ms(at: datetime) -> int:
    """A datetime as integer POSIX milliseconds, rounded down (exactly: no float in between)."""
    return EPOCH_MS + (at - EPOCH) // timedelta(milliseconds=1)


def _dt(ms: float) -> datetime:
    return EPOCH + timedelta(milliseconds=int(ms) - EPOCH_MS)


@dataclass(frozen=True)
class Lives:
    """The lives of some entities of one kind, as arrays in the order of ``index``."""

    kind: str
    index: Ints
    created: Ints
    interval: Ints
    archived: Ints  # NEVER when not archived
    merged_into: Ints  # -1 when not merged
    merged: Ints  # NEVER when not merged
    draws: Draws

    def __len__(self) -> int:
        return len(self.index)

    def take(self, where: Ints | np.ndarray) -> Lives:
        """The lives at the given positions (or boolean mask)."""
        return Lives(
            self.kind,
            self.index[where],
            self.created[where],
            self.interval[where],
            self.archived[where],
            self.merged_into[where],
            self.merged[where],
            self.draws,
        )

    def alive(self, at: int) -> np.ndarray:
        return (self.created <= at) & (self.archived > at) & (self.merged > at)

    def event(self, k: Ints) -> Ints:
        """When update ``k`` (0-based) happens: at a drawn instant inside slot ``k`` of the entity's interval."""
        jitter = self.draws.uniform(self.index, self.kind, "event", j=k)
        return self.created + k * self.interval + np.floor(jitter * self.interval).astype(np.int64)

    def version(self, at: int) -> Ints:
        """Number of updates that happened by ``at`` (0 = as created, or not created yet)."""
        elapsed = at - self.created
        slot = np.where(elapsed >= 0, elapsed // self.interval, 0)
        return np.where(elapsed >= 0, slot + (self.event(slot) <= at), 0)

    def updated(self, at: int) -> Ints:
        """The last update by ``at``: the creation when there was none."""
        version = self.version(at)
        return np.where(version > 0, self.event(np.maximum(version - 1, 0)), self.created)


@dataclass(frozen=True)
class Life:
    """One entity's life, in POSIX seconds (ms precision): the record-at-a-time view tests and docs use."""

    lives: Lives

    @property
    def index(self) -> int:
        return int(self.lives.index[0])

    @property
    def created(self) -> float:
        return int(self.lives.created[0]) / 1000

    @property
    def created_at(self) -> datetime:
        return _dt(self.lives.created[0])

    @property
    def archived(self) -> float | None:
        value = int(self.lives.archived[0])
        return None if value == NEVER else value / 1000

    @property
    def merged(self) -> float | None:
        value = int(self.lives.merged[0])
        return None if value == NEVER else value / 1000

    @property
    def merged_into(self) -> int | None:
        value = int(self.lives.merged_into[0])
        return None if value < 0 else value

    def alive(self, at: float) -> bool:
        return bool(self.lives.alive(_floor_ms(at))[0])

    def version(self, at: float) -> int:
        return int(self.lives.version(_floor_ms(at))[0])

    def updated(self, at: float) -> float:
        return int(self.lives.updated(_floor_ms(at))[0]) / 1000

    def event(self, k: int) -> float:
        return int(self.lives.event(np.array([k], dtype=np.int64))[0]) / 1000


def _floor_ms(at: float) -> int:
    return int(np.floor(at * 1000))


@dataclass(frozen=True)
class MergeTable:
    """Every contact merge among contacts ``0..upto-1``, sorted by survivor: ``merges_into`` as arrays."""

    survivor: Ints
    merged: Ints
    at: Ints

    def of(self, survivors: Ints, at: int) -> tuple[Ints, dict[int, list[int]]]:
        """Per survivor, the last merge into it by ``at`` (-1 when none); and by position in ``survivors``, the
        indices merged into it by then (in index order), for the few survivors that have any."""
        lo = np.searchsorted(self.survivor, survivors, side="left")
        hi = np.searchsorted(self.survivor, survivors, side="right")
        last = np.full(len(survivors), -1, dtype=np.int64)
        ids: dict[int, list[int]] = {}
        for position in np.flatnonzero(hi > lo).tolist():
            span = slice(lo[position], hi[position])
            done = self.at[span] <= at
            if done.any():
                last[position] = int(self.at[span][done].max())
                ids[position] = sorted(int(m) for m in self.merged[span][done])
        return last, ids


class World:
    """All entities of one simulated company."""

    def __init__(self, seed: int, scale: Scale) -> None:
        self.seed = seed
        self.scale = scale
        self.population = POPULATION[scale]
        self.draws = Draws(seed)
        # Bounded, per instance (a class-level cache would keep old Worlds alive).
        self._merge_table = lru_cache(maxsize=4)(self._merges_upto)

    def count(self, kind: str, at: datetime) -> int:
        """An upper bound of the entities of ``kind`` created by ``at``: indices ``0..count-1``. Entity
        ``base + k`` is created within day-fraction ``k / per_day .. (k + 1) / per_day``, so the bound includes
        the one being created now; callers check ``alive`` for the exact instant."""
        return int(self.counts(kind, np.array([to_ms(at)], dtype=np.int64))[0])

    def counts(self, kind: str, at: Ints) -> Ints:
        """``count`` for an array of instants (ms)."""
        base = self.population[kind]
        growth = GROWTH_PER_DAY[kind]
        days = np.maximum(0.0, (at - EPOCH_MS) / DAY_MS)
        return base + np.floor(base * growth * days).astype(np.int64) + (1 if growth else 0)

    def lives(self, kind: str, index: Ints | range) -> Lives:
        index = indices(index)
        draws = self.draws
        base = self.population[kind]
        u = draws.uniform(index, kind, "created")
        created = EPOCH_MS - np.floor(u * (HISTORY_DAYS * DAY_MS)).astype(np.int64)
        if GROWTH_PER_DAY[kind]:
            per_day = base * GROWTH_PER_DAY[kind]
            grown = EPOCH_MS + np.floor((index - base + u) / per_day * DAY_MS).astype(np.int64)
            created = np.where(index < base, created, grown)
        # Log-normal intervals: most entities change about as often as their kind does, some far less (a deal
        # nobody has touched for months). exp(sigma^2 / 2) keeps the mean update rate at 1 / mean.
        mean = MEAN_DAYS_BETWEEN_UPDATES[kind] * DAY_MS
        # Clipped to 0.1..20 times the mean: an opportunity's history row ids number its versions below 1,000.
        spread = np.clip(draws.lognormal(index, INTERVAL_SIGMA**2 / 2, INTERVAL_SIGMA, kind, "interval"), 0.1, 20)
        interval = np.floor(mean * spread).astype(np.int64)
        interval = np.maximum(interval, MIN_INTERVAL_MS)
        archived = np.full(len(index), NEVER, dtype=np.int64)
        if ARCHIVE_SHARE[kind]:
            hit = draws.uniform(index, kind, "archive") < ARCHIVE_SHARE[kind]
            after = np.floor((1 + (HISTORY_DAYS - 1) * draws.uniform(index, kind, "archived_at")) * DAY_MS)
            archived = np.where(hit, created + after.astype(np.int64), NEVER)
        merged_into, merged = self._merge_draws(kind, index)
        merged = np.where(merged_into >= 0, created + merged, NEVER)
        return Lives(kind, index, created, interval, archived, merged_into, merged, draws)

    def _merge_draws(self, kind: str, index: Ints) -> tuple[Ints, Ints]:
        """Whom each entity is merged into (-1: nobody), and how long after its creation (ms)."""
        if not MERGE_SHARE[kind]:
            return np.full(len(index), -1, dtype=np.int64), np.zeros(len(index), dtype=np.int64)
        draws = self.draws
        hit = (index > 0) & (draws.uniform(index, kind, "merge") < MERGE_SHARE[kind])
        into = np.where(hit, draws.below(index, np.maximum(index, 1), kind, "merge_into"), -1)
        after = np.floor((1 + (HISTORY_DAYS - 1) * draws.uniform(index, kind, "merged_at")) * DAY_MS)
        return into, after.astype(np.int64)

    def life(self, kind: str, index: int) -> Life:
        return Life(self.lives(kind, [index]))

    def people(self, index: Ints) -> Ints:
        """The real person behind each contact: a contact that gets merged away is a duplicate record of the
        contact it is merged into (HubSpot merges duplicates), so it is that contact's person."""
        person = indices(index).copy()
        while True:
            into, _ = self._merge_draws("contact", person)
            moving = into >= 0
            if not moving.any():
                return person
            person = np.where(moving, into, person)

    def merges(self, until: int) -> MergeTable:
        """The merge table of the contacts that exist by ``until`` (ms)."""
        return self._merge_table(int(self.counts("contact", np.array([until], dtype=np.int64))[0]))

    def merges_into(self, survivor: int, until: float) -> list[tuple[int, float]]:
        """Contacts merged into ``survivor`` by ``until`` (seconds), with when."""
        table = self.merges(_floor_ms(until))
        span = slice(*np.searchsorted(table.survivor, [survivor, survivor + 1]))
        return sorted(
            (int(m), int(t) / 1000)
            for m, t in zip(table.merged[span], table.at[span], strict=True)
            if t / 1000 <= until
        )

    def _merges_upto(self, upto: int) -> MergeTable:
        lives = self.lives("contact", range(upto))
        hit = np.flatnonzero(lives.merged_into >= 0)
        order = np.argsort(lives.merged_into[hit], kind="stable")
        chosen = hit[order]
        return MergeTable(lives.merged_into[chosen], lives.index[chosen], lives.merged[chosen])
