"""``cno-tracker web [--host] [--port] [--workers]``: the staff web application under
uvicorn. FastAPI and uvicorn load only when the command runs.

With ``--workers N`` (``CNO_TRACKER_WEB_WORKERS``) uvicorn starts N processes that share
the listening socket; each builds its own application (:func:`from_environment`) with its
own caches over the one database: the application is stateless (sessions, accounts and
the log are in the database), so N processes serve what one does, on N cores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tracker.cli.common import State, handles_errors, pass_state

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tracker.bootstrap import App
    from tracker.settings import Settings
    from web.settings import WebSettings


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="processes serving requests [CNO_TRACKER_WEB_WORKERS, default 1]")
@pass_state
@handles_errors
def web_cmd(state: State, host: str, port: int, workers: int | None) -> None:
    """Serve the staff web application (ward list, patients, alerts, data entry, audit)."""
    import uvicorn

    from tracker.bootstrap import bootstrap
    from tracker.settings import load_settings
    from web.settings import load_web_settings

    web = load_web_settings()
    n = workers or web.web_workers
    # behind a proxy: X-Forwarded-Proto makes cookies Secure (FORWARDED_ALLOW_IPS decides
    # whom to trust, uvicorn's own setting)
    options = {"host": host, "port": port, "proxy_headers": True, "access_log": False,
               "log_level": "info"}
    # the settings, the database and its schema checked here, before serving or forking
    core = bootstrap(sized(load_settings(), web))
    if n == 1:
        try:
            uvicorn.run(build(core, web), **options)  # type: ignore[arg-type]
        finally:
            core.close()
        return
    core.close()
    uvicorn.run("web.cli:from_environment", factory=True, workers=n,
                **options)  # type: ignore[arg-type]


def sized(settings: Settings, web: WebSettings) -> Settings:
    """``settings`` with a database pool of one connection per request thread, unless
    ``CNO_TRACKER_DB_POOL_SIZE`` sets it."""
    if settings.db_pool_size is not None:
        return settings
    return settings.model_copy(update={"db_pool_size": web.web_threads})


def build(core: App, web: WebSettings) -> FastAPI:
    """The application over ``core``, its synchronous routes run by ``web_threads`` threads."""
    from contextlib import asynccontextmanager
    from typing import Any

    from web.app import create_app

    app = create_app(core, web)

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = web.web_threads
        yield

    app.router.lifespan_context = lifespan
    return app


def from_environment() -> FastAPI:
    """The application of one worker process (``uvicorn --factory``), from the environment."""
    from tracker.bootstrap import bootstrap
    from tracker.settings import load_settings
    from web.settings import load_web_settings

    web = load_web_settings()
    return build(bootstrap(sized(load_settings(), web)), web)
