"""Usage and cost: a ledger of requests, and what they would have cost in the cloud."""

from tether.usage.ledger import UsageLedger, UsageRecord
from tether.usage.prices import PriceTable, price_table
from tether.usage.reader import LedgerReader

__all__ = ["LedgerReader", "PriceTable", "UsageLedger", "UsageRecord", "price_table"]
