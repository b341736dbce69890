"""Object storage (local files or S3), its key layout, and the files kept in it."""
