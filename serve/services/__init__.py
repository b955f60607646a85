"""Use cases: no FastAPI imports."""
