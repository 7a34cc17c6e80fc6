#!/usr/bin/env bash
# Ask tether for a change to each file a branch changed, and write the suggestions as
# patches for review: never applied, never committed. Works in any CI or shell.
#
#   deploy/ci/suggest.sh BASE "INSTRUCTION" OUT_DIR [MAX_FILES]
#
# BASE: the revision to compare with (e.g. origin/main); every file added, modified or
# renamed since then gets one `tether suggest` run. OUT_DIR receives one .patch per file that the
# model proposed changing (with its reproducibility manifest) and summary.md, a Markdown
# table of what was suggested. Set TETHER_SERVER (and TETHER_TOKEN) to use a running
# server instead of the embedded model; TETHER_SUGGEST_ARGS adds options such as
# "--max-tokens 2048". Exit status: 0 when every file was handled (with or without a
# suggestion; a binary file is skipped and noted), 1 when some run failed, 2 on bad
# arguments or a BASE it cannot compare with.
set -uo pipefail

if [ $# -lt 3 ] || [ -z "$2" ]; then
  echo "usage: $0 BASE INSTRUCTION OUT_DIR [MAX_FILES]" >&2
  exit 2
fi
base=$1 instruction=$2 out=$3 max_files=${4:-20}
if ! [[ $max_files =~ ^[0-9]+$ ]]; then
  echo "error: MAX_FILES must be a whole number of files, such as 20, not '$max_files'" >&2
  exit 2
fi
if ! git rev-parse --verify --quiet "${base}^{commit}" >/dev/null; then
  echo "error: $base is not a revision here; fetch it first (git fetch origin ...)" >&2
  exit 2
fi
mkdir -p "$out"
# git names changed files from the repository's top: run from there, wherever called from.
out=$(cd "$out" && pwd)
cd "$(git rev-parse --show-toplevel)" || exit 2
# The files first: a comparison git cannot make (a shallow clone holds no merge base with
# BASE) must fail the run, not read as a branch that changed nothing.
changed="$out/.changed"
if ! git diff -z --name-only --diff-filter=AMR "${base}...HEAD" -- >"$changed" 2>"$out/.stderr"; then
  echo "error: cannot list the files changed since $base: $(tail -n 1 "$out/.stderr")" >&2
  echo "(a shallow clone lacks the history back to the merge base: fetch it, e.g." >&2
  echo "git fetch --unshallow, or actions/checkout with fetch-depth: 0)" >&2
  rm -f "$changed" "$out/.stderr"
  exit 2
fi
summary="$out/summary.md"
{
  echo "### tether suggestions"
  echo
  echo "Instruction: ${instruction}"
  echo
  echo "| file | result | lines added / removed |"
  echo "|---|---|---|"
} > "$summary"

failed=0 count=0 stopped=0 skipped=0
# NUL-separated, so that any file name is safe; only files that still exist.
while IFS= read -r -d '' file; do
  [ -f "$file" ] || continue
  shown=${file//|/\\|}  # a | would end the table's cell
  # An image or other binary file has no text to rewrite: noted, not a failed run.
  if [ -s "$file" ] && ! LC_ALL=C grep -qI -e '' -- "$file"; then
    echo "| \`$shown\` | skipped: not a text file | |" >> "$summary"
    skipped=$((skipped + 1))
    continue
  fi
  if [ "$count" -ge "$max_files" ]; then
    echo "| … | stopped after $max_files files | |" >> "$summary"
    stopped=1
    break
  fi
  count=$((count + 1))
  # Numbered, so that sub/x.py and sub_x.py do not write one patch.
  patch="$out/$(printf '%02d-%s' "$count" "$file" | tr '/' '_').patch"
  # shellcheck disable=SC2086  # TETHER_SUGGEST_ARGS is a list of options
  if result=$(tether suggest -i "$instruction" -o "$patch" --json ${TETHER_SUGGEST_ARGS:-} -- "$file" 2>"$out/.stderr"); then
    if printf '%s' "$result" | grep -q '"patch": null'; then
      echo "| \`$shown\` | no change proposed | |" >> "$summary"
    else
      # Lines after the first hunk header: the file headers (---/+++) do not count.
      read -r added removed < <(awk '/^@@/{h=1; next} h && /^\+/{a++} h && /^-/{r++}
                                     END{print a+0, r+0}' "$patch")
      note=""
      printf '%s' "$result" | grep -q '"truncated": true' && note=" (answer cut off: review the end)"
      name=$(basename "$patch")
      name=${name//|/\\|}
      echo "| \`$shown\` | [$name](<$name>)$note | +$added / -$removed |" >> "$summary"
    fi
  else
    failed=1
    reason=$(tail -n 1 "$out/.stderr" | tr '|' '/')
    echo "| \`$shown\` | failed: ${reason} | |" >> "$summary"
  fi
done <"$changed"
rm -f "$out/.stderr" "$changed"
[ $((count + skipped)) -gt 0 ] || [ "$stopped" -eq 1 ] || echo "| (no changed files) | | |" >> "$summary"
cat "$summary"
exit "$failed"
