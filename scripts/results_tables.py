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

The prose around the blocks is checked too (`--check` only): every figure written with two or more
decimals (0.8918, 89.18, -0.0005) must be one of the bundle's, as printed in its report.md (a
difference may be quoted without its sign) or, at that many decimals, a value of its results.json
(per-epoch histories and per-class arrays aside) or that value in percent. The bundle is the one
named by the last line above it of either form

  <!-- figures below from results/full -->
  <!-- generated from results/full/results.json by scripts/results_tables.py -->

and text between `<!-- unchecked: WHY -->` and `<!-- end unchecked -->` is left out (figures that
come from elsewhere, e.g. benchmarks, and say where). Under a heading that names experiments
("## E20: ...", "## E02-E06: ..."), a figure must be one of those experiments' (their sections of
the report and their rows of its statistics and summary tables, their runs and records in
results.json). Integers and one-decimal figures (sizes, counts, epochs) are not checked.
"""
import json
import os
import re
import sys
from pathlib import Path

BEGIN = re.compile(r"^<!-- generated from (\S+) by scripts/results_tables.py -->$")
END = "<!-- end of generated tables -->"
FIGURES_FROM = re.compile(r"^<!-- figures below from (\S+) -->$")
UNCHECKED = re.compile(r"^<!-- unchecked: .+ -->$")
UNCHECKED_END = "<!-- end unchecked -->"
# A figure with two or more decimals, not part of a longer token (a version, a date, a name).
FIGURE = re.compile(r"(?<![\w.])[-+−]?\d+\.\d{2,}(?![\w.])")


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
    out += ["| experiment | quantity | seeds | per seed | mean ± std | 95% interval | study's | study's figure |",
            "|---|---|---|---|---|---|---|---|"]
    for f in stats.get("figures", []):
        study = f.get("study")
        verdict = "—" if study is None else ("within the interval" if f["study_within"] else "**outside it**")
        out.append(f"| {f['experiment']} | {f['quantity']} | {', '.join(map(str, f['seeds']))} | "
                   f"{', '.join(pct(v) for v in f['values'])} | {pct(f['mean'])} ± {pct(f['std'])} | [{pct(f['interval'][0])}, {pct(f['interval'][1])}] | "
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
        try:
            generated = tables(json.loads(bundle.read_text(encoding="utf-8")))
        except (ValueError, KeyError, IndexError, TypeError) as err:  # not JSON, or not a bundle's fields
            sys.exit(f"{doc}: line {i}: {bundle} is not a results bundle's results.json "
                     f"({type(err).__name__}: {err})")
        out += [""] + generated + ["", END]
        i = end + 1
        blocks += 1
    if blocks == 0:
        sys.exit(f"{doc}: no generated block (a line '<!-- generated from BUNDLE/results.json by "
                 "scripts/results_tables.py -->')")
    return "\n".join(out)


SECTION_ID = re.compile(r"^## (E\d+b?) ")
HEADING_IDS = re.compile(r"E\d+b?(?:-E\d+b?)?")
ROW_ID = re.compile(r"^\| (E\d+b?) \|")


class Bundle:
    """The figures of one bundle folder: report.md's as printed, results.json's values, each by
    experiment, so that prose under an experiment's heading is checked against that experiment."""

    # Per-epoch histories and per-class arrays hold thousands of values: a figure one digit off
    # would too often be one of them by chance. The report prints what the prose may quote of them.
    SKIPPED = {"history", "confusion", "class_f1", "class_precision", "class_recall", "support"}

    def __init__(self, folder):
        report, results = folder / "report.md", folder / "results.json"
        if not report.is_file() or not results.is_file():
            raise FileNotFoundError(f"{folder} is not a results bundle (no report.md and results.json)")
        self.order, self.printed, self.values = [], {None: set()}, {None: []}
        section = None
        for line in report.read_text(encoding="utf-8").split("\n"):
            if line.startswith("## "):
                m = SECTION_ID.match(line)
                section = m.group(1) if m else None
                if section:
                    self.order.append(section)
                    self.printed.setdefault(section, set())
            # A row of the sections of no experiment (statistics, summary) that names one is its.
            row = ROW_ID.match(line) if section is None else None
            owner = row.group(1) if row else section
            self.printed.setdefault(owner, set()).update(f.replace("−", "-") for f in FIGURE.findall(line))
        data = json.loads(results.read_text(encoding="utf-8"))
        for key, v in data.items():
            if key not in ("runs", "experiments"):
                self._collect(v, self.values[None])
        runs = data.get("runs", {})
        for e in data.get("experiments", []):  # with every run it declares, also one trained for another
            into = self.values.setdefault(e["id"], [])
            self._collect(e, into)
            for key in e.get("runs", []):
                self._collect(runs.get(key), into)

    def _collect(self, node, into):
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in self.SKIPPED:
                    self._collect(v, into)
        elif isinstance(node, list):
            for v in node:
                self._collect(v, into)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            into.append(float(node))

    def experiments(self, heading):
        """The experiments a document heading names ("E20", "E02-E06", "E13-E14"); [] for none."""
        ids = []
        for item in HEADING_IDS.findall(heading):
            first, _, last = item.partition("-")
            if last and first in self.order and last in self.order:
                ids += self.order[self.order.index(first):self.order.index(last) + 1]
            else:
                ids += [first] + ([last] if last else [])
        return ids

    def has(self, figure, ids):
        """Whether `figure` is the bundle's: of experiments `ids` (their sections, their rows of
        the statistics and summary, their records), or anywhere in it when there are none."""
        figure = figure.replace("−", "-").lstrip("+")
        scopes = ids or list(set(self.printed) | set(self.values))
        printed = set().union(*(self.printed.get(k, set()) for k in scopes))
        # A difference may be quoted by its size ("0.0004 under the study's"): either sign counts.
        if {figure, "+" + figure, "-" + figure} & printed:
            return True
        decimals = len(figure.split(".")[1])
        return any(f"{v:.{decimals}f}" == figure or f"{100 * v:.{decimals}f}" == figure
                   for k in scopes for v in self.values.get(k, []))


