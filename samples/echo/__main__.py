"""Run: python -m samples.echo [--host 127.0.0.1] [--tcp-port 3250] [--ws-port 3251]

or ``pitaya-echo ...`` from an installed package.
"""

from __future__ import annotations

from samples.cli import server_arguments, setup_logging
from samples.echo.server import build_app


def main() -> None:
    args = server_arguments("samples.echo", __doc__).parse_args()
    setup_logging(args.log_level)
    build_app(args.host, args.tcp_port, args.ws_port).run()


if __name__ == "__main__":
    main()
