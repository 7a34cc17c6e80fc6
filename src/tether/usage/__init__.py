"""Usage and cost: a ledger of requests, and what they would have cost in the cloud."""

from tether.usage.ledger import LedgerReader, UsageLedger, UsageRecord
from tether.usage.prices import PriceTable, price_table

__all__ = ["LedgerReader", "PriceTable", "UsageLedger", "UsageRecord", "price_table"]
