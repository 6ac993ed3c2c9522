"""Protobuf/gRPC definitions of the cluster RPC service; the ``*_pb2*`` modules are generated
(see the command at the top of ``cluster.proto``) and committed."""
