"""Security rules for Python, on the ``ast``.

Names are resolved through the imports the code itself makes (``import subprocess as sp``
makes ``sp.run`` read as ``subprocess.run``); a name the code never imports is read as
written, because a completion is often a fragment whose imports lie outside it.

When the text does not parse, each line that mentions a risky name is parsed on its own,
so a fragment still gets its one-line calls checked; statements spread over several lines
are then missed.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Collection

from tether.compliance.rules import make_finding
from tether.compliance.source import Source
from tether.compliance.syntax import parse_python
from tether.findings import Finding

_EVAL = {"eval", "exec", "builtins.eval", "builtins.exec"}
_SHELL_ALWAYS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
_DESERIALIZE = {
    f"{module}.{name}"
    for module in ("pickle", "cPickle", "_pickle", "dill")
    for name in ("load", "loads", "Unpickler")
} | {"marshal.load", "marshal.loads"}
_YAML_LOAD = {"yaml.load", "yaml.load_all"}
_YAML_UNSAFE = {"yaml.unsafe_load", "yaml.unsafe_load_all"}
_SAFE_YAML_LOADERS = ("SafeLoader", "CSafeLoader", "BaseLoader")
_SQL_METHODS = {"execute", "executemany", "executescript"}
_WEAK_HASHES = {"hashlib.md5", "hashlib.sha1"}
_TLS_OFF = {"ssl._create_unverified_context", "ssl.CERT_NONE", "CERT_NONE"}

_PASSWORD = re.compile(r"passw(?:or)?d|passphrase|\bpwd\b", re.IGNORECASE)
_SQL_WORDS = re.compile(
    r"\b(?:select|insert|update|delete|create|drop|alter|replace|where)\b", re.IGNORECASE
)
# Lines worth parsing on their own when the whole text does not parse.
_TRIGGER = re.compile(
    r"eval|exec|shell|system|popen|getoutput|pickle|marshal|dill|yaml|md5|sha1|verify|ssl"
    r"|CERT_NONE|unverified|check_hostname|import"
)


def scan_python(
    source: Source,
    module: ast.Module | SyntaxError | None = None,
    *,
    lines: tuple[int, int] | None = None,
) -> list[Finding]:
    """Security findings in Python ``source``; pass the parse result when you have one.

    With ``lines`` (first, last), only top-level statements that overlap those lines are
    checked, plus the imports, which resolve names.
    """
    parsed = parse_python(source.text) if module is None else module
    visitor = _Visitor(source)
    if isinstance(parsed, ast.Module):
        try:
            _scan_module(parsed, visitor, lines)
            return visitor.findings
        except RecursionError:  # nested deeper than the visitor's stack: line by line
            visitor = _Visitor(source)
    _scan_lines(source, visitor, lines)
    return visitor.findings


def _scan_module(module: ast.Module, visitor: _Visitor, lines: tuple[int, int] | None) -> None:
    if lines is None:
        visitor.visit(module)
        return
    first, last = lines
    for node in module.body:
        imports = isinstance(node, ast.Import | ast.ImportFrom)
        if imports or (node.lineno <= last and (node.end_lineno or node.lineno) >= first):
            visitor.visit(node)


def _scan_lines(source: Source, visitor: _Visitor, lines: tuple[int, int] | None) -> None:
    first, last = lines or (1, source.line_count)
    for number, line in enumerate(source.text.split("\n"), start=1):
        wanted = first <= number <= last or "import" in line
        if not wanted or not _TRIGGER.search(line):
            continue
        stripped = line.lstrip()
        # A block header such as ``if eval(x):`` parses once it has a body.
        text = stripped + " pass" if stripped.rstrip().endswith(":") else stripped
        parsed = parse_python(text)
        if isinstance(parsed, ast.Module):
            visitor.line_base = number - 1
            visitor.column_base = len(line) - len(stripped)
            with contextlib.suppress(RecursionError):  # one line nested that deep: not read
                visitor.visit(parsed)


class _Visitor(ast.NodeVisitor):
    def __init__(self, source: Source) -> None:
        self.source = source
        self.findings: list[Finding] = []
        self.aliases: dict[str, str] = {}
        self.sql_strings: dict[str, int] = {}  # variable -> line where a SQL string was built
        self.sql_literals: set[str] = set()  # variables holding constant SQL, to be extended
        # Variables holding text made of constants alone: marks = ",".join("?" * len(ids)).
        self.fixed_texts: set[str] = set()
        # What holds an HTTP session or client, as written: s, self.http (made by
        # requests.Session() and the like, or a parameter annotated so).
        self.sessions: set[str] = set()
        # Where the parsed text sits in ``source`` (non-zero for a line parsed on its own).
        self.line_base = 0
        self.column_base = 0

    def report(self, rule_id: str, node: ast.expr | ast.stmt, message: str) -> None:
        start = self.source.offset_of_utf8_column(
            node.lineno + self.line_base, node.col_offset + self.column_base
        )
        end_line = (node.end_lineno or node.lineno) + self.line_base
        end_column = node.end_col_offset if node.end_col_offset is not None else node.col_offset
        end = self.source.offset_of_utf8_column(end_line, end_column + self.column_base)
        self.findings.append(make_finding(rule_id, message, self.source, start, end))

    def qualname(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{node.module or ''}.{alias.name}"

    def _holds(self, target: ast.expr, value: ast.expr | None) -> None:
        """Note whether ``target`` now holds a session, as ``value`` makes one or not."""
        if isinstance(target, ast.Name | ast.Attribute):
            made = isinstance(value, ast.Call) and _makes_a_session(self.qualname(value.func))
            (self.sessions.add if made else self.sessions.discard)(ast.unparse(target))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._holds(node.target, node.value)
        self.generic_visit(node)

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._holds(item.optional_vars, item.context_expr)
        self.generic_visit(node)

    visit_AsyncWith = visit_With

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        arguments = node.args
        for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs):
            annotation = ast.unparse(argument.annotation) if argument.annotation else ""
            if _makes_a_session(annotation.strip("'\"")):
                self.sessions.add(argument.arg)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._holds(target, node.value)
            if isinstance(target, ast.Name):
                self.sql_strings.pop(target.id, None)
                self.sql_literals.discard(target.id)
                self.fixed_texts.discard(target.id)
                if _constant_like(node.value, self.fixed_texts):
                    self.fixed_texts.add(target.id)
                if _looks_like_sql(node.value):
                    if _is_dynamic_string(node.value, self.fixed_texts):
                        self.sql_strings[target.id] = node.lineno + self.line_base
                    elif isinstance(node.value, ast.Constant):
                        self.sql_literals.add(target.id)
            elif isinstance(target, ast.Attribute) and _is_falsy_constant(node.value):
                if target.attr == "check_hostname":
                    self.report(
                        "security/tls-verify", node, "check_hostname = False accepts any host"
                    )
                elif target.attr == "verify" and self._is_a_session(target.value):
                    # A requests Session's, for all its requests; another object's verify
                    # is whatever its class makes it.
                    self.report(
                        "security/tls-verify",
                        node,
                        f"verify = {ast.unparse(node.value)} accepts any certificate; give a "
                        "CA bundle instead",
                    )
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        # query = "SELECT ..."; query += name  builds the statement from a variable too.
        target = node.target
        if (
            isinstance(target, ast.Name)
            and isinstance(node.op, ast.Add)
            and (target.id in self.sql_literals or target.id in self.sql_strings)
            and not isinstance(node.value, ast.Constant)
        ):
            self.sql_strings.setdefault(target.id, node.lineno + self.line_base)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check_tls_name(node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self._check_tls_name(node)

    def _check_tls_name(self, node: ast.Attribute | ast.Name) -> None:
        name = self.qualname(node)
        if name in _TLS_OFF:
            self.report(
                "security/tls-verify",
                node,
                f"{name} turns off certificate verification; use ssl.create_default_context()",
            )

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualname(node.func) or ""
        self._check_eval(node, name)
        self._check_shell(node, name)
        self._check_deserialize(node, name)
        self._check_yaml(node, name)
        self._check_sql(node)
        self._check_weak_hash(node, name)
        self._check_verify(node, name)
        self.generic_visit(node)

    def _check_eval(self, node: ast.Call, name: str) -> None:
        if name in _EVAL:
            self.report(
                "security/eval",
                node,
                f"{name}() runs code built from a string; parse data with ast.literal_eval "
                "or json instead",
            )

    def _check_shell(self, node: ast.Call, name: str) -> None:
        if name in _SHELL_ALWAYS:
            self.report(
                "security/shell-true",
                node,
                f"{name}() runs the command through a shell; use subprocess.run([...]) "
                "with a list of arguments",
            )
        elif any(k.arg == "shell" and _is_truthy_constant(k.value) for k in node.keywords):
            self.report(
                "security/shell-true",
                node,
                f"{name or 'call'}(..., shell=True) runs the command through a shell; "
                "pass a list of arguments and drop shell=True",
            )

    def _check_deserialize(self, node: ast.Call, name: str) -> None:
        if name in _DESERIALIZE:
            self.report(
                "security/unsafe-deserialization",
                node,
                f"{name}() can run arbitrary code from its input; load untrusted data "
                "with json or another data-only format",
            )

    def _check_yaml(self, node: ast.Call, name: str) -> None:
        if name in _YAML_UNSAFE:
            self.report("security/yaml-load", node, f"{name}() builds arbitrary objects")
            return
        if name not in _YAML_LOAD:
            return
        loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
        if loader is None and len(node.args) > 1:
            loader = node.args[1]
        loader_name = (self.qualname(loader) or "") if loader is not None else ""
        if not loader_name.endswith(_SAFE_YAML_LOADERS):
            self.report(
                "security/yaml-load",
                node,
                f"{name}() without Loader=yaml.SafeLoader can build arbitrary objects; "
                "use yaml.safe_load",
            )

    def _check_sql(self, node: ast.Call) -> None:
        if not (isinstance(node.func, ast.Attribute) and node.func.attr in _SQL_METHODS):
            return
        query = node.args[0] if node.args else None
        if query is None:
            return
        if _is_dynamic_string(query, self.fixed_texts):
            where = "here"
        elif isinstance(query, ast.Name) and query.id in self.sql_strings:
            where = f"on line {self.sql_strings[query.id]}"
        else:
            return
        self.report(
            "security/sql-injection",
            node,
            f"the SQL passed to {node.func.attr}() is built by string formatting ({where}); "
            "pass values as query parameters",
        )

    def _check_weak_hash(self, node: ast.Call, name: str) -> None:
        weak = name in _WEAK_HASHES or (
            name == "hashlib.new"
            and bool(node.args)
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).lower() in ("md5", "sha1")
        )
        if not weak or any(
            k.arg == "usedforsecurity" and _is_constant(k.value, False) for k in node.keywords
        ):
            return
        first = node.lineno + self.line_base
        last = (node.end_lineno or node.lineno) + self.line_base
        nearby = self.source.text[
            self.source.line_start(first - 2) : self.source.line_end(last + 2)
        ]
        if _PASSWORD.search(nearby):
            self.report(
                "security/weak-hash",
                node,
                f"{name}() is too fast to protect passwords; use hashlib.scrypt, bcrypt or argon2",
            )

    def _check_verify(self, node: ast.Call, name: str) -> None:
        if name.rpartition(".")[2] in _RECORDS_DEFAULTS:
            return
        for keyword in node.keywords:
            if keyword.arg not in ("verify", "ssl"):
                continue
            # False, in any call; 0 or "" (which requests reads as False) in an HTTP one.
            http = name.rpartition(".")[2] in _HTTP_CALLS or _makes_a_session(name)
            if _is_constant(keyword.value, False) or (http and _is_falsy_constant(keyword.value)):
                self.report(
                    "security/tls-verify",
                    node,
                    f"{name or 'call'}(..., {keyword.arg}={ast.unparse(keyword.value)}) "
                    "accepts any certificate; give a CA bundle instead",
                )

    def _is_a_session(self, owner: ast.expr) -> bool:
        """Whether ``owner`` holds an HTTP session or client, by how it was made or named."""
        if ast.unparse(owner) in self.sessions:
            return True
        named = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        return bool(_SESSION_NAME.search(named))


# Calls that send a request or make a client, by their last name: where verify=0 is TLS's.
_HTTP_CALLS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "request", "send", "stream",
     "urlopen", "ClientSession", "TCPConnector"}
)  # fmt: skip
# argparse's parser.set_defaults(verify=False) records what an option's absence means;
# the flag it stands for is a choice the user makes, not a request made here.
_RECORDS_DEFAULTS = frozenset({"set_defaults"})
_SESSION_NAME = re.compile(r"(?i)sess|client|http")


def _makes_a_session(name: str | None) -> bool:
    """requests.Session() (or session()), httpx.Client() and AsyncClient(),
    aiohttp.ClientSession(): by the name of what makes it, or an annotation's."""
    last = (name or "").rpartition(".")[2]
    return last in ("Session", "session", "Client", "AsyncClient", "ClientSession")


