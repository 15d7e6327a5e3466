#!/bin/bash
# scripts/results_tables.py --check must fail on a prose figure that is not the bundle's, on one of
# another experiment than its section's, and on a generated table edited by hand, and pass on the document as committed. Usage: SCRIPT DOCS_DIR
set -u
script=$1 docs=$(realpath "$2")
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
ln -s "$docs/results" "$work/results"
cp "$docs/results.md" "$work/results.md"
/usr/bin/python3 "$script" --check "$work/results.md" > /dev/null || { echo "FAIL: the committed document"; exit 1; }

# A figure of the prose, one digit off (E20's test accuracy as the summary quotes it).
sed 's/| E20 | the tuned CNN | 0.9268 | 0.9269 |/| E20 | the tuned CNN | 0.9268 | 0.9263 |/' "$docs/results.md" > "$work/results.md"
cmp -s "$docs/results.md" "$work/results.md" && { echo "FAIL: the edit found nothing to change"; exit 1; }
out=$(/usr/bin/python3 "$script" --check "$work/results.md") && { echo "FAIL: a wrong prose figure passed"; exit 1; }
grep -q "0.9263 is not a figure of results/full" <<< "$out" || { echo "FAIL: unexpected message: $out"; exit 1; }

# A figure of another experiment under E11's heading (E21's test accuracy for the bn model's last validation loss).
sed 's/(0.3075 at its best, 0.3442 at its last)/(0.3075 at its best, 0.9301 at its last)/' "$docs/results.md" > "$work/results.md"
cmp -s "$docs/results.md" "$work/results.md" && { echo "FAIL: the E11 edit found nothing to change"; exit 1; }
out=$(/usr/bin/python3 "$script" --check "$work/results.md") && { echo "FAIL: another experiment's figure passed"; exit 1; }
grep -q "0.9301 is not a figure of E11 of results/full" <<< "$out" || { echo "FAIL: unexpected message: $out"; exit 1; }

# A generated table edited by hand (the seeds profile's mean of E10).
sed 's/| E10 | test accuracy | 42, 1, 2 | 88.70, 88.67, 87.99 | 88.45 ± 0.40/| E10 | test accuracy | 42, 1, 2 | 88.70, 88.67, 87.99 | 88.46 ± 0.40/' "$docs/results.md" > "$work/results.md"
cmp -s "$docs/results.md" "$work/results.md" && { echo "FAIL: the table edit found nothing to change"; exit 1; }
out=$(/usr/bin/python3 "$script" --check "$work/results.md") && { echo "FAIL: an edited table passed"; exit 1; }
grep -q "differs from the bundle" <<< "$out" || { echo "FAIL: unexpected message: $out"; exit 1; }
# A bundle that is not one (cut short; a figure without its per-seed values): one line naming
# it, exit 1, and --write leaves the document as it was.
mkdir -p "$work/bad/results/x"
printf '<!-- generated from results/x/results.json by scripts/results_tables.py -->\n<!-- end of generated tables -->\n' > "$work/bad/r.md"
cp "$work/bad/r.md" "$work/bad/r.md.orig"
echo '{' > "$work/bad/results/x/results.json"
out=$(/usr/bin/python3 "$script" --write "$work/bad/r.md" 2>&1); status=$?
[ $status -eq 1 ] && [ "$(wc -l <<< "$out")" -eq 1 ] && grep -q "is not a results bundle's results.json (JSONDecodeError" <<< "$out" \
  || { echo "FAIL: a cut-short results.json: $status $out"; exit 1; }
cmp -s "$work/bad/r.md" "$work/bad/r.md.orig" || { echo "FAIL: --write changed the document on a bad bundle"; exit 1; }
/usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); del r["statistics"]["figures"][0]["values"]; json.dump(r, open(sys.argv[2], "w"))' \
  "$docs/results/seeds/results.json" "$work/bad/results/x/results.json"
out=$(/usr/bin/python3 "$script" --check "$work/bad/r.md" 2>&1); status=$?
[ $status -eq 1 ] && grep -q "is not a results bundle's results.json (KeyError: 'values')" <<< "$out" \
  || { echo "FAIL: a figure without values: $status $out"; exit 1; }
# No such document: one line naming it, exit 1; no arguments: the usage, exit 2.
out=$(/usr/bin/python3 "$script" --check "$work/missing.md" 2>&1); status=$?
[ $status -eq 1 ] && [ "$out" = "$work/missing.md: no such file" ] || { echo "FAIL: missing document: $status $out"; exit 1; }
/usr/bin/python3 "$script" > /dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: usage did not exit 2"; exit 1; }
echo "ok"
