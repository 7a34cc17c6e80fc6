"""The HTTP server: thin routers over the shared pipeline."""

from tether.server.fastapi_compat import skip_v1_probe_until_v1_loads

skip_v1_probe_until_v1_loads()
