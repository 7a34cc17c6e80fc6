"""Built-in behaviour, registered through the same hooks as any plugin."""
