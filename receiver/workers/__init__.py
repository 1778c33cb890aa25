"""Long-running loops that claim work from the stores: applier, fetcher, fallback poller, retention."""
