"""Monitoring: what each extract run loaded and how its gates judged it, stream freshness, the health page."""
