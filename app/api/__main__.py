"""`python -m app.api`: parse the options, refuse an unsafe bind, load the model and the index, serve."""

from __future__ import annotations

import logging
import sys

from index.errors import IndexStoreError

from ..security import SecurityError


def main(argv: list[str] | None = None) -> int:
    from .config import from_args

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = from_args(argv)
        config.check()  # before loading anything: a refused bind costs nothing
    except SecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from ..service import Service
    from .server import create_app

    try:
        service = Service.start(config.service)
    except IndexStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(service, config)
        print(f"serving {config.service.index_dir} with model {service.source} on "
              f"http://{config.host}:{config.port} (keys: {'yes' if config.keys else 'none, loopback only'})",
              file=sys.stderr, flush=True)
        uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level, access_log=False)
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
