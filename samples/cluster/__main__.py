"""Run one server of the cluster sample, or a whole local cluster.

python -m samples.cluster local                      # nats-server + etcd + 1 connector + 2 rooms
python -m samples.cluster connector --id connector-1 [--tcp-port 3250 --ws-port 3251]
python -m samples.cluster room --id room-1
(both take --nats nats://127.0.0.1:4222 --etcd 127.0.0.1:2379)
"""

from __future__ import annotations

import argparse
import logging

from samples.cluster.servers import build_connector, build_room


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m samples.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("role", choices=["connector", "room", "local"])
    parser.add_argument("--id", default="")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--etcd", default="127.0.0.1:2379")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tcp-port", type=int, default=3250)
    parser.add_argument("--ws-port", type=int, default=3251)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.role == "local":
        from samples.cluster.local import run_local

        run_local(args.host, args.tcp_port, args.ws_port)
    elif args.role == "connector":
        build_connector(
            args.id or "connector-1",
            args.nats,
            args.etcd,
            host=args.host,
            tcp_port=args.tcp_port,
            ws_port=args.ws_port,
        ).run()
    else:
        build_room(args.id or "room-1", args.nats, args.etcd).run()


if __name__ == "__main__":
    main()
