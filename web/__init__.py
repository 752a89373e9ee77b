"""The staff web application: FastAPI routes over the same commands and read side as the
CLI. Nothing is built at import time: :func:`web.app.create_app` wires it."""
