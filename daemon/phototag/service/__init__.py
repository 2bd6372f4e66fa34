"""The service: watch folders, the persistent queue, moves, the systemd unit."""
