"""Each Python security rule fires on a bad example and stays quiet on a safe look-alike."""

from __future__ import annotations

import pytest

from tests.compliance.helpers import check, rule_ids

CASES = [
    # (rule, bad, safe look-alike)
    ("security/eval", "x = eval(input())", "x = ast.literal_eval(text)"),
    ("security/eval", "exec(code, scope)", "model.eval()\nexecutor.submit(job)"),
    ("security/eval", "from builtins import eval as ev\nev(s)", "def evaluate(s):\n    return s"),
    (
        "security/shell-true",
        "subprocess.run(cmd, shell=True)",
        "subprocess.run(['ls', path], shell=False)",
    ),
    ("security/shell-true", "import subprocess as sp\nsp.Popen(c, shell=1)", "sp.Popen(['a'])"),
    ("security/shell-true", 'os.system("rm -rf " + folder)', "os.path.join(a, b)"),
    ("security/shell-true", "from os import popen\npopen(cmd)", "import os\nos.getenv('X')"),
    ("security/unsafe-deserialization", "data = pickle.loads(blob)", "blob = pickle.dumps(data)"),
    ("security/unsafe-deserialization", "code = marshal.load(f)", "data = json.load(f)"),
    (
        "security/yaml-load",
        "cfg = yaml.load(text)",
        "cfg = yaml.load(text, Loader=yaml.SafeLoader)",
    ),
    ("security/yaml-load", "cfg = yaml.load(text, yaml.Loader)", "cfg = yaml.safe_load(text)"),
    ("security/yaml-load", "docs = yaml.unsafe_load_all(s)", "docs = yaml.safe_load_all(s)"),
    (
        "security/sql-injection",
        "cur.execute(f\"SELECT * FROM users WHERE name = '{name}'\")",
        'cur.execute("SELECT * FROM users WHERE name = ?", (name,))',
    ),
    (
        "security/sql-injection",
        'cur.execute("DELETE FROM t WHERE id = %s" % uid)',
        'cur.execute("DELETE FROM t WHERE id = %s", (uid,))',
    ),
    (
        "security/sql-injection",
        'db.executemany("INSERT INTO {} VALUES (?)".format(table), rows)',
        'db.executemany("INSERT INTO t VALUES (?)", rows)',
    ),
    (
        "security/sql-injection",
        'query = "SELECT * FROM t WHERE a = " + value\ncursor.execute(query)',
        'query = "SELECT * FROM t WHERE a = ?"\ncursor.execute(query, (value,))',
    ),
    (
        "security/sql-injection",
        'sql = "SELECT * FROM t WHERE a = "\nsql += value\nconn.execute(sql)',
        'sql = "SELECT * FROM t"\nsql += " WHERE a = 1"\nconn.execute(sql)',
    ),
    # A constant put in is a fixed text written in pieces, not input.
    (
        "security/sql-injection",
        'db.execute(f"PRAGMA user_version = {version}")',
        'db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")',
    ),
    (
        "security/sql-injection",
        'cur.execute("SELECT * FROM %s WHERE id = %s" % (TABLE, uid))',
        'cur.execute("SELECT * FROM %s WHERE id = ?" % self.TABLE, (uid,))',
    ),
    (
        "security/sql-injection",
        'db.execute(f"SELECT {columns[by]} FROM t")',
        'db.execute(f"SELECT {COLUMNS[by]} FROM t")',
    ),
    (  # a request's input in capitals is still input
        "security/sql-injection",
        "cursor.execute(f\"SELECT * FROM users WHERE name = '{request.GET['name']}'\")",
        'cursor.execute(f"SELECT * FROM {Config.USERS} WHERE name = ?", (name,))',
    ),
    (
        "security/sql-injection",
        'cursor.execute("SELECT * FROM users WHERE id = %s" % request.POST["id"])',
        'cursor.execute("SELECT * FROM %s WHERE id = ?" % cls.TABLES["users"], (uid,))',
    ),
    (  # the ? marks of an IN list: the recommended way, with the values as parameters
        "security/sql-injection",
        'marks = ",".join(names)\ndb.execute(f"SELECT * FROM t WHERE id IN ({marks})")',
        'marks = ",".join("?" * len(ids))\n'
        'db.execute(f"SELECT * FROM t WHERE id IN ({marks})", ids)',
    ),
    (
        "security/sql-injection",
        "db.execute(f\"DELETE FROM t WHERE id IN ({', '.join(ids)})\")",
        "db.execute(f\"DELETE FROM t WHERE id IN ({', '.join('?' * len(ids))})\", ids)",
    ),
    (
        "security/weak-hash",
        "digest = hashlib.md5(password.encode()).hexdigest()",
        "digest = hashlib.md5(file_bytes).hexdigest()",
    ),
    (
        "security/weak-hash",
        "def store(pwd):\n    return hashlib.sha1(pwd).digest()",
        "def store(pwd):\n    return hashlib.scrypt(pwd, salt=s, n=2**14, r=8, p=1)",
    ),
    (
        "security/weak-hash",
        'h = hashlib.new("md5", user_password)',
        'h = hashlib.new("md5", user_password, usedforsecurity=False)',
    ),
    ("security/tls-verify", "requests.get(url, verify=False)", "requests.get(url, verify=True)"),
    ("security/tls-verify", "aiohttp.get(url, ssl=False)", "aiohttp.get(url, ssl=context)"),
    (
        "security/tls-verify",
        "ctx = ssl._create_unverified_context()",
        "ctx = ssl.create_default_context()",
    ),
    (
        "security/tls-verify",
        "ctx.verify_mode = ssl.CERT_NONE",
        "ctx.verify_mode = ssl.CERT_REQUIRED",
    ),
    ("security/tls-verify", "ctx.check_hostname = False", "ctx.check_hostname = True"),
    # Falsy constants disable verification as False does; None means the default.
    ("security/tls-verify", "requests.get(url, verify=0)", "requests.get(url, verify=None)"),
    ("security/tls-verify", 'requests.get(url, verify="")', 'requests.get(url, verify="ca.pem")'),
    ("security/tls-verify", "session.verify = False", 'session.verify = "ca.pem"'),
    ("security/tls-verify", "ctx.check_hostname = 0", "ctx.check_hostname = 1"),
    # A session's verify by how it was made; another object's verify is its own affair,
    # as is verify=0 in a call that sends no request.
    (
        "security/tls-verify",
        "s = requests.Session()\ns.verify = False",
        "s = Report()\ns.verify = False",
    ),
    ("security/tls-verify", "self.http_client.verify = 0", "self.verify = False"),
    (
        "security/tls-verify",
        "with requests.Session() as s:\n    s.verify = False",
        "with open(p) as s:\n    s.verify = False",
    ),
    (
        "security/tls-verify",
        "self.web = requests.session()\nself.web.verify = False",
        "self.web = Report()\nself.web.verify = False",
    ),
    (
        "security/tls-verify",
        "def f(s: requests.Session) -> None:\n    s.verify = False",
        "def f(s: Report) -> None:\n    s.verify = False",
    ),
    (
        "security/tls-verify",
        "s: httpx.Client = httpx.Client()\ns.verify = False",
        "s: Report = Report()\ns.verify = False",
    ),
    ("security/tls-verify", "httpx.Client(verify=0)", "run_tests(verify=0)"),
    ("security/tls-verify", 'session.get(url, ssl="")', 'connect(host, ssl="")'),
    (
        "security/tls-verify",
        "requests.get(url, verify=False)",
        "parser.set_defaults(verify=False)",
    ),
]


