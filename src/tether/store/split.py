"""Top-level functions of Python, JavaScript and TypeScript files, through tree-sitter.

A function comes with its decorators (Python) or its ``export`` (JS, TS), its signature,
and its documentation: the docstring in Python, the ``/** ... */`` comment right above it
in JS and TS. A Python function also brings the file's top-level imports it uses, written
above it, so that it runs (and reads) on its own. Methods stay with their classes: they
need ``self`` and are not reused alone. The normalised hash is of the code stored, imports
included, and ignores comments and layout, so a copy that was only reformatted is
recognised as the same code, and one that imports another ``sqrt`` is not.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import symtable
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache

import tree_sitter

from tether.compliance.languages import grammar
from tether.errors import RequestError

SPLIT_LANGUAGES = ("python", "javascript", "typescript", "tsx")
_PY_STRING_PREFIX = "rRbBuUfF"
_JS_FUNCTIONS = ("function_declaration", "generator_function_declaration")
_JS_VALUES = ("arrow_function", "function_expression", "function", "generator_function")


@dataclass(frozen=True)
class Function:
    name: str
    signature: str  # the definition up to its body, on one line
    code: str  # the whole definition, decorators or export included; Python: imports first
    docstring: str
    line: int  # 1-based line where ``code`` starts
    body_hash: str  # sha256 of the code without comments and layout
    broken: bool = False  # the parser found errors in it
    overload: bool = False  # a typing.overload stub: a signature, not code to keep


@cache
def _language(language: str) -> tree_sitter.Language:
    if language == "python":
        import tree_sitter_python

        return tree_sitter.Language(tree_sitter_python.language())
    if language in ("javascript", "typescript", "tsx"):
        return grammar(language)
    raise RequestError(
        f"tether cannot split {language or 'this language'} into functions; "
        f"supported: {', '.join(SPLIT_LANGUAGES)}",
        param="language",
    )


def parse(code: str, language: str) -> tree_sitter.Tree:
    return tree_sitter.Parser(_language(language)).parse(code.encode("utf-8"))


def has_syntax_errors(code: str, language: str) -> bool:
    return parse(code, language).root_node.has_error


def functions(
    code: str, language: str, left_out: list[tuple[Function, str]] | None = None
) -> list[Function]:
    """The top-level functions of ``code`` that the file binds, in file order. An earlier
    definition of a name defined again is left out, and named in ``left_out`` (the
    function and why) when given; ``@overload`` stubs are left out without a word."""
    data = code.encode("utf-8")
    root = parse(code, language).root_node
    if language == "python":
        imports = _python_imports(root, data)
        found = [_with_imports(_python(node, data), imports) for node in _python_defs(root)]
    else:
        found = [_javascript(node, name, data) for node, name in _js_defs(root, data)]
    last = {f.name: f for f in found}
    for function in found:
        later = last[function.name]
        if function is not later and not function.overload and left_out is not None:
            why = f"defined again at line {later.line}, and only the last definition is kept"
            left_out.append((function, why))
    return [f for f in found if last[f.name] is f]


def normalised_hash(code: str, language: str) -> str:
    """sha256 of the code's tokens, comments left out, one space between tokens."""
    data = code.encode("utf-8")
    tokens = _tokens(parse(code, language).root_node, data)
    return hashlib.sha256(" ".join(tokens).encode("utf-8")).hexdigest()


def _tokens(node: tree_sitter.Node, data: bytes) -> list[str]:
    out: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "comment":
            continue
        if current.child_count == 0 or current.type in ("string", "template_string"):
            out.append(data[current.start_byte : current.end_byte].decode("utf-8", "replace"))
            continue
        stack.extend(reversed(current.children))
    return out


