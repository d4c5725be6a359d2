"""The simulated company as source-salesforce emits it: Account, Contact, Lead, Opportunity, OpportunityStage,
OpportunityHistory, User and Task.

Salesforce holds part of the same companies and people as HubSpot (``profiles.companies_in_salesforce``), spelled
its own way: company names with or without punctuation and suffix, websites with scheme and ``www.``, emails in
other case. The connector reads with ``queryAll``, so a deleted record comes back with ``IsDeleted = true`` and a
new ``SystemModstamp`` instead of disappearing. OpportunityHistory is append-only: one row per stage change.

Records are rendered a block at a time, column by column (``block.py``); ``at`` is each row's instant: now, or
the moment of deletion for a deleted record (it no longer changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from crm_pipeline.sources.simulator import profiles
from crm_pipeline.sources.simulator.block import BLOCK_SIZE, INT_NULL, Block, Source, Window, days, ms
from crm_pipeline.sources.simulator.draws import Floats, Ints
from crm_pipeline.sources.simulator.profiles import Texts, texts
from crm_pipeline.sources.simulator.world import DAY_MS, EPOCH_MS, Lives, World

OPEN_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote", "Negotiation/Review")
PROBABILITY = {
    "Prospecting": 10,
    "Qualification": 20,
    "Needs Analysis": 40,
    "Proposal/Price Quote": 70,
    "Negotiation/Review": 90,
    "Value Proposition": 50,
    "Id. Decision Makers": 60,
    "Perception Analysis": 70,
    "Closed Won": 100,
    "Closed Lost": 0,
}
FORECAST = {
    "Closed Won": "Closed",
    "Closed Lost": "Omitted",
    "Negotiation/Review": "Commit",
    "Proposal/Price Quote": "Best Case",
}
INDUSTRY = {
    "COMPUTER_SOFTWARE": "Technology",
    "FOOD_PRODUCTION": "Food & Beverage",
    "HOSPITAL_HEALTH_CARE": "Healthcare",
    "LOGISTICS_AND_SUPPLY_CHAIN": "Transportation",
    "MARKETING_AND_ADVERTISING": "Media",
    "RENEWABLES_ENVIRONMENT": "Energy",
    "RETAIL": "Retail",
    "TEXTILES": "Apparel",
}
PREFIX = {
    "Account": "001",
    "Contact": "003",
    "Lead": "00Q",
    "Opportunity": "006",
    "OpportunityHistory": "008",
    "User": "005",
    "Task": "00T",
    "OpportunityStage": "01J",
}
# The org's stage picklist: Salesforce's ten default values, three of which the simulated sales team never uses.
STAGE_PICKLIST = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
ADMIN_USER = "005000000000000AAA"
ACCOUNT_TRIES = 64
HISTORY_BLOCK_SIZE = BLOCK_SIZE // 20  # an opportunity has some twenty history rows by the epoch


def sf_id(stream: str, index: int, suffix: int = 0) -> str:
    """An 18-character Salesforce-style id, unique per object type."""
    return f"{PREFIX[stream]}{index:09d}{suffix:03d}AAA"


def sf_ids(stream: str, index: Ints, suffix: Ints | int = 0) -> Texts:
    """``sf_id`` for arrays: the 12 digits come from one integer's decimal text, less its leading 1."""
    digits = (10**12 + index * 1000 + suffix).astype("U13")
    return (PREFIX[stream] + digits.view("U1").reshape(len(index), 13)[:, 1:].copy().view("U12")[:, 0] + "AAA").astype(
        object
    )


def _constant(n: int, value: object) -> Texts:
    return np.full(n, value, dtype=object)


