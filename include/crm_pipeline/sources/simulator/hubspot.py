"""The simulated company as source-hubspot emits it.

Streams: ``companies``, ``contacts``, ``deals`` (CRM v3 objects: ``id``, ``createdAt``, ``updatedAt``, ``archived``,
association arrays, the ``properties`` object and its flattened ``properties_*`` columns), ``owners``,
``deal_pipelines`` and the legacy ``engagements`` (integer ids, epoch-millisecond times, flattened
``associations_*`` and ``metadata_*``). Archived and merged-away objects are not emitted, as the connector's search
endpoint returns live objects only; a merge shows on the survivor as ``hs_merged_object_ids`` and a new
``updatedAt``. See docs/raw-contract.md.

Records are rendered a block at a time, column by column (``block.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import repeat
from typing import Any

import numpy as np

from crm_pipeline.sources.simulator import profiles
from crm_pipeline.sources.simulator.block import BLOCK_SIZE, INT_NULL, Block, Column, Source, Window, ms, text_form
from crm_pipeline.sources.simulator.draws import Ints
from crm_pipeline.sources.simulator.profiles import Texts, texts
from crm_pipeline.sources.simulator.world import DAY_MS, EPOCH_MS, Lives, World

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


def _ids(base: int, index: Ints) -> list[str]:
    return list(map(str, (base + index).tolist()))


def _id_arrays(base: int, index: Ints, present: np.ndarray | None = None, *, quote: str = '"') -> list[str]:
    """One-item JSON arrays of ids (``["10000012"]``; numbers with ``quote=""``), ``[]`` where not ``present``."""
    ids = (base + index).tolist()
    if present is None:
        return [f"[{quote}{i}{quote}]" for i in ids]
    return [f"[{quote}{i}{quote}]" if p else "[]" for i, p in zip(ids, present.tolist(), strict=True)]


def _json_object(fields: dict[str, list[str | None]]) -> list[str]:
    """One JSON object per row whose values are all text (``null`` for None), as the API's ``properties``. Built
    by one ``str.join`` per row over the zipped columns, with the quotes in the constant parts between them."""
    n = len(next(iter(fields.values())))
    parts: list[Any] = []
    opening = "{"
    for key, values in fields.items():
        if None in values:
            parts += [repeat(f'{opening}"{key}": ', n), [_NULL if v is None else f'"{v}"' for v in values]]
            opening = ", "
        else:
            parts += [repeat(f'{opening}"{key}": "', n), values]
            opening = '", '
    parts.append(repeat("}" if opening == ", " else '"}', n))
    return list(map("".join, zip(*parts, strict=True)))


_NULL = "null"


def _v3_object(
    index_base: int,
    lives: Lives,
    times: tuple[np.ndarray, np.ndarray],
    props: dict[str, Column],
    prop_json: dict[str, list[str]],
    associations: dict[str, list[str]],
) -> Block:
    """A CRM v3 object: the API returns every property as text inside ``properties``; the flattened
    ``properties_*`` columns carry typed values (``prop_json`` holds the union-typed ones as JSON text).
    ``times`` are the created and updated timestamp columns, the same arrays the properties use."""
    n = len(lives)
    memo: dict[int, list[str | None]] = {}
    as_text = {k: _property_text(v, memo) for k, v in props.items()}
    as_text.update(prop_json)
    columns: dict[str, Column] = {
        "id": _ids(index_base, lives.index),
        "createdAt": times[0],
        "updatedAt": times[1],
        "archived": np.zeros(n, dtype=bool),
        **associations,
        "properties": _json_object(as_text),
    }
    columns.update({f"properties_{k}": v for k, v in props.items()})
    columns.update({f"properties_{k}": v for k, v in prop_json.items()})
    json_columns = frozenset({"properties", *associations, *(f"properties_{k}" for k in prop_json)})
    return Block(lives.index, columns, json_columns, memo)


def _property_text(values: Column, memo: dict[int, list[str | None]]) -> list[str | None]:
    """A property as the API's ``properties`` object holds it: text, timestamps in ISO 8601, booleans as
    ``true``/``false``; the same text as the COPY's for all but booleans."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "b":
        return np.where(values, "true", "false").tolist()
    return text_form(values, memo)


