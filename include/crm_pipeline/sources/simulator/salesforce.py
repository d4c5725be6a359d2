"""The simulated company as source-salesforce emits it: Account, Contact, Lead, Opportunity, OpportunityHistory,
User and Task.

Salesforce holds part of the same companies and people as HubSpot (``profiles.in_salesforce``), spelled its own
way: company names with or without punctuation and suffix, websites with scheme and ``www.``, emails in other
case. The connector reads with ``queryAll``, so a deleted record comes back with ``IsDeleted = true`` and a new
``SystemModstamp`` instead of disappearing. OpportunityHistory is append-only: one row per stage change.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from crm_pipeline.sources.simulator.profiles import (
    company_profile,
    dirty_email,
    format_phone,
    in_salesforce,
    is_salesforce_lead,
    owner_of,
    owner_profile,
    person_profile,
    stage_on_path,
)
from crm_pipeline.sources.simulator.world import Life, World, _dt, rng_for

OPEN_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote", "Negotiation/Review")
PROBABILITY = {
    "Prospecting": 10,
    "Qualification": 20,
    "Needs Analysis": 40,
    "Proposal/Price Quote": 70,
    "Negotiation/Review": 90,
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
}
ADMIN_USER = "005000000000000AAA"


def sf_id(stream: str, index: int, suffix: int = 0) -> str:
    """An 18-character Salesforce-style id, unique per object type."""
    return f"{PREFIX[stream]}{index:09d}{suffix:03d}AAA"


def user_id(world: World, kind: str, index: int, version: int) -> str:
    return sf_id("User", owner_of(world, kind, index, version))


def _system_fields(stream: str, index: int, life: Life, now: float, owner: str | None) -> dict[str, Any]:
    deleted = life.archived is not None and life.archived <= now
    modified = _dt(life.archived if deleted and life.archived is not None else life.updated(now))
    fields: dict[str, Any] = {
        "Id": sf_id(stream, index),
        "IsDeleted": deleted,
        "CreatedDate": life.created_at,
        "LastModifiedDate": modified,
        "SystemModstamp": modified,
        "CreatedById": ADMIN_USER,
        "LastModifiedById": ADMIN_USER,
    }
    if owner is not None:
        fields["OwnerId"] = owner
    return fields


def account_name(world: World, index: int) -> str:
    profile = company_profile(world, index)
    rng = rng_for(world.seed, "salesforce", "account-name", index)
    return rng.choice(
        (profile.name, profile.name, f"{profile.stem}, {profile.suffix}.", profile.stem, profile.name.upper())
    )


def account(world: World, index: int, now: float, dirt_rate: float) -> dict[str, Any]:
    life = world.life("company", index)
    profile = company_profile(world, index)
    rng = rng_for(world.seed, "salesforce", "account", index)
    return {
        **_system_fields("Account", index, life, now, user_id(world, "company", index, life.version(now))),
        "Name": account_name(world, index),
        "Type": "Customer" if rng.random() < 0.6 else "Prospect",
        "Industry": INDUSTRY[profile.industry],
        "Phone": format_phone(profile.phone_digits, rng, max(dirt_rate, 0.5)),
        "Website": rng.choice(
            (f"https://www.{profile.domain}", f"www.{profile.domain}", profile.domain, f"http://{profile.domain}/")
        ),
        "BillingCity": profile.city,
        "BillingCountry": profile.country,
        "AnnualRevenue": profile.revenue,
        "NumberOfEmployees": profile.employees,
    }


def contact(world: World, index: int, now: float, dirt_rate: float) -> dict[str, Any]:
    life = world.life("contact", index)
    person = person_profile(world, index)
    rng = rng_for(world.seed, "salesforce", "contact", index)
    assert person.company_index is not None  # only people whose employer is in Salesforce are contacts there
    return {
        **_system_fields("Contact", index, life, now, user_id(world, "contact", index, life.version(now))),
        "AccountId": sf_id("Account", person.company_index),
        "FirstName": person.first,
        "LastName": person.last,
        "Name": f"{person.first} {person.last}",
        "Email": dirty_email(rng.choice((person.email, person.email.title())), rng, dirt_rate),
        "Phone": format_phone(person.phone_digits, rng, max(dirt_rate, 0.5)),
        "Title": rng.choice(("Head of Operations", "CTO", "Buyer", "Office Manager", "VP Sales", None)),
        "LeadSource": rng.choice(("Web", "Partner Referral", "Trade Show", None)),
    }


def lead(world: World, index: int, now: float, dirt_rate: float) -> dict[str, Any]:
    life = world.life("contact", index)
    person = person_profile(world, index)
    rng = rng_for(world.seed, "salesforce", "lead", index)
    employer = company_profile(world, person.company_index) if person.company_index is not None else None
    return {
        **_system_fields("Lead", index, life, now, user_id(world, "contact", index, life.version(now))),
        "FirstName": person.first,
        "LastName": person.last,
        "Company": employer.stem if employer else "[not provided]",
        "Email": dirty_email(person.email, rng, dirt_rate),
        "Phone": format_phone(person.phone_digits, rng, max(dirt_rate, 0.5)),
        "Status": rng.choice(("Open - Not Contacted", "Working - Contacted")),
        "LeadSource": rng.choice(("Web", "Purchased List", "Trade Show")),
        "IsConverted": False,
        "ConvertedAccountId": None,
        "ConvertedContactId": None,
        "ConvertedOpportunityId": None,
        "ConvertedDate": None,
    }


def opportunity_stage(world: World, index: int, version: int) -> str:
    return stage_on_path(world, "opportunity", index, version, OPEN_STAGES, "Closed Won", "Closed Lost", 0.3)


def opportunity_account(world: World, index: int) -> int:
    """A company that is in Salesforce, chosen deterministically."""
    life = world.life("opportunity", index)
    rng = rng_for(world.seed, "opportunity", "account", index)
    companies = world.count("company", life.created_at)
    for _ in range(64):
        candidate = rng.randrange(companies)
        if in_salesforce(world, "company", candidate):
            return candidate
    return 0


def _opportunity_state(world: World, index: int, version: int) -> dict[str, Any]:
    rng = rng_for(world.seed, "opportunity", "attrs", index)
    amount = round(rng.lognormvariate(9.8, 1.0), 2)
    stage = opportunity_stage(world, index, version)
    life = world.life("opportunity", index)
    close = (life.created_at + timedelta(days=rng.randrange(20, 120))).date()
    return {
        "StageName": stage,
        "Amount": amount,
        "CloseDate": close,
        "Probability": PROBABILITY[stage],
        "ForecastCategory": FORECAST.get(stage, "Pipeline"),
    }


def opportunity(world: World, index: int, now: float, dirt_rate: float) -> dict[str, Any]:
    life = world.life("opportunity", index)
    version = life.version(now)
    state = _opportunity_state(world, index, version)
    account_index = opportunity_account(world, index)
    rng = rng_for(world.seed, "opportunity", "meta", index)
    return {
        **_system_fields("Opportunity", index, life, now, user_id(world, "opportunity", index, version)),
        "AccountId": sf_id("Account", account_index),
        "Name": f"{company_profile(world, account_index).stem} - {rng.choice(('New Business', 'Renewal', 'Upsell'))}",
        "Amount": state["Amount"],
        "CloseDate": state["CloseDate"],
        "StageName": state["StageName"],
        "Probability": state["Probability"],
        "IsClosed": state["StageName"].startswith("Closed"),
        "IsWon": state["StageName"] == "Closed Won",
        "ForecastCategoryName": state["ForecastCategory"],
        "Type": rng.choice(("New Business", "Existing Business")),
        "LeadSource": rng.choice(("Web", "Partner Referral", "Trade Show")),
    }


def opportunity_history(world: World, index: int, version: int) -> dict[str, Any]:
    """The history row Salesforce writes when opportunity ``index`` reached ``version`` (0: creation)."""
    life = world.life("opportunity", index)
    at = life.created if version == 0 else life.events[version - 1]
    state = _opportunity_state(world, index, version)
    previous = _opportunity_state(world, index, version - 1) if version else None
    return {
        "Id": sf_id("OpportunityHistory", index, version % 1000),
        "IsDeleted": False,
        "OpportunityId": sf_id("Opportunity", index),
        "CreatedById": ADMIN_USER,
        "CreatedDate": _dt(at),
        "SystemModstamp": _dt(at),
        "StageName": state["StageName"],
        "Amount": state["Amount"],
        "ExpectedRevenue": round(state["Amount"] * state["Probability"] / 100, 2),
        "CloseDate": state["CloseDate"],
        "Probability": state["Probability"],
        "ForecastCategory": state["ForecastCategory"],
        "PrevAmount": previous["Amount"] if previous else None,
        "PrevCloseDate": previous["CloseDate"] if previous else None,
    }


def user(world: World, index: int, now: float, dirt_rate: float) -> dict[str, Any]:
    life = world.life("owner", index)
    profile = owner_profile(world, index)
    modified = _dt(life.updated(now))
    return {
        "Id": sf_id("User", index),
        "Username": f"{profile.email}.crm",
        "Email": profile.email.title() if index % 4 == 0 else profile.email,
        "FirstName": profile.first,
        "LastName": profile.last,
        "Name": f"{profile.first} {profile.last}",
        "IsActive": True,
        "UserRoleId": "00E000000000001AAA",
        "ProfileId": "00e000000000001AAA",
        "CreatedDate": life.created_at,
        "LastModifiedDate": modified,
        "SystemModstamp": modified,
    }


def task(world: World, index: int, now: float, dirt_rate: float) -> dict[str, Any]:
    life = world.life("task", index)
    rng = rng_for(world.seed, "task", "attrs", index)
    version = life.version(now)
    opportunity_index = rng.randrange(world.count("opportunity", life.created_at))
    account_index = opportunity_account(world, opportunity_index)
    subtype = rng.choice(("Call", "Email", "Task"))
    closed = version >= 1
    return {
        **_system_fields("Task", index, life, now, user_id(world, "task", index, 0)),
        "WhatId": sf_id("Opportunity", opportunity_index),
        "WhoId": None,
        "AccountId": sf_id("Account", account_index),
        "Subject": f"{subtype}: {company_profile(world, account_index).stem}",
        "Status": "Completed" if closed else "Not Started",
        "Priority": rng.choice(("Normal", "High")),
        "ActivityDate": (life.created_at + timedelta(days=rng.randrange(0, 14))).date(),
        "TaskSubtype": subtype,
        "IsClosed": closed,
        "CallDurationInSeconds": rng.randrange(60, 3600) if subtype == "Call" and closed else None,
    }


def _members(world: World, stream: str, until: datetime) -> Iterator[tuple[str, int]]:
    if stream == "Account":
        kind = "company"
        yield from ((kind, i) for i in range(world.count(kind, until)) if in_salesforce(world, kind, i))
    elif stream in ("Contact", "Lead"):
        keep = (
            (lambda i: in_salesforce(world, "contact", i))
            if stream == "Contact"
            else (lambda i: is_salesforce_lead(world, i))
        )
        yield from (("contact", i) for i in range(world.count("contact", until)) if keep(i))
    else:
        kind = {"Opportunity": "opportunity", "User": "owner", "Task": "task"}[stream]
        yield from ((kind, i) for i in range(world.count(kind, until)))


RENDERERS = {
    "Account": account,
    "Contact": contact,
    "Lead": lead,
    "Opportunity": opportunity,
    "User": user,
    "Task": task,
}


def changed_records(
    world: World,
    stream: str,
    since: datetime | None,
    until: datetime,
    dirt_rate: float,
    *,
    as_of: datetime | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(entity index, record)`` for every record as of ``as_of`` (default ``until``) whose ``SystemModstamp`` is
    in ``(since, until]`` (every record that exists or sits deleted in the recycle bin when ``since`` is None). A
    later ``as_of`` is a backfill: the source read again now, as its API only can, for an earlier window."""
    present = as_of or until
    now, end = present.timestamp(), until.timestamp()
    start = since.timestamp() if since is not None else None
    if stream == "OpportunityHistory":
        for index in range(world.count("opportunity", present)):
            life = world.life("opportunity", index)
            if life.created > now:
                continue
            for version in range(life.version(now) + 1):
                at = life.created if version == 0 else life.events[version - 1]
                if (start is None or at > start) and at <= end:
                    yield index, opportunity_history(world, index, version)
        return
    render = RENDERERS[stream]
    for kind, index in _members(world, stream, present):
        life = world.life(kind, index)
        if life.created > now or (life.merged is not None and life.merged <= now):
            continue
        deleted = life.archived is not None and life.archived <= now
        last_change = life.archived if deleted and life.archived is not None else life.updated(now)
        if (start is not None and last_change <= start) or last_change > end:
            continue
        # A deleted record no longer changes: it is what it was when it was deleted.
        yield index, render(world, index, last_change if deleted else now, dirt_rate)
