from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.store.conftest import vetted
from tether.errors import FunctionCallError, OverloadedError, RequestError
from tether.sandbox import Sandbox
from tether.store import FunctionStore, SnippetStore
from tether.store.call_pool import CallPool
from tether.store.calls import call

TYPED = (
    "def describe(name: str, times: int = 1, ratio: float | None = None, *, "
    "tags: list[str] = ()) -> dict:\n"
    "    return {'text': name * times, 'ratio': ratio, 'tags': list(tags)}\n"
)


def _call(db: SnippetStore, code: str, arguments: object, timeout: float = 5.0) -> object:
    snippet = vetted(db, code, make_callable=True)
    return call(snippet, arguments, Sandbox(), timeout).result


def test_a_call_returns_the_result(db: SnippetStore) -> None:
    result = _call(db, TYPED, {"name": "ab", "times": 2, "ratio": 1, "tags": ["x"]})
    assert result == {"text": "abab", "ratio": 1, "tags": ["x"]}


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"times": 2}, "needs argument 'name'"),
        ({"name": "a", "colour": "red"}, "no parameter 'colour'; it takes name, times"),
        ({"name": 3}, "argument 'name' of describe() must be str, not int"),
        ({"name": "a", "times": True}, "must be int, not bool"),
        ({"name": "a", "ratio": "x"}, "must be float or null"),
        ({"name": "a", "tags": "x"}, "must be a list"),
        (["a"], "arguments must be a JSON object"),
    ],
)
def test_arguments_are_checked_before_anything_runs(
    db: SnippetStore, arguments: object, says: str
) -> None:
    with pytest.raises(RequestError, match=says.replace("(", r"\(").replace(")", r"\)")):
        _call(db, TYPED, arguments)


@pytest.mark.parametrize("name", ["open", "_f", "json", "builtins"])
def test_a_function_may_have_the_name_of_what_the_call_uses(db: SnippetStore, name: str) -> None:
    assert _call(db, f"def {name}(x: int) -> int:\n    return x * 2\n", {"x": 4}) == 8


def test_a_function_with_its_imports_runs(db: SnippetStore) -> None:
    code = (
        "from __future__ import annotations\nimport re\n\n\n"
        "def slug(title: str) -> str:\n    return re.sub(r'\\W+', '-', title.lower())\n"
    )
    assert _call(db, code, {"title": "Hello World"}) == "hello-world"


def test_a_function_that_raises_is_a_clear_error(db: SnippetStore) -> None:
    code = "def div(a: int, b: int) -> float:\n    return a / b\n"
    with pytest.raises(FunctionCallError, match="div\\(\\) failed: ZeroDivisionError"):
        _call(db, code, {"a": 1, "b": 0})


def test_a_function_that_hangs_is_stopped(db: SnippetStore) -> None:
    code = "def spin() -> None:\n    while True:\n        pass\n"
    with pytest.raises(FunctionCallError, match="ran past its 1 s") as caught:
        _call(db, code, {}, timeout=1.0)
    assert caught.value.timed_out


def test_a_function_that_writes_megabytes_is_stopped_saying_so(db: SnippetStore) -> None:
    with pytest.raises(FunctionCallError) as caught:
        _call(db, "def noisy() -> str:\n    return 'x' * (5 * 1024 * 1024)\n", {})
    assert caught.value.message == (
        "noisy() wrote more than 1 MiB: its result, and any file it writes, must each fit in that"
    )


def test_what_a_function_prints_is_not_kept_nor_held_against_it(db: SnippetStore) -> None:
    code = "def noisy() -> int:\n    print('x' * (8 * 1024 * 1024))\n    return 1\n"
    assert _call(db, code, {}) == 1


def test_a_result_json_cannot_carry_is_refused(db: SnippetStore) -> None:
    with pytest.raises(FunctionCallError) as caught:
        _call(db, "def s() -> object:\n    return {1, 2}\n", {})
    assert caught.value.message == (
        "s() failed: its result is not JSON (Object of type set is not JSON serializable)"
    )


def test_an_exit_with_a_message_is_named_by_its_message(db: SnippetStore) -> None:
    code = "def stop() -> None:\n    import sys\n    sys.exit('no input given')\n"
    with pytest.raises(FunctionCallError) as caught:
        _call(db, code, {})
    assert caught.value.message == "stop() failed: no input given"


