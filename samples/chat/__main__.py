"""Run the chat server.

python -m samples.chat [--host 127.0.0.1] [--tcp-port 3250] [--ws-port 3251]

Then open the chat page at http://127.0.0.1:3251/ (the WebSocket port serves it).
"""

from __future__ import annotations

import argparse
import logging

from samples.chat.room import build_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m samples.chat", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tcp-port", type=int, default=3250)
    parser.add_argument("--ws-port", type=int, default=3251)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.ws_port:
        logging.getLogger("samples.chat").info("chat page: http://%s:%d/", args.host, args.ws_port)
    build_app(args.host, args.tcp_port, args.ws_port).run()


if __name__ == "__main__":
    main()
