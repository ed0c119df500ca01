"""Durable state: SQLAlchemy models and sessions (SQLite by default, PostgreSQL for several nodes)."""
