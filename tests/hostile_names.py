"""Names an attacker (or a careless paste) might put where the project expects an identifier: quotes, semicolons,
unicode look-alikes, an overlong name. The catalogue test feeds them to every identifier field
(``unit/test_catalogue.py``); the input-safety test to every DAG Param and, past validation, to the SQL
(``integration/test_hostile_identifiers.py``)."""

HOSTILE = (
    'deals"; drop table public.canary; --',
    "deals'; drop table public.canary; --",
    "deals; select pg_sleep(30)",
    "d\u00e9als",  # unicode letters: PostgreSQL would take them, our catalogue does not
    "deals\u200b",  # a zero-width space: looks like "deals"
    "Robert'); DROP TABLE Students;--",
    "x" * 64,  # longer than PostgreSQL's 63-byte limit, which would silently truncate it
    "",
)
