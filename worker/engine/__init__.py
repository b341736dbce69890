"""The attribution engine as a library; it imports nothing of the job runtime."""