def _text(node: tree_sitter.Node, data: bytes) -> str:
    return data[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _signature(node: tree_sitter.Node, end: int, data: bytes) -> str:
    """The code of ``node`` up to byte ``end``, its comments left out, on one line."""
    kept, start = [], node.start_byte
    stack = [node]
    while stack:
        current = stack.pop()
        if current.start_byte >= end or current.end_byte <= start:
            continue
        if current.type == "comment":
            kept.append(data[start : current.start_byte])
            start = current.end_byte
        else:
            stack.extend(reversed(current.children))
    kept.append(data[start:end])
    return " ".join(b"".join(kept).decode("utf-8", "replace").split())


# -- Python -------------------------------------------------------------------------------


def _python_defs(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    for node in root.named_children:
        if node.type == "function_definition":
            yield node
        elif node.type == "decorated_definition":
            inner = node.child_by_field_name("definition")
            if inner is not None and inner.type == "function_definition":
                yield node


def _python(node: tree_sitter.Node, data: bytes) -> Function:
    definition = node.child_by_field_name("definition") or node
    name = definition.child_by_field_name("name")
    body = definition.child_by_field_name("body")
    assert name is not None and body is not None  # the grammar requires both
    code = _text(node, data)
    decorators = [_text(c, data) for c in node.children if c.type == "decorator"]
    return Function(
        name=_text(name, data),
        overload=any(d.removeprefix("@").strip().endswith("overload") for d in decorators),
        signature=_signature(definition, body.start_byte, data),
        code=code,
        docstring=_python_docstring(body, data),
        line=node.start_point[0] + 1,
        body_hash=_hash_of(node, data),
        broken=node.has_error,
    )


def global_names(code: str) -> set[str]:
    """The global names Python ``code`` reads but does not bind (define, assign or
    import) at its top level, builtins left out; raises SyntaxError."""
    top = symtable.symtable(code, "<snippet>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    read = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    tables = list(top.get_children())
    while tables:
        table = tables.pop()
        read |= {s.get_name() for s in table.get_symbols() if s.is_global() and s.is_referenced()}
        tables.extend(table.get_children())
    return read - bound - set(dir(builtins))


def _python_imports(root: tree_sitter.Node, data: bytes) -> list[tuple[str, ast.stmt]]:
    """The file's top-level import statements, as (name bound, one-name statement)."""
    bound: list[tuple[str, ast.stmt]] = []
    for node in root.named_children:
        if node.type not in (
            "import_statement",
            "import_from_statement",
            "future_import_statement",
        ):
            continue
        try:
            statement = ast.parse(_text(node, data)).body[0]
        except (SyntaxError, IndexError):
            continue
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                name = alias.asname or alias.name.partition(".")[0]
                bound.append((name, ast.Import([alias])))
        elif isinstance(statement, ast.ImportFrom):
            for alias in statement.names:
                if alias.name != "*":
                    single = ast.ImportFrom(statement.module, [alias], statement.level)
                    bound.append((alias.asname or alias.name, single))
    return bound


def _with_imports(function: Function, imports: list[tuple[str, ast.stmt]]) -> Function:
    """``function`` with the imports it uses written above it, names from one module
    joined as the file had them; ``from __future__`` ones when it has annotations."""
    if function.broken or not imports:
        return function
    try:
        used = global_names(function.code)
        annotated = _annotated(ast.parse(function.code))
    except SyntaxError:
        return function
    future: list[str] = []
    plain: list[str] = []
    names_from: dict[str, list[str]] = {}  # "from M import ": the names, in file order
    for name, statement in imports:
        if isinstance(statement, ast.ImportFrom) and statement.module == "__future__":
            if annotated:
                future.append(ast.unparse(statement))
        elif name not in used:
            continue
        elif isinstance(statement, ast.Import):
            plain.append(ast.unparse(statement))
        elif isinstance(statement, ast.ImportFrom):
            head = f"from {'.' * statement.level}{statement.module or ''} import "
            alias = statement.names[0]
            written = alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"
            names_from.setdefault(head, []).append(written)
    lines = [*future, *plain, *(head + ", ".join(names) for head, names in names_from.items())]
    if not lines:
        return function
    code = "\n".join(lines) + "\n\n\n" + function.code
    return replace(function, code=code, body_hash=normalised_hash(code, "python"))


def _annotated(tree: ast.Module) -> bool:
    return any(
        getattr(node, "annotation", None) is not None
        or (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns)
        for node in ast.walk(tree)
    )


def _python_docstring(body: tree_sitter.Node, data: bytes) -> str:
    first = body.named_children[0] if body.named_children else None
    if first is None or first.type != "expression_statement" or not first.named_children:
        return ""
    string = first.named_children[0]
    if string.type != "string":
        return ""
    raw = _text(string, data).lstrip(_PY_STRING_PREFIX)
    quote = raw[:3] if raw[:3] in ('"""', "'''") else raw[:1]
    return inspect.cleandoc(raw[len(quote) : len(raw) - len(quote)])


# -- JavaScript and TypeScript ------------------------------------------------------------


def _js_defs(root: tree_sitter.Node, data: bytes) -> Iterator[tuple[tree_sitter.Node, str]]:
    for node in root.named_children:
        declaration = node
        if node.type == "export_statement":
            declaration = node.child_by_field_name("declaration") or node
        if declaration.type in _JS_FUNCTIONS:
            name = declaration.child_by_field_name("name")
            if name is not None:
                yield node, _text(name, data)
        elif declaration.type in ("lexical_declaration", "variable_declaration"):
            declarators = [c for c in declaration.named_children if c.type == "variable_declarator"]
            if len(declarators) != 1:
                continue  # ``const a = () => 1, b = 2``: not one function
            name = declarators[0].child_by_field_name("name")
            value = declarators[0].child_by_field_name("value")
            if name is not None and value is not None and value.type in _JS_VALUES:
                yield node, _text(name, data)


def _javascript(node: tree_sitter.Node, name: str, data: bytes) -> Function:
    code = _text(node, data)
    body = _js_body(node)
    head = _signature(node, body.start_byte if body is not None else node.end_byte, data)
    return Function(
        name=name,
        signature=head.removesuffix("=>").strip(),
        code=code,
        docstring=_jsdoc(node, data),
        line=node.start_point[0] + 1,
        body_hash=_hash_of(node, data),
        broken=node.has_error,
    )


def _js_body(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The function's body: the first statement block, or an arrow function's expression."""
    stack = [node]
    while stack:
        current = stack.pop(0)
        body = current.child_by_field_name("body")
        if body is not None and current.type in (*_JS_FUNCTIONS, *_JS_VALUES):
            return body
        stack.extend(current.named_children)
    return None


def _jsdoc(node: tree_sitter.Node, data: bytes) -> str:
    """The ``/** ... */`` comment that ends right above the function, cleaned."""
    before = node.prev_sibling
    if before is None or before.type != "comment" or node.start_point[0] - before.end_point[0] > 1:
        return ""
    text = _text(before, data)
    if not text.startswith("/**"):
        return ""
    lines = text.removeprefix("/**").removesuffix("*/").splitlines()
    cleaned = [line.strip().removeprefix("*").removeprefix(" ") for line in lines]
    return "\n".join(cleaned).strip()


def _hash_of(node: tree_sitter.Node, data: bytes) -> str:
    tokens = _tokens(node, data)
    return hashlib.sha256(" ".join(tokens).encode("utf-8")).hexdigest()
