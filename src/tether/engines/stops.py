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

    def feed(self, text: str) -> str:
        """What of ``text`` (after what was held) can go out now; sets ``stopped``."""
        if self.stopped:
            return ""
        held = self._held + text
        cuts = [i for i in (held.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            self._held = ""
            return held[: min(cuts)]
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
