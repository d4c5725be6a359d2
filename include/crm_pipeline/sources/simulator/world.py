"""A deterministic simulated company: its accounts, people and deals, as a pure function of time.

Every entity's life (creation, update events, archival, merge) is drawn from a random generator seeded with
``(seed, kind, index)``, so the state of the world at any simulated instant is reproducible without storing
it, and a sync of any window ``(since, until]`` can be computed from the seed alone. That is what lets the
demo, the tests and the benchmarks replay the same company at scales S, M and L.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_DAYS = 365
HORIZON_DAYS = 2 * 365  # update events are drawn this far past the epoch
DAY = 86400.0

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


@dataclass(frozen=True)
class Life:
    """When an entity exists and changes, as POSIX seconds (ms precision). ``events`` are update instants
    after creation, ascending. Floats, not datetimes: a sync at scale L computes millions of these."""

    index: int
    created: float
    events: tuple[float, ...]
    archived: float | None
    merged_into: int | None
    merged: float | None

    @property
    def created_at(self) -> datetime:
        return _dt(self.created)

    def alive(self, at: float) -> bool:
        if self.created > at:
            return False
        if self.archived is not None and self.archived <= at:
            return False
        return not (self.merged is not None and self.merged <= at)

    def version(self, at: float) -> int:
        """Number of updates that happened by ``at`` (0 = as created)."""
        return bisect_right(self.events, at)

    def updated(self, at: float) -> float:
        n = bisect_right(self.events, at)
        return self.events[n - 1] if n else self.created


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _ms(ts: float) -> float:
    return round(ts * 1000) / 1000


def rng_for(seed: int, *parts: object) -> random.Random:
    return random.Random(f"{seed}:" + ":".join(map(str, parts)))  # noqa: S311 - a reproducible simulation


class World:
    """All entities of one simulated company."""

    def __init__(self, seed: int, scale: Scale) -> None:
        self.seed = seed
        self.scale = scale
        self.population = POPULATION[scale]
        # One sync asks for the same lives several times (record, associations, merges); bounded so scale L fits.
        # Both caches belong to the instance, so they go when the World does: a class-level lru_cache on a method
        # would keep the last ``self`` objects it saw alive, each with its cache of lives.
        self.life = lru_cache(maxsize=300_000)(self._life)  # type: ignore[method-assign]
        self._merges = lru_cache(maxsize=4)(self._merges_upto)  # type: ignore[method-assign]

    def count(self, kind: str, at: datetime) -> int:
        """An upper bound of the entities of ``kind`` created by ``at``: indices ``0..count-1``. Entity
        ``base + k`` is created within day-fraction ``k / per_day .. (k + 1) / per_day``, so the bound includes
        the one being created now; callers check ``Life.alive`` for the exact instant."""
        base = self.population[kind]
        days = max(0.0, (at - EPOCH).total_seconds() / 86400)
        return base + int(base * GROWTH_PER_DAY[kind] * days) + (1 if GROWTH_PER_DAY[kind] else 0)

    def _life(self, kind: str, index: int) -> Life:
        rng = rng_for(self.seed, kind, "life", index)
        base = self.population[kind]
        epoch = EPOCH.timestamp()
        if index < base:
            created = epoch - rng.uniform(0, HISTORY_DAYS * DAY)
        else:
            per_day = base * GROWTH_PER_DAY[kind]
            created = epoch + (index - base + rng.random()) / per_day * DAY
        events: list[float] = []
        horizon = epoch + HORIZON_DAYS * DAY
        rate = 1 / (MEAN_DAYS_BETWEEN_UPDATES[kind] * DAY)
        t = created
        while True:
            t += rng.expovariate(rate)
            if t > horizon:
                break
            events.append(_ms(t))
        archived = None
        if rng.random() < ARCHIVE_SHARE[kind]:
            archived = _ms(created + rng.uniform(1, HISTORY_DAYS) * DAY)
        merged_into = merged = None
        if index > 0 and rng.random() < MERGE_SHARE[kind]:
            merged_into = rng.randrange(0, index)
            merged = _ms(created + rng.uniform(1, HISTORY_DAYS) * DAY)
        return Life(index, _ms(created), tuple(events), archived, merged_into, merged)

    def person_of(self, index: int) -> int:
        """The real person behind contact ``index``: a contact that gets merged away is a duplicate record of the
        contact it is merged into (HubSpot merges duplicates), so it is that contact's person."""
        life = self.life("contact", index)
        while life.merged_into is not None:
            index = life.merged_into
            life = self.life("contact", index)
        return index

    def merges_into(self, survivor: int, until: float) -> list[tuple[int, float]]:
        """Contacts merged into ``survivor`` by ``until`` (a merge is an update of the survivor)."""
        return [(m, t) for m, t in self._merges(self.count("contact", _dt(until))).get(survivor, []) if t <= until]

    def _merges_upto(self, upto: int) -> dict[int, list[tuple[int, float]]]:
        survivors: dict[int, list[tuple[int, float]]] = {}
        for index in range(upto):
            life = self.life("contact", index)
            if life.merged_into is not None and life.merged is not None:
                survivors.setdefault(life.merged_into, []).append((index, life.merged))
        return survivors
