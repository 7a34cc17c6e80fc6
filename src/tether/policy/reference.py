"""The policy reference (docs/policy.md), generated from the rule fields and rules.toml.

Run ``python -m tether.policy.reference > docs/policy.md`` after changing either; a test
fails while the file and the code disagree.
"""

from __future__ import annotations

from tether.policy.rules import FIELDS, ScanRule, builtin_rules

_INTRO = """\
# Prompt policy

Generated from `src/tether/policy/rules.py` and `rules.toml` by
`python -m tether.policy.reference`; a test keeps it in step with the code.

Before a prompt reaches the model, tether scans every part of it (each chat message, the
functions a required tool call is shown, the completion prompt, the FIM prefix, suffix,
context snippets, their file names and the language, and each stop string and the JSON
schema an answer keeps to, which the engine, the trace and the audit record get too) for
secrets and personal data. Each rule is an RE2 regular expression, so a scan
takes time linear in the length of the prompt whatever it contains. What happens to a
finding is the rule's action:

| action | the prompt | the answer |
|---|---|---|
| `block` | is refused; the value is also redacted | none is generated |
| `redact` | gets `[REDACTED:rule-id]` in place of the value | keeps the marker |
| `pseudonymize` | gets a placeholder, e.g. `<EMAIL_1>`, one per value | gets the value back |
| `annotate` | is unchanged; the finding is reported | unchanged |
| `allow` (override only) | is unchanged; the rule does not run | unchanged |

A request's stop strings end an answer where they occur in it as the client reads it,
pseudonymized values put back.

A finding holds the rule id, the position (offsets, line and column) and the sha256
fingerprint of the value, never the value itself. Where matches of two rules overlap, the
one with the stronger action wins (block, redact, pseudonymize, annotate), then the longer
match, then the rule listed first below.

Rules read the text with each character in its NFKC form (fullwidth letters as ASCII
ones), a letter and the marks that compose with it as one (text written decomposed, as
macOS writes it: `o` and a combining diaeresis are `ö`, Korean's jamo its syllables), and
invisible characters (zero-width spaces and joiners, soft hyphens, bidi controls) left
out, so none of these hides a secret (where marks compose, the text is read a character at
a time as well, so a mark typed after a value does not hide it either); a finding's
position and the redaction still cover the text as it was sent, and its fingerprint is
that of the normalised value. In a word made of ASCII letters and letters of other scripts
that look like them (Unicode's confusables: a Cyrillic or Greek a, o, p), those letters
are read as the ASCII ones, so `password` written with a Cyrillic a is `password` to a
rule; a word of those scripts that holds other letters (a Cyrillic word) is read as
written, and letters that look like digits stay letters.

Base64 that decodes to text is read as well, so the rules find what it holds: a
kubeconfig's `client-key-data`, a Kubernetes Secret's `data`, a Docker config's `auth`,
a credentials file piped through `base64` (one line, URL-safe too, or wrapped at 60 to
76 characters), and base64 inside that, two levels deep. A finding inside covers the
whole encoded value, with the rule of the strongest finding in it (its description says
"base64-encoded") and that finding's fingerprint, so the allow-list works as for the
value written plainly; the fingerprint of the encoded value itself allows it too.

In a fill-in-the-middle request the code before and after the cursor is also scanned
joined, so a value the cursor splits is found: each half is redacted (a half cannot be
pseudonymized), or the request is blocked if the rule blocks. So is a value whose context
the cursor splits (`postgres://admin` before it, `:password@host` after), on its side and
with its rule's action.

A suggestion (`tether suggest`, `POST /v1/suggestions`) is a patch to a file the caller
holds, so where the model's file keeps a redacted value's marker, the value goes back
before the patch is made and stays in the file as it was: on a line the model kept or
moved, the value that line had; elsewhere, the rule's value when the file had only one.
A marker that could stand for more than one value is not written into the code: the
suggestion is refused, saying which line holds it.
"""

_FORMAT = """\
## Rule format

A rule is a table with these fields; built-in rules use the same ones.

| field | meaning |
|---|---|
"""

