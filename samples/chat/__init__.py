"""The chat room sample: join, chat, see others arrive and leave (standalone server)."""
