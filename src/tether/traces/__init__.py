"""Local traces that explain each suggestion (``tether explain``).

A trace records what one request carried through the pipeline: the prompt as the engine
saw it (after redaction), the policy decisions, sampling, timings, the answer and the
compliance findings. Traces stay in ``<data.home>/traces.sqlite`` and are never shipped.
"""

from __future__ import annotations

from tether.traces.explain import render_explanation
from tether.traces.model import Trace, trace_from
from tether.traces.store import TraceStore

__all__ = ["Trace", "TraceStore", "render_explanation", "trace_from"]
