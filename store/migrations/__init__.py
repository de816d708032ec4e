"""Alembic migrations of the Zebra schema (run through :mod:`store.migrate` or ``zebra db upgrade``)."""