def unmatched_figures(doc):
    """Lines 'DOC:N: FIGURE ...' for every prose figure of `doc` that its bundle lacks."""
    problems, bundles, bundle, unchecked, generated, heading = [], {}, None, False, False, ""
    for n, line in enumerate(doc.read_text(encoding="utf-8").split("\n"), 1):
        begin, figures_from = BEGIN.match(line), FIGURES_FROM.match(line)
        if begin or figures_from:
            name = str(Path(begin.group(1)).parent) if begin else figures_from.group(1).rstrip("/")
            if name not in bundles:
                try:
                    bundles[name] = Bundle(doc.parent / name)
                except FileNotFoundError as e:
                    problems.append(f"{doc}:{n}: {e}")
                    bundles[name] = None
            bundle, generated = bundles[name], bool(begin)
            continue
        if line == END:
            generated = False
        elif UNCHECKED.match(line):
            unchecked = True
        elif line == UNCHECKED_END:
            unchecked = False
        elif line.startswith("## "):
            heading = line
        if generated or unchecked:
            continue
        for figure in FIGURE.findall(line):
            if bundle is None:
                problems.append(f"{doc}:{n}: {figure}: no bundle named above it "
                                "(a line '<!-- figures below from results/NAME -->')")
                continue
            ids = bundle.experiments(heading)
            if not bundle.has(figure, ids):
                name = next(k for k, v in bundles.items() if v is bundle)
                where = f"{', '.join(ids)} of {name}" if ids else name
                problems.append(f"{doc}:{n}: {figure} is not a figure of {where} (its report.md or results.json)")
    return problems


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--check", "--write"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    doc = Path(sys.argv[2])
    if not doc.is_file():
        sys.exit(f"{doc}: no such file")
    old, new = doc.read_text(encoding="utf-8"), regenerate(doc)
    if sys.argv[1] == "--write":
        partial = doc.with_name(doc.name + ".partial")  # replaced whole, never left half-written
        partial.write_text(new, encoding="utf-8")
        os.replace(partial, doc)
        return 0
    if old == new:
        problems = unmatched_figures(doc)
        for p in problems:
            print(p)
        if problems:
            return 1
        print(f"{doc}: every generated table agrees with its bundle, and every figure of the prose is the bundle's")
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
