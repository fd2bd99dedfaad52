"""Instrumentors: one per SDK, each only translating SDK objects into recorder calls."""
