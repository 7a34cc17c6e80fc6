"""The request pipeline that every entry point shares."""

from tether.pipeline.fim import ContextSnippet, FimInput
from tether.pipeline.result import AnswerChunk, Completion, Findings
from tether.pipeline.service import Pipeline, Prepared, Recorder, collect
from tether.pipeline.task import ChatTask, CompletionTask, FimTask, Task

__all__ = [
    "AnswerChunk",
    "ChatTask",
    "Completion",
    "CompletionTask",
    "ContextSnippet",
    "FimInput",
    "FimTask",
    "Findings",
    "Pipeline",
    "Prepared",
    "Recorder",
    "Task",
    "collect",
]
