"""Everything that persists: the interfaces (`base`), the backends, and the factory that opens them."""
