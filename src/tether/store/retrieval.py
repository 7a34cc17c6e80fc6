"""Step 3 of the pipeline: vetted snippets for the prompt, within a token budget.

The query is what the request is about: a chat's last user message, a suggestion's
instruction and file, or the code around a FIM cursor (its identifiers find helpers by
name). The best hits are taken in order while they fit the task's budget
(``store.chat_tokens``, ``store.suggest_tokens``, ``store.fim_tokens``); each keeps its
scores and whether it fitted, for the trace and for ``tether explain``.
"""

from __future__ import annotations

from collections.abc import Callable

from tether.errors import RequestError
from tether.languages import guess_language
from tether.pipeline.result import Retrieved
from tether.pipeline.task import ChatTask, FimTask, Task
from tether.settings import StoreSettings
from tether.store.model import Snippet
from tether.store.search import Searcher
from tether.textfile import file_lines

QUERY_CHARS = 2000  # of a chat message; a FIM query reads the lines around the cursor
FIM_LINES_BEFORE, FIM_LINES_AFTER = 12, 4
# The snippets' languages whose code a file of each language can hold as it is written:
# TypeScript takes JavaScript, not the reverse. A file of another language takes none.
TAKES = {
    "python": frozenset({"python"}),
    "javascript": frozenset({"javascript"}),
    "typescript": frozenset({"typescript", "javascript"}),
    "tsx": frozenset({"tsx", "typescript", "javascript"}),
}


def snippet_text(snippet: Snippet) -> str:
    """The snippet as a prompt shows it: its documentation (JS, TS) and its code."""
    current = snippet.current
    if current.docstring and snippet.language != "python":
        doc = "\n".join(f" * {line}".rstrip() for line in current.docstring.splitlines())
        return f"/**\n{doc}\n */\n{current.code}"
    return current.code


def label_of(snippet: Snippet) -> str:
    """How a FIM prompt names the snippet: its file, and that it is vetted."""
    where = snippet.current.origin.path or snippet.name
    return f"{where} (vetted snippet {snippet.id} v{snippet.current.version})"


class Retriever:
    def __init__(self, searcher: Searcher, settings: StoreSettings) -> None:
        self.searcher = searcher
        self.settings = settings

    def for_task(self, task: Task, count_tokens: Callable[[str], int]) -> tuple[Retrieved, ...]:
        wanted = getattr(task, "snippets", None)
        if not (self.settings.retrieve if wanted is None else wanted):
            return ()
        query, budget = self._query_and_budget(task)
        if budget <= 0 or not query.strip() or not self.searcher.store.revision():
            return ()  # an empty store (never anything vetted) costs one read
        excluded: frozenset[str] = getattr(task, "exclude_snippets", frozenset())
        languages = _languages_taken(task)

        def left_out(snippet: Snippet) -> bool:
            foreign = languages is not None and snippet.language not in languages
            return foreign or snippet.current.body_hash in excluded

        try:
            hits = self.searcher.search(query, exclude=left_out)
        except RequestError:
            return ()  # nothing to search for in this request
        chosen: list[Retrieved] = []
        left = budget
        for hit in hits:
            text = snippet_text(hit.snippet)
            tokens = count_tokens(text)
            fits = tokens <= left
            left -= tokens if fits else 0
            chosen.append(
                Retrieved(
                    reference=hit.snippet.reference,
                    name=hit.snippet.name,
                    language=hit.snippet.language,
                    text=text,
                    label=label_of(hit.snippet),
                    scores=hit.scores(),
                    tokens=tokens,
                    fitted=fits,
                )
            )
        return tuple(chosen)

    def _query_and_budget(self, task: Task) -> tuple[str, int]:
        if isinstance(task, FimTask):
            # Whole lines, as the file ends them: not at a U+2028 or form feed.
            before = "\n".join(file_lines(task.fim.prefix)[-FIM_LINES_BEFORE:])
            after = "\n".join(file_lines(task.fim.suffix)[:FIM_LINES_AFTER])
            return f"{before}\n{after}", self.settings.fim_tokens
        if isinstance(task, ChatTask):
            users = [m["content"] for m in task.messages if m["role"] == "user"]
            query = users[-1][-QUERY_CHARS:] if users else ""
            budget = (
                self.settings.suggest_tokens
                if task.purpose == "suggest"
                else (self.settings.chat_tokens)
            )
            return query, budget
        return "", 0


def _languages_taken(task: Task) -> frozenset[str] | None:
    """The snippet languages a FIM task's file can hold (its language as named or
    guessed); None, any, for a chat or a file whose language is unknown."""
    if not isinstance(task, FimTask):
        return None
    fim = task.fim
    language = guess_language(fim.language, fim.prefix, (s.filename for s in fim.context))
    return TAKES.get(language, frozenset()) if language else None
