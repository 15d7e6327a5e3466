#!/usr/bin/python3
"""The tables of docs/results.md that come from a committed results bundle, generated or checked.

Usage: results_tables.py --check DOC    exit 1 when a generated block of DOC differs from its bundle
       results_tables.py --write DOC    rewrite every generated block of DOC from its bundle

A generated block sits between two marker lines naming its bundle (relative to DOC's folder):

  <!-- generated from results/quick/results.json by scripts/results_tables.py -->
  ...tables: the headline figures over seeds, every study number beside ours, the paired tests...
  <!-- end of generated tables -->

Every figure inside is printed from the bundle's results.json, so the check fails when a figure
in the document differs from the bundle, and `--write` is how the document follows a new bundle.
"""
import json
import re
import sys
from pathlib import Path

BEGIN = re.compile(r"^<!-- generated from (\S+) by scripts/results_tables.py -->$")
END = "<!-- end of generated tables -->"


def pct(v):
    return f"{100 * v:.2f}"


def num(v):
    if v is None:
        return "—"
    return f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4f}"


def tables(results):
    stats = results.get("statistics", {})
    boot = stats.get("bootstrap", {})
    out = [f"Profile `{results['profile']}`, executor {results['executor']}, {results['threads']} thread(s); "
           f"CPU `{results['provenance'].get('cpu', '?')}`, JIT target `{results['provenance'].get('jit_target', '?')}`"
           f" with vector width {results['provenance'].get('vector_width', '?')}.", ""]
    out += [f"Headline figures in percent: mean ± std over the seeds, and a {100 * boot.get('level', 0.95):.0f}% "
            f"bootstrap interval of that mean over the test images ({boot.get('resamples')} resamples, "
            f"generator seed {boot.get('seed')}).", ""]
    out += ["| experiment | quantity | seeds | mean ± std | 95% interval | study's | study's figure |",
            "|---|---|---|---|---|---|---|"]
    for f in stats.get("figures", []):
        study = f.get("study")
        verdict = "—" if study is None else ("within the interval" if f["study_within"] else "**outside it**")
        out.append(f"| {f['experiment']} | {f['quantity']} | {', '.join(map(str, f['seeds']))} | "
                   f"{pct(f['mean'])} ± {pct(f['std'])} | [{pct(f['interval'][0])}, {pct(f['interval'][1])}] | "
                   f"{'—' if study is None else pct(study)} | {verdict} |")
    out += ["", "Every number the study reports, beside ours (seed 42):", "",
            "| experiment | quantity | study's | ours | ours − study's |", "|---|---|---|---|---|"]
    for e in results["experiments"]:
        for n in e["study"]:
            ours = n["ours"]
            diff = "—" if ours is None else f"{ours - n['study']:+.4f}".replace(".0000", "")
            out.append(f"| {e['id']} | {n['label']} | {num(n['study'])} | {num(ours)} | {diff} |")
    out += ["", "McNemar's test on the same test images (only A: A right and B wrong):", "",
            "| experiment | seed | A | B | only A | only B | p |", "|---|---|---|---|---|---|---|"]
    for p in stats.get("pairs", []):
        p_text = "< 0.0001" if p["p_value"] < 1e-4 else f"{p['p_value']:.4f}"
        out.append(f"| {p['experiment']} | {p['seed']} | {p['a']} | {p['b']} | {p['only_a']} | {p['only_b']} | "
                   f"{p_text} |")
    return out


def regenerate(doc):
    lines = doc.read_text(encoding="utf-8").split("\n")
    out, i, blocks = [], 0, 0
    while i < len(lines):
        out.append(lines[i])
        begin = BEGIN.match(lines[i])
        i += 1
        if not begin:
            continue
        try:
            end = lines.index(END, i)
        except ValueError:
            sys.exit(f"{doc}: the block that starts at line {i} has no '{END}'")
        bundle = doc.parent / begin.group(1)
        if not bundle.is_file():
            sys.exit(f"{doc}: line {i}: no bundle {bundle}")
        out += [""] + tables(json.loads(bundle.read_text(encoding="utf-8"))) + ["", END]
        i = end + 1
        blocks += 1
    if blocks == 0:
        sys.exit(f"{doc}: no generated block (a line '<!-- generated from BUNDLE/results.json by "
                 "scripts/results_tables.py -->')")
    return "\n".join(out)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--check", "--write"):
        sys.exit(__doc__.strip().splitlines()[2])
    doc = Path(sys.argv[2])
    old, new = doc.read_text(encoding="utf-8"), regenerate(doc)
    if sys.argv[1] == "--write":
        doc.write_text(new, encoding="utf-8")
        return 0
    if old == new:
        print(f"{doc}: every generated table agrees with its bundle")
        return 0
    for n, (a, b) in enumerate(zip(old.split("\n"), new.split("\n")), 1):
        if a != b:
            print(f"{doc}:{n}: differs from the bundle\n  document: {a}\n  bundle:   {b}")
            break
    else:
        print(f"{doc}: differs from the bundle in length; run scripts/results_tables.py --write {doc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
