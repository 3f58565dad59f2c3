"""rollwave's OpenStack adapter: connecting, snapshotting a cloud, and the local Nova sandbox."""
