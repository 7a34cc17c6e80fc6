"""Stop sequences over streamed text: cut at the first one, hold back what may start one.

Text goes out as soon as no stop sequence can still begin inside it, so a stream never
sends the first characters of a stop sequence and then takes them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StopMatcher:
    stops: tuple[str, ...]
    _held: str = field(default="", init=False)
    stopped: bool = field(default=False, init=False)
    matched: str | None = field(default=None, init=False)  # the stop that ended it

    def feed(self, text: str) -> str:
        """What of ``text`` (after what was held) can go out now; sets ``stopped``."""
        if self.stopped:
            return ""
        held = self._held + text
        cuts = [(i, stop) for stop in self.stops if (i := held.find(stop)) >= 0]
        if cuts:
            cut, self.matched = min(cuts, key=lambda found: found[0])
            self.stopped = True
            self._held = ""
            return held[:cut]
        keep = self._partial(held)
        self._held = held[len(held) - keep :] if keep else ""
        return held[: len(held) - keep]

    def flush(self) -> str:
        """The stream ended: what was held goes out."""
        held, self._held = self._held, ""
        return held

    def _partial(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins some stop sequence."""
        best = 0
        for stop in self.stops:
            for length in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:length]):
                    best = length
                    break
        return best