def _is_constant(node: ast.expr, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _is_falsy_constant(node: ast.expr) -> bool:
    """False, 0 or "": what requests reads as verify=False. None is not: it means the
    default, which verifies."""
    return isinstance(node, ast.Constant) and node.value is not None and not node.value


def _is_truthy_constant(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and bool(node.value)


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def _concatenated(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _concatenated(node.left) + _concatenated(node.right)
    return [node]


def _is_dynamic_string(node: ast.expr, fixed: Collection[str] = ()) -> bool:
    """An f-string with a placeholder, ``"..." % x``, ``"...".format(x)`` or ``"..." + x``,
    where some value put in is not a constant: ``f"PRAGMA user_version = {VERSION}"`` is
    a fixed text written in two pieces, not a query built from input, and neither are the
    ``?`` marks of an ``IN (...)`` list. ``fixed`` names variables known to hold such text."""
    inserted = _inserted_values(node)
    return inserted is not None and not all(_constant_like(v, fixed) for v in inserted)


def _inserted_values(node: ast.expr) -> list[ast.expr] | None:
    """What a string built by formatting puts into it; None when ``node`` is not one."""
    if isinstance(node, ast.JoinedStr):
        values = [part.value for part in node.values if isinstance(part, ast.FormattedValue)]
        return values or None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        if not _is_str(node.left):
            return None
        right = node.right
        return list(right.elts) if isinstance(right, ast.Tuple) else [right]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr != "format" or not _is_str(node.func.value):
            return None
        return [*node.args, *(k.value for k in node.keywords)]
    parts = _concatenated(node)
    if len(parts) > 1 and any(_is_str(p) for p in parts):
        values = [p for p in parts if not isinstance(p, ast.Constant)]
        return values or None
    return None


# A module's or class's constant, by Python's naming: SCHEMA_VERSION, cls.TABLE.
_CONSTANT_NAME = re.compile(r"_*[A-Z][A-Z0-9_]*")


def _is_class_like(name: str) -> bool:
    return name in ("self", "cls") or name[:1].isupper()


def _constant_like(node: ast.expr, fixed: Collection[str] = ()) -> bool:
    """Whether ``node``'s text comes from the program, not its input: a literal, a
    constant (or a value of a constant table), a variable in ``fixed``, a literal
    repeated (``"?" * n``), or constants joined (``", ".join("?" * n)``)."""
    match node:
        case ast.Constant():
            return True
        case ast.Name(id=name):
            return name in fixed or bool(_CONSTANT_NAME.fullmatch(name))
        case ast.Attribute(value=ast.Name(id=owner), attr=attr):
            # A class's constant (self.TABLE, Config.TABLE), not any object's capitals:
            # request.GET and request.META are the request's input.
            return _is_class_like(owner) and bool(_CONSTANT_NAME.fullmatch(attr))
        case ast.Subscript(value=ast.Name() | ast.Attribute() as table):  # COLUMNS[kind]
            return _constant_like(table, fixed)
        case ast.BinOp(op=ast.Mult(), left=left, right=right):
            return _is_str(left) or _is_str(right)
        case ast.Call(func=ast.Attribute(attr="join", value=separator), args=[parts]):
            return _is_str(separator) and _constant_like(parts, fixed)
    return False


def _looks_like_sql(node: ast.expr) -> bool:
    texts = [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    return any(_SQL_WORDS.search(text) for text in texts)
