"""HTTP service: the app factory (``service.api.app``), settings (``service.api.settings``),
the batcher and its scheduling strategies, limits, auth, health and metrics."""
