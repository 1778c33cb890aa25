"""Pure decisions and typed records, shared by every storage backend (no I/O here)."""
