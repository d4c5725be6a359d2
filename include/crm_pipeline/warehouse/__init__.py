"""The Postgres warehouse: where it is (URL or embedded server), how to connect, and what lives in it."""
