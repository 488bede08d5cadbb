"""The HTTP API (FastAPI): ``api.app.create_app(settings)``; HTTP only, over the core."""
