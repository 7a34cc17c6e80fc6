"""The web dashboard's data: usage, traces, audit, store and evaluations for its pages."""
