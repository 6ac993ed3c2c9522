"""Run the chat server.

python -m samples.chat [--host 127.0.0.1] [--tcp-port 3250] [--ws-port 3251]
pitaya-chat ...         (the same, from an installed package)

Then open the chat page at http://127.0.0.1:3251/ (the WebSocket port serves it).
"""

from __future__ import annotations

import logging

from samples.chat.room import build_app
from samples.cli import server_arguments, setup_logging


def main() -> None:
    args = server_arguments("samples.chat", __doc__).parse_args()
    setup_logging(args.log_level)
    if args.ws_port:
        logging.getLogger("samples.chat").info("chat page: http://%s:%d/", args.host, args.ws_port)
    build_app(args.host, args.tcp_port, args.ws_port).run()


if __name__ == "__main__":
    main()
