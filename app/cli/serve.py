"""Running the web app under gunicorn, configured from Python (no config file to ship)."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication


class FleetGunicorn(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from app.wsgi import create_app

        return create_app()


def run_gunicorn(bind: str, workers: int = 2, threads: int = 8) -> None:
    """Serve until SIGTERM; in-flight requests get ``graceful_timeout`` seconds to finish.

    The gthread worker class keeps long-lived server-sent-event streams from blocking a worker.
    """
    FleetGunicorn(
        {
            "bind": bind,
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "graceful_timeout": 20,
            "timeout": 60,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "fleet-web",
        }
    ).run()
