"""Alerts to people: an email and a Slack-compatible webhook when a task fails (a stopped batch, a failed audit)."""
