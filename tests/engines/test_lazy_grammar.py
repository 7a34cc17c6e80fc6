"""The trigger of a call the model chooses to write: where llama.cpp's lazy grammar takes
the answer, which must be a start its grammar allows (a start it refuses aborts)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from tether.engines.lazy_grammar import awaited, lazy_call_grammar, lists_calls
from tether.server.tool_calls import Function, ToolOffer

WEATHER = Function(
    "get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}}
)
NOW = Function("now", "", {"type": "object", "properties": {}})


@pytest.mark.parametrize(
    "answer",
    [
        b"{",
        b'  {"',
        b'{"name',
        b'{ "name": "',
        b"```json\n{",
        b"```\n\n{",
        b'``` json \n{"na',
        b"{\n",  # pretty-printed
        b'{\n  "name": "',
        b'```json\n{\n\t"name":\n\t\t"',
    ],
)
def test_a_call_begun_fires_the_grammar(answer: bytes) -> None:
    assert awaited(answer, listed=False) == "fired"


@pytest.mark.parametrize("answer", [b"", b"  \n", b"``", b"```json", b"```json\n"])
def test_a_start_that_may_still_be_a_call_waits(answer: bytes) -> None:
    assert awaited(answer, listed=False) == "waiting"


@pytest.mark.parametrize(
    "answer",
    [
        b"The weather",  # text
        b'{"arguments',  # a call the grammar, name first, would refuse at its first token
        b'{  "name"',  # two spaces, where the grammar's space is one, or a line's end
        b"{\n\n",  # two line ends
        b"```python\nprint",
        b"[",  # a list where calls are one at a time
        b"```json\n" + b"x" * 80,
    ],
)
def test_an_answer_that_cannot_start_a_call_is_never_kept(answer: bytes) -> None:
    # Let go of at once where it starts as no call can, else once longer than any start.
    assert awaited(answer, listed=False) in {"never", "waiting"}
    assert awaited(answer + b" and more" * 16, listed=False) == "never"


def test_a_list_fires_only_where_calls_may_be_listed() -> None:
    assert awaited(b'[{"name', listed=True) == "fired"
    assert awaited(b"[ {", listed=True) == "fired"
    assert awaited(b"[", listed=True) == "fired"
    assert awaited(b"[{", listed=False) == "never"


def test_the_grammar_is_the_calls_in_or_out_of_a_code_block() -> None:
    one = ToolOffer((WEATHER,), required=False)
    grammar = lazy_call_grammar(one.answer_format())
    assert grammar.endswith('root [ \\t\\n]{0,8} "```"\n')
    assert not lists_calls(one.answer_format())
    listed = ToolOffer((WEATHER,), required=False, parallel=True)
    assert lists_calls(listed.answer_format())


def test_only_a_free_choice_without_a_format_of_its_own_keeps_a_chosen_call() -> None:
    free = ToolOffer((WEATHER,), required=False)
    assert free.chosen_format(None) == free.answer_format()
    assert free.chosen_format('{"type": "json_object"}') is None
    assert ToolOffer((WEATHER,)).chosen_format(None) is None


# Answers begun every way the trigger and the grammar meet: leading space of each kind, a
# fence or none, each start of a call or a list, then a call, its end, or text.
_SPACES = ["", " ", "\n", "\t", "\r\n", "\x0b", "  \n "]
_FENCES = ["", "```\n", "```json\n", "``` json \r\n", "````json\n", "```python\n\n  "]
_STARTS = ["{", "{ ", "{  ", "{\n", '{"', '{"name', '{"name":', '{ "name" : "', "[", "[ {", "[\n{"]
_STARTS += ['{"arguments"', '{"name": "other"', "x", '"', "{{"]
_STARTS += ['{\n  "', '{\n\t"name":\n  "', '[\n  {\n    "name": "', "{\n" + " " * 21 + '"']
_TAILS = ["", 'get_weather", "arguments": {"city": "Paris"}}', '", "arguments": {}}', "}}", " so"]
_TAILS += ['get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}']
_CHECK = """
import ctypes, json, re, sys
from tether.engines.lazy_grammar import LAZY_ROOT, awaited, lazy_call_grammar, lists_calls, trigger
from tether.engines.llamacpp import _llama_cpp, _tokenize, load_model
from tether.engines.scheduler import Lazy, parse_grammar, spell
from tether.models import default_model_path

llama = _llama_cpp()
model = load_model(default_model_path(), vocab_only=True)  # kept: the vocabulary is its
vocab = model.vocab


def allows(sampler, token):
    data = (llama.llama_token_data * 1)(llama.llama_token_data(token, 0.0, 0.0))
    candidates = llama.llama_token_data_array(data, 1, -1, False)
    llama.llama_sampler_apply(sampler, ctypes.byref(candidates))
    return data[0].logit != float("-inf")


matched = fired = 0
for call_format, answers in json.load(sys.stdin):
    listed, grammar = lists_calls(call_format), lazy_call_grammar(call_format)
    pattern = re.compile(trigger(listed).encode())
    for answer in answers:
        data = answer.encode()
        # Whatever the tokens, llama.cpp may fire at any end the pattern matches, and
        # replays the text from its group on: the grammar must take each such text.
        for end in range(1, len(data) + 1):
            found = pattern.fullmatch(data[:end])
            if found is None:
                continue
            matched += 1
            plain = llama.llama_sampler_init_grammar(vocab, grammar.encode(), LAZY_ROOT.encode())
            for token in _tokenize(vocab, data[found.start(1) : end], False, True):
                if not allows(plain, token):
                    sys.exit(f"the grammar refuses {data[found.start(1):end]!r}, which fires it")
                llama.llama_sampler_accept(plain, token)
            llama.llama_sampler_free(plain)
        # And the answer's own tokens, as the scheduler gives them to the lazy grammar.
        sampler = parse_grammar(llama, vocab, grammar, Lazy(listed))
        state, text = "waiting", b""
        for token in _tokenize(vocab, data, False, True):
            if state == "waiting":  # chosen freely, shown to the grammar
                llama.llama_sampler_accept(sampler, token)
                text += spell(llama, vocab, token, special=True)
                state = awaited(text, listed)
                fired += state == "fired"
                if state == "never":
                    break
            elif allows(sampler, token):
                llama.llama_sampler_accept(sampler, token)
            else:  # the scheduler would choose another
                break
        llama.llama_sampler_free(sampler)
print(matched, fired)
"""


def test_every_start_the_trigger_fires_on_is_one_the_grammar_takes() -> None:
    # llama.cpp replays what the trigger matched into the grammar and aborts the process
    # on text it refuses, so this runs in a process of its own: an abort fails the test.
    answers = [
        space + fence + start + tail
        for space, fence, start, tail in itertools.product(_SPACES, _FENCES, _STARTS, _TAILS)
    ]
    offers = [
        ToolOffer((WEATHER,), required=False),
        ToolOffer((WEATHER, NOW), required=False, parallel=True),
    ]
    cases = [(offer.answer_format(), answers) for offer in offers]
    done = subprocess.run(
        [sys.executable, "-c", _CHECK],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The answers begun as a call fired the grammar (not all were let go of unmatched).
    matched, fired = map(int, done.stdout.split()[-2:])
    assert matched > len(answers) and fired > len(answers) // 4
