"""The usage report: sums per group, what the cloud would have charged, what local cost.

Method (docs/usage.md says the same to its readers):
- cloud cost: each group's prompt, cached and completion tokens at each compared model's
  list price (cached prompt tokens at its cached rate), except the tokens embeddings
  requests read, at the compared embedding model's price. Token counts are the local
  model's; a hosted model's tokenizer would count somewhat differently.
- egress avoided: the request bodies that would have left for a hosted API (bytes in);
  the answers that would have come back are shown as bytes out.
- local cost: the hardware's amortised share of the period (``hardware_usd`` over
  ``amortise_years``; the period counted from the first request recorded up to now at
  most, and never more than the whole ``hardware_usd``) plus energy at ``usd_per_kwh``.
  Energy is measured when the server could read RAPL counters during the period
  (whole-package: other work counts too), else ``power_watts`` times the requests'
  summed durations (an upper bound when they overlap).
  Groups get local cost in proportion to their busy time.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tether.errors import RequestError
from tether.settings import Settings
from tether.usage.prices import PriceTable
from tether.usage.reader import GroupBy, LedgerReader, UsageTotals

# Digits 0-9 only (re.ASCII): \d alone takes any script's digits, and float() reads them.
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdwHDW])$", re.ASCII)
_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_YEAR = 365.25 * 86_400


def parse_when(text: str, *, now: float, option: str = "--since") -> float:
    """``30d``, ``12h``, ``90m``, ``2w`` before now (``30D``, ``12H`` and ``2W`` too; ``M``
    could mean months, so minutes are ``m`` only), an ISO date or an ISO date-time (UTC
    unless it says otherwise), as a Unix time within the years 1 to 9999."""
    text = text.strip()
    span = _SPAN.match(text)
    if span:
        when = now - float(span.group(1)) * _UNITS[span.group(2).lower()]
    else:
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise _not_a_time(text, option) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        when = moment.timestamp()
    try:
        datetime.fromtimestamp(when, UTC)  # a span or an offset can leave the calendar
    except (ValueError, OverflowError, OSError):
        raise _not_a_time(text, option, " (it falls outside the years 1 to 9999)") from None
    return when


def future_start(since: str, start: float, now: float, *, option: str = "--since") -> None:
    """Refuse a start that is not before now where no end was given (the period then ends
    now), saying so: "since must be before until" named an until nobody wrote."""
    if start >= now:
        until = option.replace("since", "until")
        raise RequestError(
            f"the period is empty: {option} {since!r} is not in the past, and without "
            f"{until} the period ends now; give a start before now, or {until} as well",
            param="since",
        )


def _not_a_time(text: str, option: str, why: str = "") -> RequestError:
    return RequestError(
        f"{option} {text!r} is not a time{why}: give a span before now (30d, 12h, 90m, 2w; "
        "m is minutes, for months give days), "
        "a date (2026-11-01) or a date-time (2026-11-01T09:30Z)",
        param=option,
    )


@dataclass(frozen=True)
class ReportRow:
    key: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    embedding_tokens: int  # of prompt_tokens
    ttft_ms_avg: float | None
    busy_seconds: float
    egress_avoided_bytes: int
    bytes_out: int
    cloud_usd: dict[str, float]
    local_usd: float


@dataclass(frozen=True)
class UsageReport:
    since: float
    until: float
    by: str | None
    price_table: str
    price_source: str
    embeddings_priced_as: str
    energy_kwh: float
    energy_measured: bool
    hardware_usd: float
    rows: list[ReportRow]
    total: ReportRow

    def as_json(self) -> dict[str, Any]:
        def stamp(ts: float) -> str:
            return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")

        return {
            "since": stamp(self.since),
            "until": stamp(self.until),
            "by": self.by,
            "price_table": self.price_table,
            "price_source": self.price_source,
            "embeddings_priced_as": self.embeddings_priced_as,
            "local_cost": {
                "hardware_usd": round(self.hardware_usd, 6),
                "energy_kwh": round(self.energy_kwh, 6),
                "energy": "measured (RAPL)" if self.energy_measured else "estimated",
            },
            "rows": [_rounded(asdict(row)) for row in self.rows],
            "total": _rounded(asdict(self.total)),
        }


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    row["cloud_usd"] = {k: round(v, 6) for k, v in row["cloud_usd"].items()}
    row["local_usd"] = round(row["local_usd"], 6)
    row["busy_seconds"] = round(row["busy_seconds"], 3)
    if row["ttft_ms_avg"] is not None:
        row["ttft_ms_avg"] = round(row["ttft_ms_avg"], 1)
    return row


def build_report(
    reader: LedgerReader,
    settings: Settings,
    prices: PriceTable,
    *,
    since: float,
    until: float,
    by: GroupBy | None,
    compare_with: list[str] | None = None,
    now: float | None = None,
) -> UsageReport:
    if since >= until:
        raise RequestError("the period is empty: since must be before until", param="since")
    compared = [prices.price(model) for model in compare_with or settings.usage.compare_with]
    embedder = prices.price(settings.usage.compare_embeddings_with)
    groups = reader.totals(since, until, by)
    overall = reader.totals(since, until, None)
    usage = settings.usage
    served_until = min(until, time.time() if now is None else now)
    if by == "day":
        groups = _every_day(groups, max(since, reader.first_recorded() or until), served_until)
    busy = overall[0].busy_seconds if overall else 0.0
    measured = reader.energy_joules(since, until)
    joules = measured if measured is not None else usage.power_watts * busy
    kwh = joules / 3.6e6
    hardware = _hardware_share(
        usage.hardware_usd, usage.amortise_years, reader, since, served_until
    )
    local_total = hardware + kwh * usage.usd_per_kwh

    def row(totals: UsageTotals, share: float) -> ReportRow:
        generation = totals.prompt_tokens - totals.embedding_tokens
        embedding_usd = embedder.cost(totals.embedding_tokens, 0, 0)
        return ReportRow(
            key=totals.key,
            requests=totals.requests,
            errors=totals.errors,
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            cached_tokens=totals.cached_tokens,
            embedding_tokens=totals.embedding_tokens,
            ttft_ms_avg=totals.ttft_ms_avg,
            busy_seconds=totals.busy_seconds,
            egress_avoided_bytes=totals.bytes_in,
            bytes_out=totals.bytes_out,
            cloud_usd={
                p.model: p.cost(generation, totals.completion_tokens, totals.cached_tokens)
                + embedding_usd
                for p in compared
            },
            local_usd=local_total * share,
        )

    empty = UsageTotals("total", 0, 0, 0, 0, 0, 0, 0, 0.0, None, 0)
    total = row(overall[0] if overall else empty, 1.0)
    return UsageReport(
        since=since,
        until=until,
        by=by,
        price_table=prices.version,
        price_source=prices.source,
        embeddings_priced_as=embedder.model,
        energy_kwh=kwh,
        energy_measured=measured is not None,
        hardware_usd=hardware,
        rows=[row(g, g.busy_seconds / busy if busy else 0.0) for g in groups] if by else [],
        total=total,
    )


def _every_day(days: list[UsageTotals], first: float, last: float) -> list[UsageTotals]:
    """``days`` with a row of zeros for each UTC day from ``first`` to ``last`` that had no
    request, so that a chart or a spreadsheet reads a quiet day as zero, not as missing.
    Days before the ledger's first request and after now are not filled: nothing was
    recorded then, which is not the same as nothing used."""
    if first >= last:
        return days
    had = {totals.key for totals in days}
    day = datetime.fromtimestamp(math.floor(first), UTC).date()
    end = datetime.fromtimestamp(math.ceil(last) - 1, UTC).date()
    quiet = []
    while day <= end:
        if day.isoformat() not in had:
            quiet.append(UsageTotals(day.isoformat(), 0, 0, 0, 0, 0, 0, 0, 0.0, None, 0))
        day += timedelta(days=1)
    return sorted([*days, *quiet], key=lambda totals: totals.key)


def _hardware_share(
    usd: float, years: float, reader: LedgerReader, since: float, until: float
) -> float:
    """The hardware's share of the period: counted from the first request recorded (the
    machine served nothing before) to ``until`` (no later than now: the future is not
    spent yet), and never more than the whole of it."""
    first = reader.first_recorded()
    if first is None:
        return 0.0
    served = max(0.0, until - max(since, first))
    amortised = years * _YEAR
    return usd * min(served, amortised) / amortised


def _flat(row: ReportRow) -> dict[str, Any]:
    flat = {k: v for k, v in _rounded(asdict(row)).items() if k != "cloud_usd"}
    for model, usd in row.cloud_usd.items():
        flat[f"cloud_usd[{model}]"] = round(usd, 6)
    return flat


def as_csv(report: UsageReport) -> str:
    rows = [*report.rows, report.total] if report.by else [report.total]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(_flat(report.total)), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _inert(value) for name, value in _flat(row).items()})
    return out.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's list),
# and with their full-width forms where an input method makes them the plain ones.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _inert(value: object) -> object:
    """``value``, with a text that a spreadsheet would run as a formula (a principal can be
    named ``=HYPERLINK(...)``) made plain text by a leading apostrophe, which spreadsheets
    do not show. A text that begins with one gets another, so "'=x" and "=x" stay apart.
    A number is written out in full: 5e-05 dollars reads as text to some readers."""
    if isinstance(value, str) and value.startswith((*_FORMULA_STARTS, "'")):
        return "'" + value
    if isinstance(value, float) and math.isfinite(value):
        return format(Decimal(repr(value)), "f")  # the shortest exact digits, no exponent
    return value


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _minute(ts: float) -> str:
    """``ts`` to the minute; the year with four digits, which %Y gives only from 1000 on."""
    moment = datetime.fromtimestamp(ts, UTC)
    return f"{moment.year:04d}-{moment:%m-%d %H:%M}"


def as_table(report: UsageReport) -> str:
    models = list(report.total.cloud_usd)
    header = [report.by or "", "requests", "errors", "prompt", "cached", "completion",
              "ttft avg", "egress avoided", *(f"{m} $" for m in models), "local $"]  # fmt: skip
    lines = []
    for row in [*report.rows, report.total] if report.by else [report.total]:
        lines.append([
            row.key, str(row.requests), str(row.errors), f"{row.prompt_tokens:,}",
            f"{row.cached_tokens:,}", f"{row.completion_tokens:,}",
            "-" if row.ttft_ms_avg is None else f"{row.ttft_ms_avg:.0f} ms",
            _size(row.egress_avoided_bytes),
            *(f"{row.cloud_usd[m]:.4f}" for m in models), f"{row.local_usd:.4f}",
        ])  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    period = f"{_minute(report.since)} to {_minute(report.until)} UTC"
    energy = "measured" if report.energy_measured else "estimated"
    notes = [
        f"usage {period}",
        *([fmt(header), *(fmt(line) for line in lines)]),
        f"prices: table {report.price_table} ({report.price_source}); embeddings at "
        f"{report.embeddings_priced_as}'s; token counts are the local model's",
        f"local: hardware share ${report.hardware_usd:.4f} + {report.energy_kwh:.4f} kWh "
        f"({energy})",
    ]
    return "\n".join(notes) + "\n"


def as_json_text(report: UsageReport) -> str:
    return json.dumps(report.as_json(), indent=2) + "\n"
