"""Go Pitaya's cluster protocol (``pitaya.proto``, package ``protos``); the ``*_pb2*`` modules
are generated (see the command at the top of ``pitaya.proto``) and committed."""
