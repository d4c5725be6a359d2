"""Quality gates: rules from the catalogue, run as GX checkpoints in the database, results kept in the warehouse."""
