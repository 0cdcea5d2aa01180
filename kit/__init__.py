"""Shared plumbing: settings, database, money, clock, errors."""
