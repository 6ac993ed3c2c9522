"""Run one server of the cluster sample, or a whole local cluster.

python -m samples.cluster local                      # nats-server + etcd + 1 connector + 2 rooms
python -m samples.cluster connector --id connector-1 [--tcp-port 3250 --ws-port 3251]
python -m samples.cluster room --id room-1
(both take --nats nats://127.0.0.1:4222 --etcd 127.0.0.1:2379)
pitaya-cluster local|connector|room ...              (the same, from an installed package)
"""

from __future__ import annotations

from samples.cli import server_arguments, setup_logging
from samples.cluster.servers import build_connector, build_room


def main() -> None:
    parser = server_arguments("samples.cluster", __doc__)
    parser.add_argument("role", choices=["connector", "room", "local"])
    parser.add_argument("--id", default="")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--etcd", default="127.0.0.1:2379")
    args = parser.parse_args()
    setup_logging(args.log_level)
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
