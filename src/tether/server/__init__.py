"""The HTTP server: thin routers over the shared pipeline."""
