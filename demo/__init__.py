"""Demonstrations that run on the service's own code: data sets and models made in seconds."""
