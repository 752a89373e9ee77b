"""``cno-tracker web [--host] [--port]``: the staff web application under uvicorn.
FastAPI and uvicorn load only when the command runs."""

from __future__ import annotations

import click

from tracker.cli.common import State, handles_errors, pass_state


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@pass_state
@handles_errors
def web_cmd(state: State, host: str, port: int) -> None:
    """Serve the staff web application (ward list, patients, alerts, data entry, audit)."""
    import uvicorn

    from web.app import create_app
    from web.settings import load_web_settings

    app = create_app(state.app(), load_web_settings())
    # behind a proxy: X-Forwarded-Proto makes cookies Secure (FORWARDED_ALLOW_IPS decides
    # whom to trust, uvicorn's own setting)
    uvicorn.run(app, host=host, port=port, proxy_headers=True, access_log=False,
                log_level="info")