def _system_fields(stream: str, lives: Lives, at: Ints, owner: Ints | None) -> dict[str, np.ndarray]:
    deleted = lives.archived <= at
    modified = np.where(deleted, lives.archived, lives.updated(at))
    n = len(lives)
    fields: dict[str, np.ndarray] = {
        "Id": sf_ids(stream, lives.index),
        "IsDeleted": deleted,
        "CreatedDate": ms(lives.created),
        "LastModifiedDate": ms(modified),
        "SystemModstamp": ms(modified),
        "CreatedById": _constant(n, ADMIN_USER),
        "LastModifiedById": _constant(n, ADMIN_USER),
    }
    if owner is not None:
        fields["OwnerId"] = sf_ids("User", owner)
    return fields


def _pick(choice: Ints, *variants: np.ndarray) -> Texts:
    """Per row, the variant ``choice`` names."""
    out = np.empty(len(choice), dtype=object)
    for position, variant in enumerate(variants):
        chosen = choice == position
        out[chosen] = variant[chosen] if isinstance(variant, np.ndarray) else variant
    return out


def account_names(world: World, index: Ints, found: profiles.Companies | None = None) -> Texts:
    found = found if found is not None else profiles.companies(world, index)
    choice = world.draws.below(index, 5, "salesforce", "account-name")
    name = found.name
    upper = np.full(len(index), None, dtype=object)
    shout = choice == 4
    upper[shout] = [n.upper() for n in name[shout]]
    return _pick(choice, name, name, found.stem + ", " + found.suffix + ".", found.stem, upper)


def accounts(world: World, lives: Lives, at: Ints, dirt_rate: float) -> Block:
    index, draws = lives.index, world.draws
    found = profiles.companies(world, index)
    owner = profiles.owners_of(world, "company", index, lives.version(at))
    domain = found.domain
    website = _pick(
        draws.below(index, 4, "salesforce", "account", "website"),
        "https://www." + domain,
        "www." + domain,
        domain,
        "http://" + domain + "/",
    )
    columns = {
        **_system_fields("Account", lives, at, owner),
        "Name": account_names(world, index, found),
        "Type": np.where(draws.uniform(index, "salesforce", "account", "type") < 0.6, "Customer", "Prospect").astype(
            object
        ),
        "Industry": texts(INDUSTRY[i] for i in found.industry),
        "Phone": profiles.format_phones(
            world, found.phone_digits, index, max(dirt_rate, 0.5), "salesforce", "account", "phone"
        ),
        "Website": website,
        "BillingCity": found.city,
        "BillingCountry": found.country,
        "AnnualRevenue": found.revenue,
        "NumberOfEmployees": found.employees,
    }
    return Block(index, columns)


def contacts(world: World, lives: Lives, at: Ints, dirt_rate: float) -> Block:
    index, draws = lives.index, world.draws
    person = profiles.people(world, index)
    owner = profiles.owners_of(world, "contact", index, lives.version(at))
    titled = draws.uniform(index, "salesforce", "contact", "email-case") < 0.5
    email = person.email.copy()
    email[titled] = [e.title() for e in email[titled]]
    columns = {
        **_system_fields("Contact", lives, at, owner),
        # only people whose employer is in Salesforce are contacts there
        "AccountId": sf_ids("Account", person.company_index),
        "FirstName": person.first,
        "LastName": person.last,
        "Name": person.first + " " + person.last,
        "Email": profiles.dirty_emails(world, email, index, dirt_rate, "salesforce", "contact", "email"),
        "Phone": profiles.format_phones(
            world, person.phone_digits, index, max(dirt_rate, 0.5), "salesforce", "contact", "phone"
        ),
        "Title": draws.choice(
            index, ("Head of Operations", "CTO", "Buyer", "Office Manager", "VP Sales", None), "salesforce", "title"
        ),
        "LeadSource": draws.choice(index, ("Web", "Partner Referral", "Trade Show", None), "salesforce", "source"),
    }
    return Block(index, columns)


