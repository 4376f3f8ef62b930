#!/usr/bin/env python3
"""The Autobahn results table, and the verdict.

Run: scripts/autobahn/summary.py --out target/autobahn --expect 301 \
         --suite 'Autobahn|Testsuite 25.10.1' tokio mio may threads

Reads each lab's report, OUT/<lab>/index.json (written by `wstest -m
fuzzingclient`), and OUT/<lab>/wall_seconds when scripts/autobahn/run.sh left
one; writes OUT/summary.md (lab x outcome counts) and OUT/summary.json, and
prints the table. Exits 1 unless every lab has a report of exactly --expect
cases, each with a behavior and a close behavior that is OK, NON-STRICT or
INFORMATIONAL.

A case counts once, under the worse of its two behaviors: FAILED if either is
anything else (FAILED, WRONG CODE, UNCLEAN, UNIMPLEMENTED, ...), else
NON-STRICT if either is NON-STRICT, else INFO if either is INFORMATIONAL,
else OK.
"""
import argparse
import json
import os
import sys

ACCEPTED = ("OK", "NON-STRICT", "INFORMATIONAL")
OUTCOMES = ("OK", "NON-STRICT", "INFO", "FAILED")


def outcome(case):
    behaviors = (case.get("behavior"), case.get("behaviorClose"))
    if any(b not in ACCEPTED for b in behaviors):
        return "FAILED"
    if "NON-STRICT" in behaviors:
        return "NON-STRICT"
    if "INFORMATIONAL" in behaviors:
        return "INFO"
    return "OK"


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def read_lab(out, lab, expect):
    """One lab's row: counts, the cases that are not OK, and what is wrong."""
    row = {"lab": lab, "cases": None, "counts": dict.fromkeys(OUTCOMES, 0),
           "not_ok": {}, "wall_seconds": None, "problems": []}
    try:
        with open(os.path.join(out, lab, "wall_seconds")) as f:
            row["wall_seconds"] = round(float(f.read()), 1)
    except (OSError, ValueError):
        pass
    path = os.path.join(out, lab, "index.json")
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        row["problems"].append("no readable report %s (%s)" % (path, e))
        return row
    # index.json: {agent: {case id: {behavior, behaviorClose, duration, reportfile, ...}}}
    if list(index) != [lab]:
        row["problems"].append("report is for agents %s, not %s" % (sorted(index), lab))
        return row
    cases = index[lab]
    row["cases"] = len(cases)
    if len(cases) != expect:
        row["problems"].append("%d cases run, %d expected" % (len(cases), expect))
    for case_id in sorted(cases, key=case_key):
        case = cases[case_id]
        kind = outcome(case)
        row["counts"][kind] += 1
        if kind != "OK":
            row["not_ok"].setdefault(kind, []).append(case_id)
        if kind == "FAILED":
            detail = "case %s: behavior %s, close %s" % (
                case_id, case.get("behavior"), case.get("behaviorClose"))
            try:
                with open(os.path.join(out, lab, case["reportfile"])) as f:
                    report = json.load(f)
                detail += ": %s / %s" % (report.get("result"), report.get("resultClose"))
            except (OSError, ValueError, KeyError):
                pass
            row["problems"].append(detail)
    return row


def markdown(rows, suite, expect):
    lines = [
        "| lab | cases | OK | NON-STRICT | INFO | FAILED |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        c = row["counts"]
        if row["cases"] is None:
            lines.append("| %s | no report | - | - | - | - |" % row["lab"])
            continue
        lines.append("| %s | %d | %d | %d | %d | %d |" % (
            row["lab"], row["cases"], c["OK"], c["NON-STRICT"], c["INFO"], c["FAILED"]))
    notes = []
    for row in rows:
        parts = ["%s %s" % (kind, ", ".join(row["not_ok"][kind]))
                 for kind in OUTCOMES if kind in row["not_ok"]]
        if parts:
            notes.append("- %s: %s" % (row["lab"], "; ".join(parts)))
    head = ("%s, `wstest -m fuzzingclient` against each lab's `/echo`: cases 1.* to 10.* "
            "(%d cases; 12.* and 13.*, permessage-deflate, not run: the labs do not "
            "negotiate it). A case counts under the worse of its behavior and its close "
            "behavior." % (suite, expect))
    text = head + "\n\n" + "\n".join(lines) + "\n"
    if notes:
        text += "\nThe cases that are not OK:\n\n" + "\n".join(notes) + "\n"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory with one report directory per lab")
    parser.add_argument("--expect", type=int, required=True, help="cases every lab must have run")
    parser.add_argument("--suite", default="Autobahn|Testsuite", help="the testsuite and its version")
    parser.add_argument("labs", nargs="+")
    args = parser.parse_args()

    rows = [read_lab(args.out, lab, args.expect) for lab in args.labs]
    text = markdown(rows, args.suite, args.expect)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    passed = all(not row["problems"] for row in rows)
    document = {
        "suite": args.suite,
        "cases": "1.* to 10.*",
        "expected_cases": args.expect,
        "passed": passed,
        "labs": [{
            "lab": row["lab"],
            "cases": row["cases"],
            "ok": row["counts"]["OK"],
            "non_strict": row["counts"]["NON-STRICT"],
            "info": row["counts"]["INFO"],
            "failed": row["counts"]["FAILED"],
            "not_ok": row["not_ok"],
            "wall_seconds": row["wall_seconds"],
            "problems": row["problems"],
        } for row in rows],
    }
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")

    print(text, end="")
    for row in rows:
        for problem in row["problems"][:20]:
            print("autobahn: FAILED: %s: %s" % (row["lab"], problem), file=sys.stderr)
        if len(row["problems"]) > 20:
            print("autobahn: FAILED: %s: ... %d more (see summary.json)"
                  % (row["lab"], len(row["problems"]) - 20), file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
