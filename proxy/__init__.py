"""electric-proxy: a transparent Postgres wire-protocol proxy with a migration guard."""

__version__ = "0.1.0"