def leads(world: World, lives: Lives, at: Ints, dirt_rate: float) -> Block:
    index, draws = lives.index, world.draws
    person = profiles.people(world, index)
    owner = profiles.owners_of(world, "contact", index, lives.version(at))
    employer = person.company_index
    company = _constant(len(index), "[not provided]")
    employed = employer >= 0
    company[employed] = profiles.company_stems(world, employer[employed])
    n = len(index)
    columns = {
        **_system_fields("Lead", lives, at, owner),
        "FirstName": person.first,
        "LastName": person.last,
        "Company": company,
        "Email": profiles.dirty_emails(world, person.email, index, dirt_rate, "salesforce", "lead", "email"),
        "Phone": profiles.format_phones(
            world, person.phone_digits, index, max(dirt_rate, 0.5), "salesforce", "lead", "phone"
        ),
        "Status": draws.choice(index, ("Open - Not Contacted", "Working - Contacted"), "salesforce", "lead", "status"),
        "LeadSource": draws.choice(index, ("Web", "Purchased List", "Trade Show"), "salesforce", "lead", "source"),
        "IsConverted": np.zeros(n, dtype=bool),
        "ConvertedAccountId": _constant(n, None),
        "ConvertedContactId": _constant(n, None),
        "ConvertedOpportunityId": _constant(n, None),
        "ConvertedDate": np.full(n, np.datetime64("NaT"), dtype="datetime64[D]"),
    }
    return Block(index, columns)


def opportunity_stages(world: World, index: Ints, version: Ints) -> Texts:
    return profiles.stages_on_path(world, "opportunity", index, version, OPEN_STAGES, "Closed Won", "Closed Lost", 0.3)


def opportunity_accounts(world: World, index: Ints) -> Ints:
    """A company that is in Salesforce per opportunity, chosen deterministically (the first of up to 64 draws)."""
    created = world.lives("opportunity", index).created
    companies = world.counts("company", created)
    account = np.zeros(len(index), dtype=np.int64)
    open_ = np.arange(len(index))
    for attempt in range(ACCOUNT_TRIES):
        candidate = world.draws.below(index[open_], companies[open_], "opportunity", "account", j=attempt)
        found = profiles.companies_in_salesforce(world, candidate)
        account[open_[found]] = candidate[found]
        open_ = open_[~found]
        if not len(open_):
            break
    return account


def _opportunity_state(world: World, lives: Lives, version: Ints) -> dict[str, np.ndarray]:
    index = lives.index
    stage = opportunity_stages(world, index, version)
    probability = np.fromiter((PROBABILITY[s] for s in stage), dtype=np.float64, count=len(stage))
    close = lives.created + world.draws.between(index, 20, 120, "opportunity", "close") * DAY_MS
    return {
        "StageName": stage,
        "Amount": np.round(world.draws.lognormal(index, 9.8, 1.0, "opportunity", "amount"), 2),
        "CloseDate": days(close),
        "Probability": probability,
        "ForecastCategory": texts(FORECAST.get(s, "Pipeline") for s in stage),
    }


def opportunities(world: World, lives: Lives, at: Ints, dirt_rate: float) -> Block:
    index, draws = lives.index, world.draws
    version = lives.version(at)
    state = _opportunity_state(world, lives, version)
    account = opportunity_accounts(world, index)
    kind = draws.choice(index, ("New Business", "Renewal", "Upsell"), "opportunity", "name")
    stage = state["StageName"]
    columns = {
        **_system_fields("Opportunity", lives, at, profiles.owners_of(world, "opportunity", index, version)),
        "AccountId": sf_ids("Account", account),
        "Name": profiles.company_stems(world, account) + " - " + kind,
        "Amount": state["Amount"],
        "CloseDate": state["CloseDate"],
        "StageName": stage,
        "Probability": state["Probability"],
        "IsClosed": np.fromiter((s.startswith("Closed") for s in stage), dtype=bool, count=len(stage)),
        "IsWon": stage == "Closed Won",
        "ForecastCategoryName": state["ForecastCategory"],
        "Type": draws.choice(index, ("New Business", "Existing Business"), "opportunity", "type"),
        "LeadSource": draws.choice(index, ("Web", "Partner Referral", "Trade Show"), "opportunity", "source"),
    }
    return Block(index, columns)


