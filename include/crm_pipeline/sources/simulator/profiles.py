"""Who the simulated company's customers, contacts and sales reps really are, independent of any CRM.

HubSpot and Salesforce render these same profiles, each with its own formatting and dirt (email case and padding,
``www.``/``https://`` websites, phone formats, company-name spelling). That shared truth is what identity
resolution is scored against.

Every function takes an array of entity indices and returns arrays (object arrays for text), so a block of a
first sync is profiled in a few array operations; one entity is a block of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crm_pipeline.sources.simulator.draws import Floats, Ints, indices
from crm_pipeline.sources.simulator.world import OVERLAP, World

Texts = npt.NDArray[np.object_]

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


def texts(values: object) -> Texts:
    """An object array of the given strings (numpy would make a fixed-width unicode array)."""
    items = list(values)  # type: ignore[call-overload]
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _lower(options: tuple[str, ...]) -> Texts:
    return texts(o.lower() for o in options)


def _decimal(values: Ints) -> Texts:
    return texts(map(str, values.tolist()))


@dataclass(frozen=True)
class Companies:
    index: Ints
    stem: Texts  # "Bright Analytics"
    suffix: Texts  # "Inc"
    domain: Texts  # brightanalytics12.io
    industry: Texts
    city: Texts
    country: Texts
    phone_digits: Texts  # None: no phone on record
    employees: Ints
    revenue: Floats

    @property
    def name(self) -> Texts:
        return self.stem + " " + self.suffix


@dataclass(frozen=True)
class People:
    index: Ints
    person: Ints  # the real person: a merged-away duplicate is the person it is merged into
    first: Texts
    last: Texts
    email: Texts  # canonical: lower case, no padding
    company_index: Ints  # -1: a personal address and no employer on record
    phone_digits: Texts


@dataclass(frozen=True)
class Owners:
    index: Ints
    first: Texts
    last: Texts
    email: Texts


def _digits(world: World, index: Ints, *purpose: object) -> Texts:
    draws = world.draws
    number = (
        draws.between(index, 200, 999, *purpose, "area") * 10_000_000
        + draws.between(index, 200, 999, *purpose, "exchange") * 10_000
        + draws.between(index, 1000, 9999, *purpose, "line")
    )
    digits = _decimal(number)
    digits[draws.uniform(index, *purpose, "none") < 0.1] = None
    return digits


def company_stems(world: World, index: Ints) -> Texts:
    """A company's name without its legal suffix ("Bright Analytics"); cheaper than the whole profile."""
    adjective = world.draws.below(index, len(ADJECTIVES), "company", "adjective")
    return _ADJECTIVES[adjective] + " " + _NOUNS[world.draws.below(index, len(NOUNS), "company", "noun")]


def company_domains(world: World, index: Ints) -> Texts:
    adjective = world.draws.below(index, len(ADJECTIVES), "company", "adjective")
    noun = world.draws.below(index, len(NOUNS), "company", "noun")
    tld = world.draws.choice(index, TLDS, "company", "tld")
    return texts(
        f"{a}{n}{i}.{t}"
        for a, n, i, t in zip(
            _LOWER_ADJECTIVES[adjective].tolist(),
            _LOWER_NOUNS[noun].tolist(),
            index.tolist(),
            tld.tolist(),
            strict=True,
        )
    )


def companies(world: World, index: Ints | range) -> Companies:
    index = indices(index)
    draws = world.draws
    place = draws.below(index, len(PLACES), "company", "place")
    return Companies(
        index=index,
        stem=company_stems(world, index),
        suffix=draws.choice(index, SUFFIXES, "company", "suffix"),
        domain=company_domains(world, index),
        industry=draws.choice(index, INDUSTRIES, "company", "industry"),
        city=_CITIES[place],
        country=_COUNTRIES[place],
        phone_digits=_digits(world, index, "company", "phone"),
        employees=draws.lognormal(index, 4, 1.2, "company", "employees").astype(np.int64) + 1,
        revenue=np.round(draws.lognormal(index, 14, 1.5, "company", "revenue"), 2),
    )


def people(world: World, index: Ints | range) -> People:
    """Contacts' people. A duplicate record (merged away later) is the same person, entered again."""
    index = indices(index)
    person = world.people(index)
    draws = world.draws
    first = draws.below(person, len(FIRST_NAMES), "person", "first")
    last = draws.below(person, len(LAST_NAMES), "person", "last")
    created = world.lives("contact", person).created
    employer = draws.below(person, world.counts("company", created), "person", "employer")
    personal = draws.uniform(person, "person", "personal") < 0.15
    domain = np.where(personal, draws.choice(person, PERSONAL_DOMAINS, "person", "mailbox"), None)
    needs = ~personal
    if needs.any():
        domain[needs] = company_domains(world, employer[needs])
    email = texts(
        f"{f}.{la}{p}@{d}"
        for f, la, p, d in zip(
            _LOWER_FIRST[first].tolist(), _LOWER_LAST[last].tolist(), person.tolist(), domain.tolist(), strict=True
        )
    )
    return People(
        index=index,
        person=person,
        first=_FIRST[first],
        last=_LAST[last],
        email=email,
        company_index=np.where(personal, -1, employer),
        phone_digits=_digits(world, person, "person", "phone"),
    )


