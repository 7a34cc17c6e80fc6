"""What the command line keeps resident: every tether process, the server included."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import tether.cli
from tether.cli.main import COMMAND_MODULES


@pytest.mark.skipif(
    importlib.util.find_spec("rich") is None, reason="httpx loads its CLI only beside rich"
)
def test_the_cli_leaves_httpx_own_command_line_unloaded() -> None:
    probe = (
        "import sys, tether.cli.main, httpx\n"
        "reply = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204)))"
        ".get('http://x/')\n"
        "print(reply.status_code, sorted({'rich', 'pygments'} & set(sys.modules)))\n"
    )
    # As the `tether` entry point runs: the command line first, then whatever uses httpx.
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["204", "[]"]


def test_every_command_module_is_mapped_by_each_command_it_holds() -> None:
    held = {}
    for path in sorted(Path(tether.cli.__file__).parent.glob("*.py")):
        module = importlib.import_module(f"tether.cli.{path.stem}")
        for command in getattr(module, "COMMANDS", ()):
            held[command.name] = path.stem
    assert held == COMMAND_MODULES


def test_serving_loads_no_client_command() -> None:
    probe = (
        "import sys, click\n"
        "from tether.cli.main import cli\n"
        "with click.Context(cli) as ctx:\n"
        "    assert cli.get_command(ctx, 'serve').name == 'serve'\n"
        "print(sorted(m for m in sys.modules if m.startswith('tether.cli.') or m == 'httpx'))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(["tether.cli.common", "tether.cli.main", "tether.cli.serve"])


def test_a_server_without_a_webhook_leaves_httpx_unloaded() -> None:
    # httpx and what it brings cost an idle server 1.5 MB (bench/startup_memory.py).
    probe = (
        "import sys\n"
        "from tether.plugins import build_manager\n"
        "from tether.server.runner import serve\n"
        "from tether.settings import Settings\n"
        "build_manager(Settings())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_server_leaves_pydantic_v1_unloaded() -> None:
    probe = (
        "import sys, tether.server.app\n"
        "from fastapi import FastAPI\n"
        "from fastapi.encoders import jsonable_encoder\n"
        "from pydantic import BaseModel\n"
        "class Item(BaseModel):\n"
        "    name: str\n"
        "class Point:\n"
        "    def __init__(self) -> None:\n"
        "        self.x = 1\n"
        "def create(item: Item) -> Item: ...\n"
        "FastAPI().post('/items')(create)\n"  # the route's annotation check
        "jsonable_encoder([Item(name='x'), {1, 2}, Point()])\n"  # the encoder's check
        "print('pydantic.v1' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_fastapi_still_refuses_a_pydantic_v1_model() -> None:
    probe = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "import tether.server\n"
        "from fastapi import FastAPI\n"
        "from fastapi.encoders import jsonable_encoder\n"
        "from fastapi.exceptions import PydanticV1NotSupportedError\n"
        "from pydantic import v1\n"
        "class Item(v1.BaseModel):\n"
        "    name: str\n"
        "def create(item: Item) -> None: ...\n"
        "refused = []\n"
        "for attempt in (lambda: FastAPI().post('/items')(create),\n"
        "                lambda: jsonable_encoder(Item(name='x'))):\n"
        "    try:\n"
        "        attempt()\n"
        "    except PydanticV1NotSupportedError:\n"
        "        refused.append(True)\n"
        "print(refused)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[True, True]"


def test_the_server_loads_jsonschema_only_once_a_strict_function_is_offered() -> None:
    # Its import takes about 1.5 s and 32 MB (its format checkers' grammars).
    probe = (
        "import asyncio, sys, tether.server.app\n"
        "from tether.server.tool_calls import ready_to_check, tool_offer\n"
        "loaded = 'jsonschema' in sys.modules\n"
        "tool = {'type': 'function', 'name': 'f', 'parameters': {'type': 'object'}}\n"
        "def offer(*tools): return tool_offer(list(tools), 'auto', nested=False)\n"
        "asyncio.run(ready_to_check(offer({**tool, 'strict': False})))\n"
        "print(loaded, 'jsonschema' in sys.modules)\n"
        "asyncio.run(ready_to_check(offer(tool)))\n"
        "print('jsonschema' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "True"]
