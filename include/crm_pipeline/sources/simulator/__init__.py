"""The local CRM simulator: a deterministic company whose HubSpot (and later Salesforce) data changes over time."""
