"""Where raw CRM data comes from: the Airbyte path in production, the simulator locally; both write the raw contract."""
