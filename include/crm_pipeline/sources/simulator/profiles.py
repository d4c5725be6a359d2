"""Who the simulated company's customers, contacts and sales reps really are, independent of any CRM.

HubSpot and Salesforce render these same profiles, each with its own formatting and dirt (email case and padding,
``www.``/``https://`` websites, phone formats, company-name spelling). That shared truth is what identity
resolution is scored against.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from crm_pipeline.sources.simulator.world import OVERLAP, World, rng_for

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
PERSONAL_DOMAINS = ("gmail.com", "outlook.com", "proton.me")
SALES_DOMAIN = "northwind-sales.example"


@dataclass(frozen=True)
class CompanyProfile:
    index: int
    stem: str  # "Bright Analytics"
    suffix: str  # "Inc"
    domain: str  # brightanalytics12.io
    industry: str
    city: str
    country: str
    phone_digits: str | None
    employees: int
    revenue: float

    @property
    def name(self) -> str:
        return f"{self.stem} {self.suffix}"


@dataclass(frozen=True)
class PersonProfile:
    index: int
    first: str
    last: str
    email: str  # canonical: lower case, no padding
    company_index: int | None  # None: a personal address and no employer on record
    phone_digits: str | None


@dataclass(frozen=True)
class OwnerProfile:
    index: int
    first: str
    last: str
    email: str


def _digits(rng: random.Random) -> str | None:
    if rng.random() < 0.1:
        return None
    return f"{rng.randrange(200, 999)}{rng.randrange(200, 999)}{rng.randrange(1000, 9999)}"


def company_profile(world: World, index: int) -> CompanyProfile:
    rng = rng_for(world.seed, "company", "profile", index)
    adjective, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
    city, country = rng.choice(PLACES)
    return CompanyProfile(
        index=index,
        stem=f"{adjective} {noun}",
        suffix=rng.choice(SUFFIXES),
        domain=f"{adjective}{noun}{index}.{rng.choice(TLDS)}".lower(),
        industry=rng.choice(INDUSTRIES),
        city=city,
        country=country,
        phone_digits=_digits(rng),
        employees=int(rng.lognormvariate(4, 1.2)) + 1,
        revenue=round(rng.lognormvariate(14, 1.5), 2),
    )


def person_profile(world: World, index: int) -> PersonProfile:
    person = world.person_of(index)
    if person != index:  # a duplicate record: the same person, entered again
        return replace(person_profile(world, person), index=index)
    rng = rng_for(world.seed, "contact", "profile", index)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    life = world.life("contact", index)
    company_index = rng.randrange(world.count("company", life.created_at))
    personal = rng.random() < 0.15
    domain = rng.choice(PERSONAL_DOMAINS) if personal else company_profile(world, company_index).domain
    return PersonProfile(
        index=index,
        first=first,
        last=last,
        email=f"{first}.{last}{index}@{domain}".lower(),
        company_index=None if personal else company_index,
        phone_digits=_digits(rng),
    )


def owner_profile(world: World, index: int) -> OwnerProfile:
    rng = rng_for(world.seed, "owner", "profile", index)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return OwnerProfile(index, first, last, f"{first}.{last}.{index}@{SALES_DOMAIN}".lower())


def owner_of(world: World, kind: str, index: int, version: int, *, every: int = 3) -> int:
    """The owner index of an entity; ownership changes every ``every`` updates."""
    rng = rng_for(world.seed, kind, "owner", index, version // every)
    return rng.randrange(world.population["owner"])


def stage_on_path(
    world: World,
    kind: str,
    index: int,
    version: int,
    open_stages: tuple[str, ...],
    won: str,
    lost: str,
    win_rate: float,
) -> str:
    """Where a deal or opportunity is after ``version`` updates: one open stage per update, closed after 2 to 6."""
    rng = rng_for(world.seed, kind, "path", index)
    closes_after = rng.randrange(2, 7)
    if version >= closes_after:
        return won if rng.random() < win_rate else lost
    return open_stages[min(version, len(open_stages) - 1)]


def in_salesforce(world: World, kind: str, index: int) -> bool:
    """Whether the real-world company or person is also (or, for leads, only) in Salesforce."""
    rng = rng_for(world.seed, "salesforce", kind, index)
    if kind == "company":
        return rng.random() < OVERLAP["company_in_salesforce"]
    if world.person_of(index) != index:  # HubSpot's duplicate records have no counterpart in Salesforce
        return False
    person = person_profile(world, index)
    employer_in_sf = person.company_index is not None and in_salesforce(world, "company", person.company_index)
    return employer_in_sf and rng.random() < OVERLAP["contact_in_salesforce"] / OVERLAP["company_in_salesforce"]


def is_salesforce_lead(world: World, index: int) -> bool:
    """People Salesforce knows only as leads (not converted): never also Salesforce contacts."""
    if in_salesforce(world, "contact", index) or world.person_of(index) != index:
        return False
    return rng_for(world.seed, "salesforce", "lead", index).random() < OVERLAP["lead_in_salesforce"]


def format_phone(digits: str | None, rng: random.Random, dirt_rate: float) -> str | None:
    if digits is None:
        return None
    if rng.random() >= dirt_rate:
        return f"+1{digits}"
    return rng.choice(
        (
            f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
            f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}",
            f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
        )
    )


def dirty_email(email: str, rng: random.Random, dirt_rate: float) -> str:
    if rng.random() >= dirt_rate:
        return email
    return rng.choice((email.upper(), f"  {email} ", email.capitalize()))
