from __future__ import annotations

import pytest

from tether.errors import RequestError
from tether.pipeline.chat import render_chat


def test_chatml_fallback() -> None:
    text = render_chat([{"role": "user", "content": "hi"}], None)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_template_cannot_reach_python() -> None:
    evil = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(RequestError):
        render_chat([{"role": "user", "content": "x"}], evil)


def test_raise_exception_becomes_request_error() -> None:
    template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(RequestError, match="roles must alternate"):
        render_chat([{"role": "user", "content": "x"}], template)