def stage_values(window: Window) -> Iterator[Block]:
    """The ``OpportunityStage`` picklist values, unchanged since long before the epoch: a first sync has them all,
    a later window none. ``StageName`` on an opportunity holds a value's ``ApiName``."""
    changed = np.full(len(STAGE_PICKLIST), EPOCH_MS - 400 * DAY_MS, dtype=np.int64)
    if not window.holds(changed).any():
        return
    index = np.arange(len(STAGE_PICKLIST), dtype=np.int64)
    names = texts(STAGE_PICKLIST)
    closed = np.fromiter((s.startswith("Closed") for s in STAGE_PICKLIST), dtype=bool, count=len(index))
    forecast = texts(FORECAST.get(s, "Pipeline") for s in STAGE_PICKLIST)
    columns = {
        "Id": sf_ids("OpportunityStage", index),
        "ApiName": names,
        "MasterLabel": names,
        "IsActive": np.ones(len(index), dtype=bool),
        "IsClosed": closed,
        "IsWon": names == "Closed Won",
        "SortOrder": index + 1,
        "DefaultProbability": np.fromiter((PROBABILITY[s] for s in STAGE_PICKLIST), dtype=np.float64),
        "ForecastCategory": texts(f.replace(" ", "") for f in forecast),
        "ForecastCategoryName": forecast,
        "Description": _constant(len(index), None),
        "CreatedById": _constant(len(index), ADMIN_USER),
        "CreatedDate": ms(changed),
        "LastModifiedById": _constant(len(index), ADMIN_USER),
        "LastModifiedDate": ms(changed),
        "SystemModstamp": ms(changed),
    }
    yield Block(index, columns)


def opportunity_history(world: World, lives: Lives, version: Ints) -> Block:
    """The history rows Salesforce wrote when each opportunity reached ``version`` (0: its creation)."""
    at = np.where(version == 0, lives.created, lives.event(np.maximum(version - 1, 0)))
    state = _opportunity_state(world, lives, version)
    amount: Floats = state["Amount"]
    first = version == 0
    n = len(lives)
    columns = {
        "Id": sf_ids("OpportunityHistory", lives.index, version % 1000),
        "IsDeleted": np.zeros(n, dtype=bool),
        "OpportunityId": sf_ids("Opportunity", lives.index),
        "CreatedById": _constant(n, ADMIN_USER),
        "CreatedDate": ms(at),
        "SystemModstamp": ms(at),
        "StageName": state["StageName"],
        "Amount": amount,
        "ExpectedRevenue": np.round(amount * state["Probability"] / 100, 2),
        "CloseDate": state["CloseDate"],
        "Probability": state["Probability"],
        "ForecastCategory": state["ForecastCategory"],
        # amount and close date do not change with the stage: the previous row's are this row's
        "PrevAmount": np.where(first, np.nan, amount),
        "PrevCloseDate": np.where(first, np.datetime64("NaT"), state["CloseDate"]),
    }
    return Block(lives.index, columns)


def users(world: World, lives: Lives, at: Ints, dirt_rate: float) -> Block:
    index = lives.index
    found = profiles.owners(world, index)
    modified = ms(lives.updated(at))
    email = found.email.copy()
    every_fourth = index % 4 == 0
    email[every_fourth] = [e.title() for e in email[every_fourth]]
    n = len(index)
    columns = {
        "Id": sf_ids("User", index),
        "Username": found.email + ".crm",
        "Email": email,
        "FirstName": found.first,
        "LastName": found.last,
        "Name": found.first + " " + found.last,
        "IsActive": np.ones(n, dtype=bool),
        "UserRoleId": _constant(n, "00E000000000001AAA"),
        "ProfileId": _constant(n, "00e000000000001AAA"),
        "CreatedDate": ms(lives.created),
        "LastModifiedDate": modified,
        "SystemModstamp": modified,
    }
    return Block(index, columns)


