"""JSON API routers under /api/v1 (each module exposes `router`)."""
