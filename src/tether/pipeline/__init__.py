"""The request pipeline that every entry point shares."""

from tether.pipeline.fim import ContextSnippet, FimInput
from tether.pipeline.service import Completion, Pipeline, Prepared
from tether.pipeline.task import Task

__all__ = ["Completion", "ContextSnippet", "FimInput", "Pipeline", "Prepared", "Task"]
