"""What an erasure request must say, checked before anything connects: exactly one of an email or a CRM id.

Kept apart from ``erasure.py`` so the DAG can build its Params from these patterns without importing a database
driver at parse time.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
CRM_ID = re.compile(r"^[A-Za-z0-9]{1,40}$")  # HubSpot ids are digits; Salesforce's are 15 or 18 letters and digits


class ErasureRequestError(ValueError):
    """The request does not identify one person; the message names the parameter."""


def checked_request(email: str | None, crm_id: str | None) -> tuple[str | None, str | None]:
    """``(email, crm_id)`` normalised (the email lower-cased and trimmed, as the models normalise it), exactly one
    of them set."""
    email = (email or "").strip().lower() or None
    crm_id = (crm_id or "").strip() or None
    if (email is None) == (crm_id is None):
        raise ErasureRequestError("give exactly one of the params email and crm_id")
    if email is not None and not EMAIL.match(email):
        raise ErasureRequestError("param email is not an email address")
    if crm_id is not None and not CRM_ID.match(crm_id):
        raise ErasureRequestError("param crm_id must be a HubSpot or Salesforce record id (letters and digits)")
    return email, crm_id
