"""The simulated company as source-hubspot emits it.

Streams: ``companies``, ``contacts``, ``deals`` (CRM v3 objects: ``id``, ``createdAt``, ``updatedAt``, ``archived``,
association arrays, the ``properties`` object and its flattened ``properties_*`` columns), ``owners``,
``deal_pipelines`` and the legacy ``engagements`` (integer ids, epoch-millisecond times, flattened
``associations_*`` and ``metadata_*``). Archived and merged-away objects are not emitted, as the connector's search
endpoint returns live objects only; a merge shows on the survivor as ``hs_merged_object_ids`` and a new
``updatedAt``. See docs/raw-contract.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from crm_pipeline.sources.simulator.profiles import (
    company_profile,
    dirty_email,
    format_phone,
    owner_of,
    owner_profile,
    person_profile,
    stage_on_path,
)
from crm_pipeline.sources.simulator.world import EPOCH, Life, World, _dt, rng_for

OPEN_STAGES_HUBSPOT = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
)
LIFECYCLE = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer")
CLOSED_STAGES = ("closedwon", "closedlost")
STAGE_PROBABILITY = {
    "appointmentscheduled": "0.2",
    "qualifiedtobuy": "0.4",
    "presentationscheduled": "0.6",
    "decisionmakerboughtin": "0.8",
    "contractsent": "0.9",
    "closedwon": "1.0",
    "closedlost": "0.0",
}
ENGAGEMENT_TYPES = ("NOTE", "EMAIL", "CALL", "MEETING", "TASK")

COMPANY_ID_BASE = 10_000_000
CONTACT_ID_BASE = 50_000_000
DEAL_ID_BASE = 90_000_000
OWNER_ID_BASE = 700_000
ENGAGEMENT_ID_BASE = 30_000_000_000


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch_ms(ts: float) -> int:
    return round(ts * 1000)


def _dirty_domain(domain: str, world: World, index: int, dirt_rate: float) -> str:
    rng = rng_for(world.seed, "hubspot", "domain", index)
    if rng.random() >= dirt_rate:
        return domain
    return rng.choice((f"www.{domain}", f"https://www.{domain}/", domain.upper(), f"http://{domain}"))


def _object(
    index_base: int,
    index: int,
    created: datetime,
    updated: datetime,
    props: dict[str, Any],
    associations: dict[str, list[str]],
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": str(index_base + index),
        "createdAt": created,
        "updatedAt": updated,
        "archived": False,
        **associations,
        # The API returns every property as text inside `properties`; the flattened columns carry typed values.
        "properties": {
            k: (None if v is None else _iso(v) if isinstance(v, datetime) else str(v)) for k, v in props.items()
        },
    }
    record.update({f"properties_{k}": v for k, v in props.items()})
    return record


def owner_id(world: World, kind: str, index: int, version: int, every: int = 3) -> str:
    return str(OWNER_ID_BASE + owner_of(world, kind, index, version, every=every))


def company(world: World, index: int, at: datetime, dirt_rate: float) -> dict[str, Any]:
    life = world.life("company", index)
    profile = company_profile(world, index)
    now = at.timestamp()
    version = life.version(now)
    updated = _dt(life.updated(now))
    rng = rng_for(world.seed, "hubspot", "company", index)
    props = {
        "name": profile.name,
        "domain": _dirty_domain(profile.domain, world, index, dirt_rate),
        "phone": format_phone(profile.phone_digits, rng, dirt_rate),
        "industry": profile.industry,
        "city": profile.city,
        "country": profile.country,
        "hubspot_owner_id": owner_id(world, "company", index, version),
        "numberofemployees": profile.employees,
        "annualrevenue": profile.revenue,
        "createdate": life.created_at,
        "hs_lastmodifieddate": updated,
        "hs_merged_object_ids": None,
    }
    return _object(COMPANY_ID_BASE, index, life.created_at, updated, props, {"contacts": []})


def contact(world: World, index: int, at: datetime, dirt_rate: float) -> dict[str, Any]:
    life = world.life("contact", index)
    person = person_profile(world, index)
    rng = rng_for(world.seed, "hubspot", "contact", index)
    now = at.timestamp()
    merges = world.merges_into(index, now)
    version = life.version(now)
    updated = _dt(max([life.updated(now), *(t for _, t in merges)]))
    start = rng_for(world.seed, "contact", "stage", index).randrange(3)
    employer = company_profile(world, person.company_index) if person.company_index is not None else None
    props = {
        "email": dirty_email(person.email, rng, dirt_rate),
        "firstname": person.first,
        "lastname": person.last,
        "phone": format_phone(person.phone_digits, rng, dirt_rate),
        "company": employer.stem if employer else None,
        "lifecyclestage": LIFECYCLE[min(start + version // 2, len(LIFECYCLE) - 1)],
        "hubspot_owner_id": owner_id(world, "contact", index, version),
        "createdate": life.created_at,
        "lastmodifieddate": updated,
        "hs_merged_object_ids": ";".join(str(CONTACT_ID_BASE + m) for m, _ in merges) or None,
    }
    companies = [str(COMPANY_ID_BASE + person.company_index)] if person.company_index is not None else []
    return _object(CONTACT_ID_BASE, index, life.created_at, updated, props, {"companies": companies})


def deal_stage(world: World, index: int, version: int) -> str:
    return stage_on_path(world, "deal", index, version, OPEN_STAGES_HUBSPOT, "closedwon", "closedlost", 0.35)


def deal(world: World, index: int, at: datetime, dirt_rate: float) -> dict[str, Any]:
    life = world.life("deal", index)
    rng = rng_for(world.seed, "deal", "attrs", index)
    company_index = rng.randrange(world.count("company", life.created_at))
    contact_index = rng.randrange(world.count("contact", life.created_at))
    now = at.timestamp()
    version = life.version(now)
    stage = deal_stage(world, index, version)
    updated = _dt(life.updated(now))
    props = {
        "dealname": f"{company_profile(world, company_index).stem} {rng.choice(('renewal', 'expansion', 'pilot'))}",
        "amount": round(rng.lognormvariate(9.5, 1.0), 2),
        "dealstage": stage,
        "pipeline": "default",
        "closedate": life.created_at + timedelta(days=rng.randrange(20, 120)),
        "createdate": life.created_at,
        "hs_lastmodifieddate": updated,
        "hubspot_owner_id": owner_id(world, "deal", index, version, every=4),
        "hs_is_closed_won": stage == "closedwon",
    }
    return _object(
        DEAL_ID_BASE,
        index,
        life.created_at,
        updated,
        props,
        {
            "companies": [str(COMPANY_ID_BASE + company_index)],
            "contacts": [str(CONTACT_ID_BASE + contact_index)],
            "line_items": [],
        },
    )


def owner(world: World, index: int, at: datetime, dirt_rate: float) -> dict[str, Any]:
    life = world.life("owner", index)
    profile = owner_profile(world, index)
    return {
        "id": str(OWNER_ID_BASE + index),
        "email": profile.email,
        "firstName": profile.first,
        "lastName": profile.last,
        "userId": 9_000_000 + index,
        "userIdIncludingInactive": 9_000_000 + index,
        "createdAt": life.created_at,
        "updatedAt": _dt(life.updated(at.timestamp())),
        "archived": False,
        "teams": [{"id": str(100 + index % 3), "name": ("EMEA", "AMER", "APAC")[index % 3], "membership": "PRIMARY"}],
    }


def engagement(world: World, index: int, at: datetime, dirt_rate: float) -> dict[str, Any]:
    life = world.life("engagement", index)
    rng = rng_for(world.seed, "engagement", "attrs", index)
    contact_index = rng.randrange(world.count("contact", life.created_at))
    person = person_profile(world, contact_index)
    kind = rng.choice(ENGAGEMENT_TYPES)
    now = at.timestamp()
    deal_ids = [DEAL_ID_BASE + rng.randrange(world.count("deal", life.created_at))] if rng.random() < 0.3 else []
    return {
        "id": ENGAGEMENT_ID_BASE + index,
        "portalId": 4_400_000,
        "type": kind,
        "active": True,
        "createdAt": _epoch_ms(life.created),
        "lastUpdated": _epoch_ms(life.updated(now)),
        "timestamp": _epoch_ms(life.created),
        "ownerId": OWNER_ID_BASE + owner_of(world, "engagement", index, 0),
        "associations": {"contactIds": [CONTACT_ID_BASE + contact_index]},
        "associations_contactIds": [CONTACT_ID_BASE + contact_index],
        "associations_companyIds": (
            [COMPANY_ID_BASE + person.company_index] if person.company_index is not None else []
        ),
        "associations_dealIds": deal_ids,
        "metadata_subject": f"{kind.title()} with {person.first}",
        "metadata_status": "COMPLETED" if kind in ("CALL", "TASK") else None,
        "metadata_durationMilliseconds": rng.randrange(60_000, 3_600_000) if kind in ("CALL", "MEETING") else None,
    }


def deal_pipeline(epoch_ms: int) -> dict[str, Any]:
    stages = [*OPEN_STAGES_HUBSPOT, *CLOSED_STAGES]
    return {
        "pipelineId": "default",
        "label": "Sales Pipeline",
        "displayOrder": 0,
        "active": True,
        "default": True,
        "objectType": "DEAL",
        "objectTypeId": "0-3",
        "createdAt": epoch_ms,
        "updatedAt": epoch_ms,
        "stages": [
            {
                "stageId": s,
                "label": s,
                "displayOrder": i,
                "active": True,
                "createdAt": epoch_ms,
                "updatedAt": epoch_ms,
                "metadata": {"isClosed": str(s in CLOSED_STAGES).lower(), "probability": STAGE_PROBABILITY[s]},
            }
            for i, s in enumerate(stages)
        ],
    }


Renderer = Callable[[World, int, datetime, float], dict[str, Any]]
RENDERERS: dict[str, tuple[str, Renderer]] = {
    "companies": ("company", company),
    "contacts": ("contact", contact),
    "deals": ("deal", deal),
    "owners": ("owner", owner),
    "engagements": ("engagement", engagement),
}


def _last_change(world: World, kind: str, index: int, life: Life, now: float) -> float:
    last = life.updated(now)
    if kind == "contact":
        last = max([last, *(t for _, t in world.merges_into(index, now))])
    return last


def changed_records(
    world: World,
    stream: str,
    since: datetime | None,
    until: datetime,
    dirt_rate: float,
    *,
    as_of: datetime | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(entity index, record)`` for live records of ``stream`` as of ``as_of`` (default ``until``) whose last
    change is in ``(since, until]`` (all live records when ``since`` is None), in id order. A later ``as_of`` is a
    backfill: the source read again now, as its API only can, for what last changed in an earlier window."""
    if stream == "deal_pipelines":
        yield 0, deal_pipeline(_epoch_ms(EPOCH.timestamp() - 400 * 86400))
        return
    kind, render = RENDERERS[stream]
    present = as_of or until
    now, end = present.timestamp(), until.timestamp()
    start = since.timestamp() if since is not None else None
    for index in range(world.count(kind, present)):
        life = world.life(kind, index)
        if not life.alive(now):
            continue
        if start is not None or as_of is not None:  # a whole first sync skips the work
            last = _last_change(world, kind, index, life, now)
            if (start is not None and last <= start) or last > end:
                continue
        yield index, render(world, index, present, dirt_rate)