def owners(world: World, index: Ints | range) -> Owners:
    index = indices(index)
    first = world.draws.below(index, len(FIRST_NAMES), "owner", "first")
    last = world.draws.below(index, len(LAST_NAMES), "owner", "last")
    email = _LOWER_FIRST[first] + "." + _LOWER_LAST[last] + "." + _decimal(index) + "@" + SALES_DOMAIN
    return Owners(index, _FIRST[first], _LAST[last], email)


def owners_of(world: World, kind: str, index: Ints, version: Ints, *, every: int = 3) -> Ints:
    """The owner index of each entity; ownership changes every ``every`` updates."""
    return world.draws.below(index, world.population["owner"], kind, "owner", j=version // every)


def stages_on_path(
    world: World,
    kind: str,
    index: Ints,
    version: Ints,
    open_stages: tuple[str, ...],
    won: str,
    lost: str,
    win_rate: float,
) -> Texts:
    """Where each deal or opportunity is after ``version`` updates: one open stage per update, closed after 2 to 6."""
    closes_after = world.draws.between(index, 2, 7, kind, "closes_after")
    wins = world.draws.uniform(index, kind, "wins") < win_rate
    stage = texts(open_stages)[np.minimum(version, len(open_stages) - 1)]
    closed = version >= closes_after
    stage[closed] = np.where(wins[closed], won, lost)
    return stage


def companies_in_salesforce(world: World, index: Ints) -> np.ndarray:
    """Whether each real-world company is also in Salesforce."""
    return world.draws.uniform(index, "salesforce", "company") < OVERLAP["company_in_salesforce"]


def contacts_in_salesforce(world: World, index: Ints, found: People | None = None) -> np.ndarray:
    """Whether each contact's person is a Salesforce contact too: only people whose employer is in Salesforce, and
    never HubSpot's duplicate records."""
    found = found if found is not None else people(world, index)
    employer = found.company_index
    employer_in_sf = (employer >= 0) & companies_in_salesforce(world, np.maximum(employer, 0))
    share = OVERLAP["contact_in_salesforce"] / OVERLAP["company_in_salesforce"]
    drawn = world.draws.uniform(found.index, "salesforce", "contact") < share
    return (found.person == found.index) & employer_in_sf & drawn


def salesforce_leads(world: World, index: Ints, found: People | None = None) -> np.ndarray:
    """People Salesforce knows only as leads (not converted): never also Salesforce contacts."""
    found = found if found is not None else people(world, index)
    drawn = world.draws.uniform(found.index, "salesforce", "lead") < OVERLAP["lead_in_salesforce"]
    return (found.person == found.index) & ~contacts_in_salesforce(world, index, found) & drawn


def in_salesforce(world: World, kind: str, index: int) -> bool:
    """One company or contact: is it in Salesforce (see ``companies_in_salesforce``, ``contacts_in_salesforce``)."""
    one = indices(index)
    return bool((companies_in_salesforce if kind == "company" else contacts_in_salesforce)(world, one)[0])


def is_salesforce_lead(world: World, index: int) -> bool:
    return bool(salesforce_leads(world, indices(index))[0])


def format_phones(world: World, digits: Texts, index: Ints, dirt_rate: float, *purpose: object) -> Texts:
    """E.164 (``+1...``), or at ``dirt_rate`` one of the formats people type."""
    phones = np.where(digits == None, None, "+1" + np.where(digits == None, "", digits))  # noqa: E711
    dirty = (world.draws.uniform(index, *purpose, "dirty") < dirt_rate) & (digits != None)  # noqa: E711
    if dirty.any():
        style = world.draws.below(index[dirty], 3, *purpose, "style")
        phones[dirty] = [_PHONE_STYLES[s](d) for s, d in zip(style.tolist(), digits[dirty].tolist(), strict=True)]
    return phones


def dirty_emails(world: World, emails: Texts, index: Ints, dirt_rate: float, *purpose: object) -> Texts:
    """The address as typed: at ``dirt_rate`` in other case or padded with spaces."""
    out = emails.copy()
    dirty = world.draws.uniform(index, *purpose, "dirty") < dirt_rate
    if dirty.any():
        style = world.draws.below(index[dirty], 3, *purpose, "style")
        out[dirty] = [_EMAIL_STYLES[s](e) for s, e in zip(style.tolist(), emails[dirty].tolist(), strict=True)]
    return out


_PHONE_STYLES = (
    lambda d: f"({d[:3]}) {d[3:6]}-{d[6:]}",
    lambda d: f"1-{d[:3]}-{d[3:6]}-{d[6:]}",
    lambda d: f"{d[:3]}.{d[3:6]}.{d[6:]}",
)
_EMAIL_STYLES = (str.upper, lambda e: f"  {e} ", str.capitalize)
_FIRST, _LAST = texts(FIRST_NAMES), texts(LAST_NAMES)
_LOWER_FIRST, _LOWER_LAST = _lower(FIRST_NAMES), _lower(LAST_NAMES)
_ADJECTIVES, _NOUNS = texts(ADJECTIVES), texts(NOUNS)
_LOWER_ADJECTIVES, _LOWER_NOUNS = _lower(ADJECTIVES), _lower(NOUNS)
_CITIES, _COUNTRIES = texts(city for city, _ in PLACES), texts(country for _, country in PLACES)
