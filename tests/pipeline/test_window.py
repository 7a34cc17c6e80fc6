"""The code around the cursor, cut to the context window: the nearest lines stay."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import SMALL_WINDOW, TOKEN
from tether.pipeline.window import fit_window


def _words(text: str) -> int:
    return len(text.split())


def test_what_fits_is_left_alone() -> None:
    assert fit_window("a b\nc ", "d\n", 10, _words) == ("a b\nc ", "d\n")


def test_far_lines_go_first_and_the_cursor_line_stays() -> None:
    prefix = "".join(f"before {i}\n" for i in range(100)) + "    x = "
    suffix = "".join(f"after {i}\n" for i in range(100))
    kept_prefix, kept_suffix = fit_window(prefix, suffix, 40, _words)
    assert kept_prefix.endswith("before 99\n    x = ")  # the lines nearest the cursor
    assert kept_suffix.startswith("after 0\n")
    assert _words(kept_suffix) <= 10  # at most a quarter of the room after the cursor
    assert _words(kept_prefix + kept_suffix) <= 40
    assert _words(kept_prefix + kept_suffix) >= 36  # and the room is used
    assert prefix.endswith(kept_prefix) and suffix.startswith(kept_suffix)


def test_whole_lines_are_those_an_editor_shows() -> None:
    """A form feed or U+2028 ends no line in an editor or in git, but str.splitlines()
    cut there: the code kept began part way into a line."""
    prefix = "".join(f"w{i} w w\u2028w w\x0cw\n" for i in range(50)) + "x = "
    suffix = "".join(f"v{i} v\u2028v\x0cv\n" for i in range(50))
    kept_prefix, kept_suffix = fit_window(prefix, suffix, 60, _words)
    start = len(prefix) - len(kept_prefix)
    assert prefix.endswith(kept_prefix) and prefix[start - 1] == "\n"
    assert suffix.startswith(kept_suffix) and kept_suffix.endswith("\n")


def test_a_short_suffix_leaves_its_share_to_the_prefix() -> None:
    prefix = "".join(f"before {i}\n" for i in range(100))
    kept_prefix, kept_suffix = fit_window(prefix, "tail\n", 40, _words)
    assert kept_suffix == "tail\n" and _words(kept_prefix) == 38


def test_a_file_longer_than_the_context_window_is_completed(
    small_window_client: TestClient,
) -> None:
    """An editor sends a whole long file around the cursor; the far ends are cut."""
    prefix = "".join(f"def helper_{i}(value):\n    return value + {i}\n\n\n" for i in range(400))
    body = {
        "prompt": prefix + "def main():\n    ",
        "suffix": "\n\n" + prefix,
        "max_tokens": 8,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = small_window_client.post("/v1/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] <= SMALL_WINDOW - 8


def test_a_cursor_line_longer_than_the_room_keeps_its_end() -> None:
    prefix = "header\nconst data = [" + "1, " * 100
    kept_prefix, kept_suffix = fit_window(prefix, "];\n", 40, _words)
    assert prefix.endswith(kept_prefix) and kept_suffix == "];\n"
    assert _words(kept_prefix) == 39  # the room the suffix leaves, used


def test_a_minified_file_is_completed(small_window_client: TestClient) -> None:
    """One line longer than the whole context window, as in minified code."""
    body = {
        "input_prefix": "const data = [" + "1, " * 3000,
        "input_suffix": "];\n",
        "n_predict": 4,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = small_window_client.post("/infill", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["truncated"] is True
    assert response.json()["tokens_evaluated"] <= SMALL_WINDOW - 4
