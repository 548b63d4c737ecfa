"""Run the simulator standalone: ``python -m app.sandbox.simulator --webhook-url URL``.

Creates a demo repository, installs the App on it, writes the App's private key to
a file, prints the settings Fleet needs, then serves until interrupted.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from .simulator import Simulator


def main(argv=None) -> None:
    """Parse arguments, start a simulator with one demo repository and wait."""
    p = argparse.ArgumentParser(prog="python -m app.sandbox.simulator", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="port to listen on (0 picks a free one)")
    p.add_argument("--webhook-url", default=None, help="where to deliver webhooks")
    p.add_argument("--webhook-secret", default="s3cret")
    p.add_argument("--app-id", type=int, default=1)
    p.add_argument("--repo", default="demo-org/demo", help="demo repository to create and install on")
    p.add_argument("--key-file", default=None, help="write the App private key here (default: temp file)")
    args = p.parse_args(argv)
    sim = Simulator(webhook_url=args.webhook_url, webhook_secret=args.webhook_secret, app_id=args.app_id,
                    port=args.port).start()
    sim.create_repo(args.repo)
    inst = sim.install([args.repo])
    key_file = args.key_file or os.path.join(tempfile.mkdtemp(prefix="ghsim-"), "app.pem")
    with open(key_file, "w", encoding="utf-8") as fh:
        fh.write(sim.app_private_key_pem)
    print(f"GitHub simulator on {sim.url} (installation {inst} on {args.repo})", flush=True)
    print(f"GITHUB_API_URL={sim.url}\nGITHUB_APP_ID={args.app_id}\nGITHUB_APP_PRIVATE_KEY_PATH={key_file}\n"
          f"GITHUB_WEBHOOK_SECRET={args.webhook_secret}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