_CONFIG = """\
## Custom rules, overrides and the allow-list

In `tether.toml` (see [settings](settings.md) for the environment variables):

```toml
[policy]
enabled = true
# sha256 of values never reported, copied from a finding's fingerprint field.
allow = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]

# Any rule's action by id, built-in or custom; "allow" turns the rule off.
[policy.actions]
email = "annotate"
generic-secret = "block"
phone = "allow"

# Custom rules, one table each; or, in [policy]: rules = [{ id = "...", regex = '...' }].
[[policy.rules]]
id = "ticket-token"
regex = '\\btkt_[a-z0-9]{24}\\b'
keywords = ["tkt_"]
action = "block"

[[policy.rules]]
id = "employee-id"
description = "employee number"
regex = '\\bEMP-([0-9]{6})\\b'
keywords = ["emp-"]
action = "pseudonymize"
secret_group = 1
```

A custom rule with the id of a built-in one replaces it. A mistake in a rule (an unknown
field or action, a regex RE2 rejects, a missing id or regex, or a repeat left open, `{24`
for `{24}`, which RE2 would take as text) stops tether at start-up with an error that
names the rule and the field. RE2 has no look-arounds or backreferences:
match the context around a secret and capture the secret itself in a group
(`secret_group`); a validator or an entropy threshold can then reject look-alikes.
A regex pasted from decomposed text is read composed, as the text is, in its runs of
literal letters: not inside a class (one of `o` and a combining diaeresis is either, not
`ö`), nor where a repeat follows a letter's marks (`o`, a diaeresis, then `?`: the
diaeresis alone is optional).

A fingerprint is the sha256 of the value as matched, in its normalised form:
`printf %s 'value' | sha256sum`.

## Limits

- A secret with nothing around it to say what it is (a bare 40-character key in a
  sentence, a password in a log line without a key name) is found only when its own shape
  is distinctive (a prefix such as `ghp_`, `AKIA` or `sk-ant-`).
- `generic-secret` wants a value of 8 or more characters with some randomness, so short or
  dictionary passwords (`hunter2`) pass, and so does a bare value containing a `.`. It
  knows key names in English, and the word for password in German, Dutch, French,
  Spanish, Portuguese, Polish, Swedish, Finnish, Russian, Chinese, Japanese and Korean.
- Phone numbers are found in E.164 and in North American, French and British national
  formats only; two numbers separated by nothing but a space read as one, too long, number.
- Pseudonyms are per value as written: `+1 415 555 2671` and `(415) 555-2671` get two.
- Of encodings, only base64 is read: hex, percent-encoding, compressed or encrypted
  values, and a secret split across messages or fields, are not found. Base64 of fewer
  than 24 characters is not decoded, except after `Basic` in a header (`basic-auth`).
- RE2's `\\b` knows only ASCII word characters. A `\\b` that starts or ends every match
  of a regex (not one alternative's only) is checked again, so `\\bpass\\b` does not
  match in `épass`; elsewhere in a regex, and next to a letter beyond ASCII in the regex
  itself (`passé\\b` never matches), write the context out instead:
  `(?:^|[^\\p{L}\\p{N}_])(passé)(?:[^\\p{L}\\p{N}_]|$)` with `secret_group = 1`.
- A custom rule that redacts, blocks or pseudonymizes, or a rule's action changed to one
  of those in `policy.actions` or `compliance.actions`, holds every streamed answer whole
  until it is checked: the client gets it in one last event. Only the built-in rules'
  own actions let an answer stream live (`compliance.stream_holdback`), held back line by
  line where a secret may be.
"""

_BUILTIN = """\
## Built-in rules

| id | default action | finds | checks | keywords |
|---|---|---|---|---|
"""


def policy_reference() -> str:
    """The whole of docs/policy.md."""
    fields = "".join(f"| `{name}` | {meaning} |\n" for name, meaning in FIELDS.items())
    rules = "".join(_rule_row(rule) for rule in builtin_rules())
    return f"{_INTRO}\n{_FORMAT}{fields}\n{_CONFIG}\n{_BUILTIN}{rules}"


def _rule_row(rule: ScanRule) -> str:
    checks = []
    if rule.validator:
        checks.append(rule.validator)
    if rule.entropy is not None:
        checks.append(f"entropy >= {rule.entropy:g}")
    keywords = ", ".join(f"`{k}`" for k in rule.keywords) or "(always runs)"
    return (
        f"| `{rule.id}` | {rule.action} | {rule.description} | "
        f"{', '.join(checks) or '-'} | {keywords} |\n"
    )


if __name__ == "__main__":
    print(policy_reference(), end="")
