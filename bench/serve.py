"""`python -m bench.serve`: the API as `userdir serve` runs it (app/server.py), on a seeded slapd.

The configuration comes from the environment (USERDIR_*), as in production;
the benchmark's directory is seeded and running already, so nothing is
bootstrapped and no embedded slapd is started.
"""

from __future__ import annotations

import logging

from app import server
from app.config import load_config


def main() -> None:
    # The same logging as app/cli.py: what the service writes is part of its cost.
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server.run(load_config(), None)


if __name__ == "__main__":
    main()
