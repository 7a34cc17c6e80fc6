#!/usr/bin/env bash
# Ask tether for a change to each file a branch changed, and write the suggestions as
# patches for review: never applied, never committed. Works in any CI or shell.
#
#   deploy/ci/suggest.sh BASE "INSTRUCTION" OUT_DIR [MAX_FILES]
#
# BASE: the revision to compare with (e.g. origin/main); every file added or modified
# since then gets one `tether suggest` run. OUT_DIR receives one .patch per file that the
# model proposed changing (with its reproducibility manifest) and summary.md, a Markdown
# table of what was suggested. Set TETHER_SERVER (and TETHER_TOKEN) to use a running
# server instead of the embedded model; TETHER_SUGGEST_ARGS adds options such as
# "--max-tokens 2048". Exit status: 0 when every file was handled (with or without a
# suggestion), 1 when some run failed, 2 on bad arguments.
set -uo pipefail

if [ $# -lt 3 ] || [ -z "$2" ]; then
  echo "usage: $0 BASE INSTRUCTION OUT_DIR [MAX_FILES]" >&2
  exit 2
fi
base=$1 instruction=$2 out=$3 max_files=${4:-20}
if ! git rev-parse --verify --quiet "${base}^{commit}" >/dev/null; then
  echo "error: $base is not a revision here; fetch it first (git fetch origin ...)" >&2
  exit 2
fi
mkdir -p "$out"
summary="$out/summary.md"
{
  echo "### tether suggestions"
  echo
  echo "Instruction: ${instruction}"
  echo
  echo "| file | result | lines added / removed |"
  echo "|---|---|---|"
} > "$summary"

failed=0 count=0
# NUL-separated, so that any file name is safe; only files that still exist.
while IFS= read -r -d '' file; do
  [ -f "$file" ] || continue
  if [ "$count" -ge "$max_files" ]; then
    echo "| … | stopped after $max_files files | |" >> "$summary"
    break
  fi
  count=$((count + 1))
  patch="$out/$(printf '%s' "$file" | tr '/' '_').patch"
  # shellcheck disable=SC2086  # TETHER_SUGGEST_ARGS is a list of options
  if result=$(tether suggest "$file" -i "$instruction" -o "$patch" --json ${TETHER_SUGGEST_ARGS:-} 2>"$out/.stderr"); then
    if printf '%s' "$result" | grep -q '"patch": null'; then
      echo "| \`$file\` | no change proposed | |" >> "$summary"
    else
      # Lines after the first hunk header: the file headers (---/+++) do not count.
      read -r added removed < <(awk '/^@@/{h=1; next} h && /^\+/{a++} h && /^-/{r++}
                                     END{print a+0, r+0}' "$patch")
      note=""
      printf '%s' "$result" | grep -q '"truncated": true' && note=" (answer cut off: review the end)"
      echo "| \`$file\` | [$(basename "$patch")](<$(basename "$patch")>)$note | +$added / -$removed |" >> "$summary"
    fi
  else
    failed=1
    reason=$(tail -n 1 "$out/.stderr" | tr '|' '/')
    echo "| \`$file\` | failed: ${reason} | |" >> "$summary"
  fi
done < <(git diff -z --name-only --diff-filter=AM "${base}...HEAD" --)
rm -f "$out/.stderr"
[ "$count" -gt 0 ] || echo "| (no changed files) | | |" >> "$summary"
cat "$summary"
exit "$failed"
