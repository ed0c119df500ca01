"""Alembic's script directory for the product database: env.py and one file per revision in versions/."""
