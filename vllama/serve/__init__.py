"""Ray Serve and FastAPI: the thin layer around the engine."""
