"""What lives in Redis: the job record and its writer, the chunk ledger, the queue."""