def tasks(world: World, lives: Lives, at: Ints, dirt_rate: float) -> Block:
    index, draws = lives.index, world.draws
    version = lives.version(at)
    opportunity = draws.below(index, world.counts("opportunity", lives.created), "task", "opportunity")
    account = opportunity_accounts(world, opportunity)
    subtype = draws.choice(index, ("Call", "Email", "Task"), "task", "subtype")
    closed = version >= 1
    call = (subtype == "Call") & closed
    n = len(index)
    columns = {
        **_system_fields("Task", lives, at, profiles.owners_of(world, "task", index, np.zeros_like(index))),
        "WhatId": sf_ids("Opportunity", opportunity),
        "WhoId": _constant(n, None),
        "AccountId": sf_ids("Account", account),
        "Subject": subtype + ": " + profiles.company_stems(world, account),
        "Status": np.where(closed, "Completed", "Not Started").astype(object),
        "Priority": draws.choice(index, ("Normal", "High"), "task", "priority"),
        "ActivityDate": days(lives.created + draws.between(index, 0, 14, "task", "activity") * DAY_MS),
        "TaskSubtype": subtype,
        "IsClosed": closed,
        "CallDurationInSeconds": np.where(call, draws.between(index, 60, 3600, "task", "duration"), INT_NULL),
    }
    return Block(index, columns)


Renderer = Callable[[World, Lives, Ints, float], Block]
RENDERERS: dict[str, tuple[str, Renderer]] = {
    "Account": ("company", accounts),
    "Contact": ("contact", contacts),
    "Lead": ("contact", leads),
    "Opportunity": ("opportunity", opportunities),
    "User": ("owner", users),
    "Task": ("task", tasks),
}


def _members(world: World, stream: str, index: Ints) -> np.ndarray:
    if stream == "Account":
        return profiles.companies_in_salesforce(world, index)
    if stream == "Contact":
        return profiles.contacts_in_salesforce(world, index)
    if stream == "Lead":
        return profiles.salesforce_leads(world, index)
    return np.ones(len(index), dtype=bool)


def _history_blocks(world: World, window: Window) -> Iterator[Block]:
    now = window.now
    total = int(world.counts("opportunity", np.array([now], dtype=np.int64))[0])
    for low in range(0, total, HISTORY_BLOCK_SIZE):
        lives = world.lives("opportunity", range(low, min(total, low + HISTORY_BLOCK_SIZE)))
        lives = lives.take(lives.created <= now)
        versions = lives.version(now) + 1  # creation and every change by now
        rows = np.repeat(np.arange(len(lives)), versions)
        version = np.arange(len(rows)) - np.repeat(np.cumsum(versions) - versions, versions)
        history = lives.take(rows)
        at = np.where(version == 0, history.created, history.event(np.maximum(version - 1, 0)))
        keep = window.holds(at)
        if keep.any():
            yield opportunity_history(world, history.take(keep), version[keep])


def blocks(world: World, stream: str, window: Window, dirt_rate: float) -> Iterator[Block]:
    """Every record whose ``SystemModstamp`` the window holds: live ones, and deleted ones from the recycle bin
    (``queryAll``); OpportunityHistory's rows by their creation."""
    if stream == "OpportunityHistory":
        yield from _history_blocks(world, window)
        return
    if stream == "OpportunityStage":
        yield from stage_values(window)
        return
    kind, render = RENDERERS[stream]
    now = window.now
    total = int(world.counts(kind, np.array([now], dtype=np.int64))[0])
    for low in range(0, total, BLOCK_SIZE):
        lives = world.lives(kind, range(low, min(total, low + BLOCK_SIZE)))
        keep = (lives.created <= now) & (lives.merged > now) & _members(world, stream, lives.index)
        deleted = lives.archived <= now
        keep &= window.holds(np.where(deleted, lives.archived, lives.updated(now)))
        if keep.any():
            chosen = lives.take(keep)
            # A deleted record no longer changes: it is what it was when it was deleted.
            at = np.where(deleted[keep], chosen.archived, now)
            yield render(world, chosen, at, dirt_rate)


SOURCE = Source(blocks)
changed_blocks = SOURCE.changed_blocks
changed_records = SOURCE.changed_records
