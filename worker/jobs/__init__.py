"""The job runtime: runner, leases, plans, phases, reconciler, webhooks, the model cache."""
