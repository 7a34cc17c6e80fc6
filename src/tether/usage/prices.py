"""The price table: bundled and versioned, with entries from ``usage.prices`` on top."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

from tether.errors import ConfigError
from tether.settings import ModelPrice, Settings

_MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    model: str
    input: float  # USD per million tokens
    output: float
    cached_input: float
    configured: bool  # from usage.prices rather than the bundled table

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> float:
        """USD for these tokens; cached prompt tokens at the cached rate."""
        fresh = max(prompt_tokens - cached_tokens, 0)
        return (
            fresh * self.input + cached_tokens * self.cached_input + completion_tokens * self.output
        ) / _MILLION


@dataclass(frozen=True)
class PriceTable:
    version: str
    source: str
    prices: dict[str, Price]

    def price(self, model: str) -> Price:
        try:
            return self.prices[model]
        except KeyError:
            raise ConfigError(
                f"no price for {model!r}: the price table ({self.version}) has "
                f"{', '.join(sorted(self.prices))}; add it under [usage.prices.{model!r}] "
                "with input and output in USD per million tokens"
            ) from None


def _price(model: str, entry: ModelPrice, configured: bool) -> Price:
    cached = entry.input if entry.cached_input is None else entry.cached_input
    return Price(model, entry.input, entry.output, cached, configured)


def bundled_table() -> PriceTable:
    text = resources.files("tether.usage").joinpath("prices.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    prices = {
        model: _price(model, ModelPrice.model_validate(entry), configured=False)
        for model, entry in data["models"].items()
    }
    return PriceTable(data["version"], data["source"], prices)


def price_table(settings: Settings) -> PriceTable:
    """The bundled table with the configured entries added or replacing its own."""
    table = bundled_table()
    prices = dict(table.prices)
    for model, entry in settings.usage.prices.items():
        prices[model] = _price(model, entry, configured=True)
    version = table.version + (" + usage.prices" if settings.usage.prices else "")
    return PriceTable(version, table.source, prices)
