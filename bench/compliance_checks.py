"""Inline compliance checks: time of ``check_code`` on a 60-line suggestion, in process.

The inline rules run on every completion the server returns, so they must cost little
beside generation: syntax, security rules, licence markers, the policy secret scanner
(when installed) and, in the last case, corpus duplication against an index of tether's
own source. No external tool runs. Each case runs 200 times after 10 warm-up runs;
goal: p50 at most 20 ms for the Python and the TypeScript suggestion.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import BENCH_DIR, headline, percentile, print_table, write_result
from tether.compliance import Checker, CorpusIndex
from tether.compliance.secrets import policy_secret_scan

GOAL_P50_MS = 20.0

PYTHON_SUGGESTION = '''import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Invoice:
    id: int
    customer: str
    amount_cents: int
    paid: bool = False


class InvoiceStore:
    """Keeps invoices in SQLite, one row each."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS invoices "
            "(id INTEGER PRIMARY KEY, customer TEXT, amount_cents INTEGER, paid INTEGER)"
        )

    def add(self, invoice: Invoice) -> None:
        self.db.execute(
            "INSERT INTO invoices VALUES (?, ?, ?, ?)",
            (invoice.id, invoice.customer, invoice.amount_cents, int(invoice.paid)),
        )
        self.db.commit()

    def by_customer(self, customer: str) -> list[Invoice]:
        rows = self.db.execute(
            "SELECT id, customer, amount_cents, paid FROM invoices WHERE customer = ?",
            (customer,),
        ).fetchall()
        return [Invoice(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def unpaid_total(self) -> int:
        (total,) = self.db.execute(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM invoices WHERE paid = 0"
        ).fetchone()
        return int(total)

    def export(self, target: Path) -> int:
        rows = self.db.execute("SELECT id, customer, amount_cents, paid FROM invoices")
        records = [
            {"id": r[0], "customer": r[1], "amount_cents": r[2], "paid": bool(r[3])}
            for r in rows
        ]
        target.write_text(json.dumps(records, indent=2))
        log.info("exported %d invoices to %s", len(records), target)
        return len(records)

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        self.db.close()
'''

TYPESCRIPT_SUGGESTION = """import { readFile, writeFile } from "node:fs/promises";

export interface Invoice {
  id: number;
  customer: string;
  amountCents: number;
  paid: boolean;
}

export class InvoiceStore {
  private invoices = new Map<number, Invoice>();

  constructor(private readonly path: string) {}

  async load(): Promise<void> {
    const text = await readFile(this.path, "utf-8");
    const records: Invoice[] = JSON.parse(text);
    for (const record of records) {
      this.invoices.set(record.id, record);
    }
  }

  add(invoice: Invoice): void {
    if (this.invoices.has(invoice.id)) {
      throw new Error(`invoice ${invoice.id} exists already`);
    }
    this.invoices.set(invoice.id, invoice);
  }

  byCustomer(customer: string): Invoice[] {
    return [...this.invoices.values()].filter((i) => i.customer === customer);
  }

  unpaidTotal(): number {
    let total = 0;
    for (const invoice of this.invoices.values()) {
      if (!invoice.paid) {
        total += invoice.amountCents;
      }
    }
    return total;
  }

  markPaid(id: number): boolean {
    const invoice = this.invoices.get(id);
    if (invoice === undefined) {
      return false;
    }
    invoice.paid = true;
    return true;
  }

  async save(): Promise<number> {
    const records = [...this.invoices.values()];
    await writeFile(this.path, JSON.stringify(records, null, 2));
    return records.length;
  }
}

export const formatCents = (cents: number): string => `${(cents / 100).toFixed(2)} EUR`;
"""


def measure(work: Callable[[], object], runs: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        work()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    assert len(PYTHON_SUGGESTION.splitlines()) == 60, len(PYTHON_SUGGESTION.splitlines())
    assert len(TYPESCRIPT_SUGGESTION.splitlines()) == 60, len(TYPESCRIPT_SUGGESTION.splitlines())

    secrets = policy_secret_scan()
    checker = Checker(secrets=secrets)
    # A completion in the middle of a file, between two 60-line halves.
    prefix = PYTHON_SUGGESTION + "\n\n"
    suffix = "\n\n" + PYTHON_SUGGESTION.replace("Invoice", "Receipt")
    cases: dict[str, Callable[[], object]] = {
        "python check_code": lambda: checker.check_code(PYTHON_SUGGESTION, "python"),
        "typescript check_code": lambda: checker.check_code(TYPESCRIPT_SUGGESTION, "typescript"),
        "python check_insertion": lambda: checker.check_insertion(
            prefix, PYTHON_SUGGESTION, suffix, "python"
        ),
        # The same completion in a 4,000-line file: the checks read a window around it.
        "python check_insertion, 4k-line file": lambda: checker.check_insertion(
            prefix * 33, PYTHON_SUGGESTION, suffix * 33, "python"
        ),
    }
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="tether-bench-corpus-") as tmp:
        corpus = CorpusIndex(Path(tmp) / "corpus.sqlite")
        report = corpus.add_tree(BENCH_DIR.parent / "src" / "tether")
        with_corpus = Checker(secrets=secrets, corpus=corpus)
        cases["python check_code + corpus"] = lambda: with_corpus.check_code(
            PYTHON_SUGGESTION, "python"
        )
        try:
            for name, work in cases.items():
                times = measure(work, args.runs)
                p50, p95 = percentile(times, 50), percentile(times, 95)
                results[name] = {"p50_ms": p50, "p95_ms": p95, "max_ms": max(times)}
                rows.append([name, p50, p95, max(times)])
        finally:
            corpus.close()
    print_table(["case (60-line suggestion)", "p50 ms", "p95 ms", "max ms"], rows)
    print(f"corpus: {report.indexed} files, {report.fingerprints} fingerprints")
    path = write_result(
        "compliance_checks",
        {
            "runs": args.runs,
            "secret_scanner": True,
            "corpus_files": report.indexed,
            "corpus_fingerprints": report.fingerprints,
            "cases": results,
            "headline": [
                headline(
                    "inline checks p50, 60-line Python",
                    results["python check_code"]["p50_ms"],
                    "ms",
                    "<=",
                    GOAL_P50_MS,
                ),
                headline(
                    "inline checks p50, 60-line TypeScript",
                    results["typescript check_code"]["p50_ms"],
                    "ms",
                    "<=",
                    GOAL_P50_MS,
                ),
                headline(
                    "inline checks p95, 60-line Python",
                    results["python check_code"]["p95_ms"],
                    "ms",
                ),
                headline(
                    "inline completion check p50, 4k-line Python file",
                    results["python check_insertion, 4k-line file"]["p50_ms"],
                    "ms",
                ),
                headline(
                    "inline checks p50, Python with corpus",
                    results["python check_code + corpus"]["p50_ms"],
                    "ms",
                    "<=",
                    GOAL_P50_MS,
                ),
            ],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
