"""What DAG files import: task callables, default args and the Cosmos task group, built from the catalogue."""
