"""The tamper-evident audit log: hash-chained records, a Merkle tree, signed checkpoints."""

from __future__ import annotations

from tether.audit.log import AuditLog, RecoveryReport

__all__ = ["AuditLog", "RecoveryReport"]
