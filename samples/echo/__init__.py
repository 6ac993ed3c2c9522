"""A minimal standalone server: an echo route and a counter, over TCP and WebSocket."""