def owner_ids(world: World, kind: str, index: Ints, version: Ints, every: int = 3) -> Texts:
    return _ids(OWNER_ID_BASE, profiles.owners_of(world, kind, index, version, every=every))


def companies(world: World, lives: Lives, now: int, dirt_rate: float) -> Block:
    index = lives.index
    found = profiles.companies(world, index)
    version, updated = lives.version(now), lives.updated(now)
    times = ms(lives.created), ms(updated)
    props = {
        "name": found.name,
        "domain": _dirty_domains(world, found.domain, index, dirt_rate),
        "phone": profiles.format_phones(world, found.phone_digits, index, dirt_rate, "hubspot", "company", "phone"),
        "industry": found.industry,
        "city": found.city,
        "country": found.country,
        "hubspot_owner_id": owner_ids(world, "company", index, version),
        "createdate": times[0],
        "hs_lastmodifieddate": times[1],
        "hs_merged_object_ids": np.full(len(index), None, dtype=object),
    }
    numbers = {"numberofemployees": _numbers(found.employees), "annualrevenue": _numbers(found.revenue)}
    return _v3_object(COMPANY_ID_BASE, lives, times, props, numbers, {"contacts": _empty(index)})


def contacts(world: World, lives: Lives, now: int, dirt_rate: float) -> Block:
    index = lives.index
    person = profiles.people(world, index)
    last_merge, merged = world.merges(now).of(index, now)
    version = lives.version(now)
    updated = np.maximum(lives.updated(now), last_merge)
    times = ms(lives.created), ms(updated)
    start = world.draws.below(index, 3, "contact", "stage")
    employer = person.company_index
    company = np.full(len(index), None, dtype=object)
    has_employer = employer >= 0
    company[has_employer] = profiles.company_stems(world, employer[has_employer])
    merged_ids: list[str | None] = [None] * len(index)
    for position, ids in merged.items():
        merged_ids[position] = ";".join(str(CONTACT_ID_BASE + m) for m in ids)
    props = {
        "email": profiles.dirty_emails(world, person.email, index, dirt_rate, "hubspot", "contact", "email"),
        "firstname": person.first,
        "lastname": person.last,
        "phone": profiles.format_phones(world, person.phone_digits, index, dirt_rate, "hubspot", "contact", "phone"),
        "company": company,
        "lifecyclestage": texts(LIFECYCLE)[np.minimum(start + version // 2, len(LIFECYCLE) - 1)],
        "hubspot_owner_id": owner_ids(world, "contact", index, version),
        "createdate": times[0],
        "lastmodifieddate": times[1],
        "hs_merged_object_ids": merged_ids,
    }
    employers = _id_arrays(COMPANY_ID_BASE, employer, has_employer)
    return _v3_object(CONTACT_ID_BASE, lives, times, props, {}, {"companies": employers})


def deal_stages(world: World, index: Ints, version: Ints) -> Texts:
    return profiles.stages_on_path(world, "deal", index, version, OPEN_STAGES_HUBSPOT, "closedwon", "closedlost", 0.35)


def deals(world: World, lives: Lives, now: int, dirt_rate: float) -> Block:
    index, draws = lives.index, world.draws
    company_index = draws.below(index, world.counts("company", lives.created), "deal", "company")
    contact_index = draws.below(index, world.counts("contact", lives.created), "deal", "contact")
    version, updated = lives.version(now), lives.updated(now)
    stage = deal_stages(world, index, version)
    times = ms(lives.created), ms(updated)
    kind = draws.choice(index, ("renewal", "expansion", "pilot"), "deal", "name")
    amount = np.round(draws.lognormal(index, 9.5, 1.0, "deal", "amount"), 2)
    props = {
        "dealname": profiles.company_stems(world, company_index) + " " + kind,
        "dealstage": stage,
        "pipeline": np.full(len(index), "default", dtype=object),
        "closedate": ms(lives.created + draws.between(index, 20, 120, "deal", "close") * DAY_MS),
        "createdate": times[0],
        "hs_lastmodifieddate": times[1],
        "hubspot_owner_id": owner_ids(world, "deal", index, version, every=4),
        "hs_is_closed_won": stage == "closedwon",
    }
    associations = {
        "companies": _id_arrays(COMPANY_ID_BASE, company_index),
        "contacts": _id_arrays(CONTACT_ID_BASE, contact_index),
        "line_items": _empty(index),
    }
    return _v3_object(DEAL_ID_BASE, lives, times, props, {"amount": _numbers(amount)}, associations)


def owners(world: World, lives: Lives, now: int, dirt_rate: float) -> Block:
    index = lives.index
    found = profiles.owners(world, index)
    team = index % 3
    teams = [
        f'[{{"id": "{100 + t}", "name": "{("EMEA", "AMER", "APAC")[t]}", "membership": "PRIMARY"}}]'
        for t in team.tolist()
    ]
    user = 9_000_000 + index
    columns = {
        "id": _ids(OWNER_ID_BASE, index),
        "email": found.email,
        "firstName": found.first,
        "lastName": found.last,
        "userId": user,
        "userIdIncludingInactive": user,
        "createdAt": ms(lives.created),
        "updatedAt": ms(lives.updated(now)),
        "archived": np.zeros(len(index), dtype=bool),
        "teams": teams,
    }
    return Block(index, columns, frozenset({"teams"}))


def engagements(world: World, lives: Lives, now: int, dirt_rate: float) -> Block:
    index, draws = lives.index, world.draws
    contact_index = draws.below(index, world.counts("contact", lives.created), "engagement", "contact")
    person = profiles.people(world, contact_index)
    type_ = draws.below(index, len(ENGAGEMENT_TYPES), "engagement", "type")
    kind = texts(ENGAGEMENT_TYPES)[type_]
    with_deal = draws.uniform(index, "engagement", "with_deal") < 0.3
    deal = DEAL_ID_BASE + draws.below(index, world.counts("deal", lives.created), "engagement", "deal")
    contact_ids = _id_arrays(CONTACT_ID_BASE, contact_index, quote="")
    employer = person.company_index
    timed = (kind == "CALL") | (kind == "MEETING")
    duration = np.where(timed, draws.between(index, 60_000, 3_600_000, "engagement", "duration"), INT_NULL)
    created = lives.created
    columns: dict[str, Column] = {
        "id": ENGAGEMENT_ID_BASE + index,
        "portalId": np.full(len(index), 4_400_000, dtype=np.int64),
        "type": kind,
        "active": np.ones(len(index), dtype=bool),
        "createdAt": created,
        "lastUpdated": lives.updated(now),
        "timestamp": created,
        "ownerId": OWNER_ID_BASE + profiles.owners_of(world, "engagement", index, np.zeros_like(index)),
        "associations": [f'{{"contactIds": {c}}}' for c in contact_ids],
        "associations_contactIds": contact_ids,
        "associations_companyIds": _id_arrays(COMPANY_ID_BASE, employer, employer >= 0, quote=""),
        "associations_dealIds": _id_arrays(0, deal, with_deal, quote=""),
        "metadata_subject": texts(t.title() for t in ENGAGEMENT_TYPES)[type_] + " with " + person.first,
        "metadata_status": np.where((kind == "CALL") | (kind == "TASK"), "COMPLETED", None),
        "metadata_durationMilliseconds": duration,
    }
    json_columns = frozenset(
        {"associations", "associations_contactIds", "associations_companyIds", "associations_dealIds"}
    )
    return Block(index, columns, json_columns)


def deal_pipelines() -> Block:
    """The one sales pipeline and its stages (the legacy pipelines API), unchanged since long before the epoch."""
    epoch_ms = EPOCH_MS - 400 * DAY_MS
    stages = [*OPEN_STAGES_HUBSPOT, *CLOSED_STAGES]
    stage_objects = [
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
    ]
    one = np.ones(1, dtype=bool)
    columns: dict[str, Column] = {
        "pipelineId": ["default"],
        "label": ["Sales Pipeline"],
        "displayOrder": np.zeros(1, dtype=np.int64),
        "active": one,
        "default": one,
        "objectType": ["DEAL"],
        "objectTypeId": ["0-3"],
        "createdAt": np.full(1, epoch_ms, dtype=np.int64),
        "updatedAt": np.full(1, epoch_ms, dtype=np.int64),
        "stages": [json.dumps(stage_objects)],
    }
    return Block(np.zeros(1, dtype=np.int64), columns, frozenset({"stages"}))


def _empty(index: Ints) -> list[str]:
    return ["[]"] * len(index)


def _numbers(values: np.ndarray) -> list[str]:
    """Numbers as JSON text."""
    return list(map(repr if values.dtype.kind == "f" else str, values.tolist()))


def _dirty_domains(world: World, domains: Texts, index: Ints, dirt_rate: float) -> Texts:
    out = domains.copy()
    dirty = world.draws.uniform(index, "hubspot", "domain", "dirty") < dirt_rate
    if dirty.any():
        style = world.draws.below(index[dirty], 4, "hubspot", "domain", "style")
        out[dirty] = [
            (f"www.{d}", f"https://www.{d}/", d.upper(), f"http://{d}")[s]
            for s, d in zip(style.tolist(), domains[dirty].tolist(), strict=True)
        ]
    return out


Renderer = Callable[[World, Lives, int, float], Block]
RENDERERS: dict[str, tuple[str, Renderer]] = {
    "companies": ("company", companies),
    "contacts": ("contact", contacts),
    "deals": ("deal", deals),
    "owners": ("owner", owners),
    "engagements": ("engagement", engagements),
}


# HubSpot keeps an archived record in its recycle bin for 90 days (docs/integrations/sources/hubspot.md).
RECYCLE_BIN_MS = 90 * DAY_MS


def archived_deals(world: World, window: Window, dirt_rate: float) -> Iterator[Block]:
    """The ``deals_archived`` stream: the deals in the recycle bin at ``now`` whose archival the window holds, as
    the search endpoint's ``archived=true`` returns them: ``archived`` true, ``archivedAt`` and ``updatedAt`` the
    moment of archival, the associations not filled (the connector does not flatten them for this stream)."""
    now = window.now
    total = int(world.counts("deal", np.array([now], dtype=np.int64))[0])
    for low in range(0, total, BLOCK_SIZE):
        lives = world.lives("deal", range(low, min(total, low + BLOCK_SIZE)))
        archived = lives.archived
        keep = (archived <= now) & (archived > now - RECYCLE_BIN_MS) & (lives.merged > archived)
        if not window.everything:
            keep &= window.holds(archived)
        if keep.any():
            taken = lives.take(keep)
            block = deals(world, taken, now, dirt_rate)
            at = ms(taken.archived)
            block.columns["archived"] = np.ones(len(taken), dtype=bool)
            block.columns["archivedAt"] = at
            block.columns["updatedAt"] = at
            for name in ("companies", "contacts", "line_items"):
                block.columns[name] = [None] * len(taken)
            yield block


def blocks(world: World, stream: str, window: Window, dirt_rate: float) -> Iterator[Block]:
    """The live records of ``stream`` (archived and merged-away ones are gone) whose last change the window
    holds; a merge changes its survivor. ``deals_archived`` is the recycle bin instead (``archived_deals``)."""
    if stream == "deal_pipelines":
        yield deal_pipelines()
        return
    if stream == "deals_archived":
        yield from archived_deals(world, window, dirt_rate)
        return
    kind, render = RENDERERS[stream]
    now = window.now
    total = int(world.counts(kind, np.array([now], dtype=np.int64))[0])
    for low in range(0, total, BLOCK_SIZE):
        lives = world.lives(kind, range(low, min(total, low + BLOCK_SIZE)))
        keep = lives.alive(now)
        if not window.everything:
            last = lives.updated(now)
            if kind == "contact":
                last = np.maximum(last, world.merges(now).of(lives.index, now)[0])
            keep &= window.holds(last)
        if keep.any():
            yield render(world, lives.take(keep), now, dirt_rate)


SOURCE = Source(blocks)
changed_blocks = SOURCE.changed_blocks
changed_records = SOURCE.changed_records
