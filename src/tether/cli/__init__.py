"""The ``tether`` command line."""

import sys

# httpx imports its own command-line client whenever rich and pygments are installed
# (they come with bandit), which keeps 4.5 MB resident in every tether process, the
# server included. tether never runs that client; a None entry makes the import fail
# fast and httpx falls back to a stub.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