@pytest.mark.parametrize(
    ("rule", "bad", "safe"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_fires_on_bad_and_not_on_safe(rule: str, bad: str, safe: str) -> None:
    assert rule in rule_ids(check(bad)), bad
    assert rule not in rule_ids(check(safe)), safe


def test_finding_points_at_the_call_with_unicode_before_it() -> None:
    code = 'name = "héllo"\nvalue = "ü" + eval(expr)\n'
    (finding,) = [f for f in check(code) if f.rule_id == "security/eval"]
    assert (finding.line, finding.column) == (2, 15)
    assert code[finding.start : finding.end] == "eval(expr)"
    assert finding.stage == "compliance"
    assert finding.severity == "error"
    assert finding.action == "annotate"
    assert len(finding.fingerprint) == 64


def test_multi_line_call_spans_every_line() -> None:
    code = "result = subprocess.check_output(\n    cmd,\n    shell=True,\n)\n"
    (finding,) = check(code)
    assert finding.rule_id == "security/shell-true"
    assert code[finding.start : finding.end].endswith(")")
    assert code[finding.start : finding.end].count("\n") == 3


def test_code_that_does_not_parse_is_still_checked_line_by_line() -> None:
    code = "    x = 1\n    if eval(data):\n        pickle.loads(b)\n  broken = (\n"
    ids = rule_ids(check(code))
    assert {"syntax", "security/eval", "security/unsafe-deserialization"} <= ids
    lines = {f.rule_id: f.line for f in check(code)}
    assert lines["security/eval"] == 2
    assert lines["security/unsafe-deserialization"] == 3


def test_clean_code_has_no_findings() -> None:
    code = (
        "import subprocess\n\n\n"
        "def run(args: list[str]) -> str:\n"
        "    return subprocess.run(args, check=True, capture_output=True, text=True).stdout\n"
    )
    assert check(code) == []


@pytest.mark.parametrize(
    "code",
    [
        "-" * 100_000 + "1",  # the parser's stack
        "a" + "[0]" * 100_000,  # building the tree
        " ".join(["word"] * 1_600) + ")",  # the parser's error pass, on prose
    ],
)
def test_code_too_deep_for_pythons_parser_is_a_finding_not_a_crash(code: str) -> None:
    [finding] = check(code)
    assert finding.rule_id == "syntax" and "parser gave up" in finding.message


def test_code_too_deep_to_walk_is_still_checked_line_by_line() -> None:
    """It parses, but walking its tree would pass Python's recursion limit."""
    code = "import os\nos.system(command)\ntotal = " + " + ".join(["1"] * 2_000) + "\n"
    findings = check(code)
    assert {f.rule_id: f.line for f in findings} == {"security/shell-true": 2}
