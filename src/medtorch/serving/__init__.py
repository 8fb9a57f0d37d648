"""Serving trained bundles: real-time streaming of biosignals (and, later, the HTTP server)."""
