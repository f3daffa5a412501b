"""Storage: SQLAlchemy tables, engine construction and Alembic migrations."""
