"""Use cases with no FastAPI imports: what the routes in serve/api call."""
