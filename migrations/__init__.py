"""Alembic migrations (async env); `passnum migrate` runs them."""
