"""Shared plumbing of onoff-kafka-bridge: settings, logging, the CLI and the local stack."""
