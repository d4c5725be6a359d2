"""The simulated company as source-hubspot emits it: contacts, companies and deals records.

Records carry the columns the catalogue declares for each stream (``id``, ``createdAt``, ``updatedAt``,
``archived``, association arrays, the ``properties`` object and its flattened ``properties_*`` columns).
Archived and merged-away records are not emitted, as the connector's search endpoint returns live objects
only; a merge shows on the survivor as ``hs_merged_object_ids`` and a new ``updatedAt``.

Realistic dirt (upper-case or padded emails, ``www.``/``https://`` domains, mixed phone formats) is drawn at
``dirt_rate`` so staging's normalisation has something to do.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from crm_pipeline.sources.simulator.world import World, _dt, rng_for

FIRST_NAMES = (
    "Ada",
    "Bruno",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Maya",
    "Nikolai",
    "Olga",
    "Pedro",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Uma",
    "Viktor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
)
LAST_NAMES = (
    "Anders",
    "Baptiste",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jansen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quiroga",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Ulloa",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmer",
)
ADJECTIVES = (
    "Bright",
    "Cedar",
    "Delta",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Iron",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Maple",
    "Nimbus",
    "Orchid",
    "Pioneer",
    "Quartz",
    "River",
    "Summit",
    "Tidal",
    "Vertex",
)
NOUNS = (
    "Analytics",
    "Bakery",
    "Robotics",
    "Logistics",
    "Health",
    "Foods",
    "Energy",
    "Media",
    "Systems",
    "Textiles",
    "Dynamics",
    "Labs",
    "Networks",
    "Partners",
    "Studios",
    "Works",
)
SUFFIXES = ("Inc", "GmbH", "Ltd", "SA", "BV", "AB", "LLC", "Oy")
INDUSTRIES = (
    "COMPUTER_SOFTWARE",
    "FOOD_PRODUCTION",
    "HOSPITAL_HEALTH_CARE",
    "LOGISTICS_AND_SUPPLY_CHAIN",
    "MARKETING_AND_ADVERTISING",
    "RENEWABLES_ENVIRONMENT",
    "RETAIL",
    "TEXTILES",
)
PLACES = (
    ("Berlin", "Germany"),
    ("Lyon", "France"),
    ("Austin", "United States"),
    ("Osaka", "Japan"),
    ("Porto", "Portugal"),
    ("Gdansk", "Poland"),
    ("Toronto", "Canada"),
    ("Malmo", "Sweden"),
)
TLDS = ("com", "io", "de", "fr", "co")
LIFECYCLE = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer")
OPEN_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
)
CLOSED_STAGES = ("closedwon", "closedlost")
PERSONAL_DOMAINS = ("gmail.com", "outlook.com", "proton.me")

COMPANY_ID_BASE = 10_000_000
CONTACT_ID_BASE = 50_000_000
DEAL_ID_BASE = 90_000_000
OWNER_ID_BASE = 700_000


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def company_domain(world: World, index: int) -> str:
    rng = rng_for(world.seed, "company", "attrs", index)
    adjective, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
    return f"{adjective}{noun}{index}.{rng.choice(TLDS)}".lower()


def owner_id(world: World, rng: random.Random) -> str:
    return str(OWNER_ID_BASE + rng.randrange(world.population["owner"]))


def _dirty_domain(domain: str, rng: random.Random, dirt_rate: float) -> str:
    if rng.random() >= dirt_rate:
        return domain
    return rng.choice((f"www.{domain}", f"https://www.{domain}/", domain.upper(), f"http://{domain}"))


def _phone(rng: random.Random, dirt_rate: float) -> str | None:
    if rng.random() < 0.1:
        return None
    digits = f"{rng.randrange(200, 999)}{rng.randrange(200, 999)}{rng.randrange(1000, 9999)}"
    if rng.random() >= dirt_rate:
        return f"+1{digits}"
    return rng.choice(
        (
            f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
            f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}",
            f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
        )
    )


def _record(
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


def company(world: World, index: int, at: datetime, dirt_rate: float) -> dict[str, Any]:
    life = world.life("company", index)
    base = rng_for(world.seed, "company", "attrs", index)
    adjective, noun = base.choice(ADJECTIVES), base.choice(NOUNS)
    base.choice(TLDS)
    name = f"{adjective} {noun} {base.choice(SUFFIXES)}"
    city, country = base.choice(PLACES)
    now = at.timestamp()
    version = life.version(now)
    current = rng_for(world.seed, "company", "v", index, version)
    updated = _dt(life.updated(now))
    props = {
        "name": name,
        "domain": _dirty_domain(company_domain(world, index), base, dirt_rate),
        "phone": _phone(base, dirt_rate),
        "industry": base.choice(INDUSTRIES),
        "city": city,
        "country": country,
        "hubspot_owner_id": owner_id(world, current),
        "numberofemployees": int(base.lognormvariate(4, 1.2)) + 1,
        "annualrevenue": round(base.lognormvariate(14, 1.5), 2),
        "createdate": life.created_at,
        "hs_lastmodifieddate": updated,
        "hs_merged_object_ids": None,
    }
    contacts_now = []  # associations are filled from the contact side; HubSpot returns them both ways
    return _record(COMPANY_ID_BASE, index, life.created_at, updated, props, {"contacts": contacts_now})


def contact_company_index(world: World, index: int) -> int:
    life = world.life("contact", index)
    rng = rng_for(world.seed, "contact", "company", index)
    return rng.randrange(world.count("company", life.created_at))


def contact(world: World, index: int, at: datetime, dirt_rate: float) -> dict[str, Any]:
    life = world.life("contact", index)
    base = rng_for(world.seed, "contact", "attrs", index)
    first, last = base.choice(FIRST_NAMES), base.choice(LAST_NAMES)
    company_index = contact_company_index(world, index)
    personal = base.random() < 0.15
    domain = base.choice(PERSONAL_DOMAINS) if personal else company_domain(world, company_index)
    email = f"{first}.{last}{index}@{domain}".lower()
    if base.random() < dirt_rate:
        email = base.choice((email.upper(), f"  {email} ", email.capitalize()))
    now = at.timestamp()
    merges = world.merges_into(index, now)
    version = life.version(now)
    updated = _dt(max([life.updated(now), *(t for _, t in merges)]))
    stage_rng = rng_for(world.seed, "contact", "stage", index)
    start = stage_rng.randrange(3)
    props = {
        "email": email,
        "firstname": first,
        "lastname": last,
        "phone": _phone(base, dirt_rate),
        "company": None if personal else company_domain(world, company_index).split(".")[0],
        "lifecyclestage": LIFECYCLE[min(start + version // 2, len(LIFECYCLE) - 1)],
        "hubspot_owner_id": owner_id(world, rng_for(world.seed, "contact", "owner", index, version // 3)),
        "createdate": life.created_at,
        "lastmodifieddate": updated,
        "hs_merged_object_ids": ";".join(str(CONTACT_ID_BASE + m) for m, _ in merges) or None,
    }
    return _record(
        CONTACT_ID_BASE,
        index,
        life.created_at,
        updated,
        props,
        {"companies": [] if personal else [str(COMPANY_ID_BASE + company_index)]},
    )


def deal_stage(world: World, index: int, version: int) -> str:
    rng = rng_for(world.seed, "deal", "path", index)
    closes_after = rng.randrange(2, 7)
    if version >= closes_after:
        return "closedwon" if rng.random() < 0.35 else "closedlost"
    return OPEN_STAGES[min(version, len(OPEN_STAGES) - 1)]


def deal(world: World, index: int, at: datetime, dirt_rate: float) -> dict[str, Any]:
    life = world.life("deal", index)
    base = rng_for(world.seed, "deal", "attrs", index)
    companies = world.count("company", life.created_at)
    contacts = world.count("contact", life.created_at)
    company_index, contact_index = base.randrange(companies), base.randrange(contacts)
    now = at.timestamp()
    version = life.version(now)
    stage = deal_stage(world, index, version)
    updated = _dt(life.updated(now))
    amount = round(base.lognormvariate(9.5, 1.0), 2)
    props = {
        "dealname": f"{base.choice(ADJECTIVES)} {base.choice(('renewal', 'expansion', 'pilot', 'rollout'))} {index}",
        "amount": amount,
        "dealstage": stage,
        "pipeline": "default",
        "closedate": life.created_at + timedelta(days=base.randrange(20, 120)),
        "createdate": life.created_at,
        "hs_lastmodifieddate": updated,
        "hubspot_owner_id": owner_id(world, rng_for(world.seed, "deal", "owner", index, version // 4)),
        "hs_is_closed_won": stage == "closedwon",
    }
    return _record(
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


RENDERERS = {"companies": ("company", company), "contacts": ("contact", contact), "deals": ("deal", deal)}


def changed_records(
    world: World, stream: str, since: datetime | None, until: datetime, dirt_rate: float
) -> Iterator[dict[str, Any]]:
    """Live records of ``stream`` as of ``until`` whose ``updatedAt`` is in ``(since, until]`` (all when
    ``since`` is None), in id order."""
    kind, render = RENDERERS[stream]
    now, start = until.timestamp(), (since.timestamp() if since is not None else None)
    for index in range(world.count(kind, until)):
        life = world.life(kind, index)
        if not life.alive(now):
            continue
        if start is not None:
            last_change = life.updated(now)
            if kind == "contact":
                last_change = max([last_change, *(t for _, t in world.merges_into(index, now))])
            if last_change <= start:
                continue
        yield render(world, index, until, dirt_rate)