def test_the_sandbox_holds_for_calls(db: SnippetStore) -> None:
    code = (
        "def leak() -> str:\n    import socket\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=1)\n    return 'out'\n"
    )
    with pytest.raises(FunctionCallError, match="sandbox rule"):
        _call(db, code, {})


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [({"b": 5}, [1, 5]), ({"a": 2}, [2, 10]), ({}, [1, 10]), ({"a": 2, "b": 3}, [2, 3])],
)
def test_positional_only_arguments_keep_their_places(
    db: SnippetStore, arguments: dict[str, int], expected: list[int]
) -> None:
    code = "def posonly(a: int = 1, b: int = 10, /) -> list:\n    return [a, b]\n"
    assert _call(db, code, arguments) == expected


def test_a_left_out_positional_only_argument_gets_its_own_default(db: SnippetStore) -> None:
    # The default is an object JSON cannot carry: the function's own is passed.
    code = "def kind(a: object = (1,), b: int = 0, /) -> str:\n    return type(a).__name__\n"
    assert _call(db, code, {"b": 1}) == "tuple"


def test_an_exception_is_named_with_its_type_and_whole_message(db: SnippetStore) -> None:
    code = "def boom() -> None:\n    raise ValueError('bad value 3\\nsecond line')\n"
    with pytest.raises(FunctionCallError) as caught:
        _call(db, code, {})
    assert caught.value.message == "boom() failed: ValueError: bad value 3 second line"


def test_the_call_pool_takes_its_size_from_the_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TETHER_STORE_CALL_WORKERS="2", TETHER_STORE_CALL_QUEUE="1")
    released = threading.Event()

    async def fill(pool: CallPool) -> str:
        held = [asyncio.create_task(pool.run(lambda stop: released.wait(), 5)) for _ in range(3)]
        await asyncio.sleep(0.05)  # each task is admitted as it starts
        try:
            with pytest.raises(OverloadedError) as refused:
                await pool.run(lambda stop: released.wait(), 5)
        finally:
            released.set()
            await asyncio.gather(*held)
        return str(refused.value)

    with contextlib.closing(FunctionStore.open(settings)) as store:
        said = asyncio.run(fill(store.calls))
    assert said.startswith("2 function calls are running and 1 are waiting; retry in 5 s")
    assert "store.call_workers" in said


def test_a_call_whose_caller_goes_away_is_stopped_and_one_waiting_never_starts() -> None:
    """Each still goes through its work (so it is recorded), and no thread is held for a
    caller no one waits for."""
    pool = CallPool(workers=1, max_waiting=1)
    seen: list[str] = []
    running = threading.Event()

    def work(name: str) -> Callable[[threading.Event], None]:
        def run(stop: threading.Event) -> None:
            if stop.is_set():
                seen.append(f"{name}: not run")
                return
            running.set()
            seen.append(f"{name}: stopped" if stop.wait(30) else f"{name}: ran out")

        return run

    async def leave_both() -> None:
        first = asyncio.create_task(pool.run(work("first"), 30))
        await asyncio.to_thread(running.wait, 30)
        second = asyncio.create_task(pool.run(work("second"), 30))
        await asyncio.sleep(0.05)  # admitted, waiting for the thread
        for task in (second, first):
            task.cancel()
        for task in (first, second):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(leave_both())
        deadline = time.monotonic() + 30
        while pool.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pool.close()
    assert seen == ["first: stopped", "second: not run"] and pool.in_flight == 0


def test_a_stopped_call_says_its_caller_went_away(db: SnippetStore) -> None:
    snippet = vetted(db, "def spin() -> int:\n    while True:\n        pass\n", make_callable=True)
    stop = threading.Event()
    stop.set()
    with pytest.raises(FunctionCallError, match=r"spin\(\) was not run: its caller went away"):
        call(snippet, {}, Sandbox(), 30, stop)
    stop.clear()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(FunctionCallError, match=r"spin\(\) was stopped after [\d.]+ s: its caller"):
        call(snippet, {}, Sandbox(), 30, stop)
    assert time.monotonic() - started < 25  # not at its time limit
