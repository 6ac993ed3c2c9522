"""The cluster sample: a ``connector`` frontend and ``room`` backends over NATS and etcd."""
