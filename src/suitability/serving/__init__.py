"""The HTTP service for the matching service: request contracts, scoring, auth, audit log."""
