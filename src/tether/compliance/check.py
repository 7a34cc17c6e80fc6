"""The inline checks: every fast rule over one text or one completion, in process.

The pipeline builds one :class:`Checker` from the settings and calls
:meth:`Checker.check_insertion` on each answer, then :func:`apply_actions`;
``tether check`` and ``POST /v1/check`` call :meth:`Checker.check_code` on whole files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tether.closing import Closeable
from tether.compliance.actions import validate_actions, with_actions
from tether.compliance.bidi import scan_bidi
from tether.compliance.completion import check_span
from tether.compliance.corpus import CorpusIndex
from tether.compliance.languages import TREE_SITTER_LANGUAGES, Language, language_for, parse_tree
from tether.compliance.licence import scan_licence
from tether.compliance.rules import make_finding
from tether.compliance.secrets import SecretScan, policy_secret_scan, scan_secrets
from tether.compliance.security_js import scan_js
from tether.compliance.security_python import scan_python
from tether.compliance.source import Source, bom_as_form_feed, lone_cr_as_lf
from tether.compliance.syntax import check_syntax, parse_python
from tether.compliance.winnowing import syntax_of
from tether.findings import Action, Finding
from tether.settings import Settings

# A corpus file is reported when it covers half the code (and at least MIN_MATCHED
# fingerprints, about four lines), or LONG_COPY fingerprints (about a dozen lines) of
# a longer text.
MIN_OVERLAP = 0.5
MIN_MATCHED = 4
LONG_COPY = 16
MAX_DUPLICATION_FINDINGS = 3
# Parsing takes about 200 bytes of memory and 3 µs per byte of code (Python's ast; an 8.8 MB
# module took 1.8 GB and 23 s): past this, only the rules that read text are run.
MAX_PARSED_CHARS = 4 << 20


@dataclass
class Checker(Closeable):
    """The inline rules with their configuration: actions, corpus index, secret scanner."""

    actions: Mapping[str, Action] = field(default_factory=dict)
    corpus: CorpusIndex | None = None
    secrets: SecretScan | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, corpus_path: Path | None = None) -> Checker:
        """Reads ``compliance.actions`` and opens the corpus index when there is one.

        A corpus index named in the settings (or by ``corpus_path``) must exist; the default
        ``<data.home>/corpus.sqlite`` is used only if it does.
        """
        named = corpus_path or settings.compliance.corpus_index
        path = named or settings.data.home / "corpus.sqlite"
        corpus = CorpusIndex(path, create=False) if named or path.is_file() else None
        return cls(
            actions=validate_actions(settings.compliance.actions),
            corpus=corpus,
            secrets=policy_secret_scan(settings.policy),
        )

    def close(self) -> None:
        if self.corpus is not None:
            self.corpus.close()

    def check_code(self, code: str, language: str, *, path: str = "") -> list[Finding]:
        """Findings in a whole text; ``language`` may be empty when ``path`` has a suffix."""
        lang = language_for(language, path)
        code = bom_as_form_feed(lone_cr_as_lf(code))
        source = Source(code)
        if lang and len(code) > MAX_PARSED_CHARS:
            size = f"{len(code) / 2**20:.1f} M characters, over {MAX_PARSED_CHARS >> 20} M"
            found = [make_finding("too-large", f"not parsed ({size}): {_TEXT_ONLY}", source, 0)]
        else:
            found = _language_findings(source, lang) if lang else []
        found += self._text_findings(source, lang, path)
        return self._finish(found)

    def check_insertion(
        self, prefix: str, completion: str, suffix: str, language: str, *, path: str = ""
    ) -> list[Finding]:
        """Findings of ``completion`` as it would stand between ``prefix`` and ``suffix``.

        Only findings that overlap the completion are reported, and their offsets, lines
        and columns are positions in ``completion``, ready for :func:`apply_actions`.
        Inline suppression comments are not honoured here: the model could write them.
        """
        lang = language_for(language, path)
        found = check_span(prefix, completion, suffix, lang) if lang else []
        found += self._text_findings(Source(completion), lang, path)
        return self._finish(found)

    def check_secrets(self, code: str) -> list[Finding]:
        """Only the secret scanner's findings; none when this tether has no scanner."""
        if self.secrets is None:
            return []
        return self._finish(scan_secrets(Source(code), self.secrets))

    def _text_findings(self, source: Source, lang: Language | None, path: str) -> list[Finding]:
        """The language-neutral rules: bidirectional controls, licence markers, secrets,
        corpus duplication."""
        found = scan_bidi(source) + scan_licence(source)
        if self.secrets is not None:
            found += scan_secrets(source, self.secrets)
        if self.corpus is not None:
            exclude = str(Path(path).resolve()) if path else None
            found += duplication_findings(self.corpus, source, lang, exclude=exclude)
        return found

    def _finish(self, found: list[Finding]) -> list[Finding]:
        return sorted(with_actions(found, self.actions), key=lambda f: (f.start, f.rule_id))


_TEXT_ONLY = "the syntax and security rules were not run; licences, secrets and the corpus were"


def _language_findings(source: Source, lang: Language) -> list[Finding]:
    if lang in TREE_SITTER_LANGUAGES:
        tree = parse_tree(source.data, lang)
        return check_syntax(source, lang, tree=tree) + scan_js(source, tree, lang)
    module = parse_python(source.text)
    return check_syntax(source, lang, module=module) + scan_python(source, module)


def duplication_findings(
    corpus: CorpusIndex, source: Source, lang: Language | None, *, exclude: str | None = None
) -> list[Finding]:
    """``duplication/corpus`` findings for the corpus files the code copies."""
    findings = []
    for match in corpus.match(source.text, syntax_of(lang), exclude=exclude):
        if match.matched < LONG_COPY and (
            match.matched < MIN_MATCHED or match.overlap < MIN_OVERLAP
        ):
            continue
        first, last = match.source_lines
        message = (
            f"{match.overlap:.0%} of this code ({match.matched} of {match.total} fingerprints) "
            f"matches {match.source}, lines {first}-{last}, in the corpus index"
        )
        findings.append(make_finding("duplication/corpus", message, source, match.start, match.end))
        if len(findings) == MAX_DUPLICATION_FINDINGS:
            break
    return findings
