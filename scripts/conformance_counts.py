"""Count what the conformance suites ran, per model/pipeline class, for the README's conformance table.

    HF_HUB_OFFLINE=1 python scripts/conformance_counts.py

Runs tests/test_conformance_models.py and tests/test_conformance_pipelines.py under pytest with a JUnit XML
report (in a temporary folder) and prints, per suite: the classes, tests run, passed, failed, and the skips
grouped by reason (the first line of the skip message, with class names and numbers blanked so that the same
reason given for several classes counts once). Exits non-zero when a test failed.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

SUITES = {"models": "tests/test_conformance_models.py", "pipelines": "tests/test_conformance_pipelines.py"}


def _reason(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    first = re.sub(r"^(Skipped|unittest\.case\.SkipTest): ", "", first)
    first = re.sub(r"\b[A-Z][A-Za-z0-9]*(Model|Transformer|VQVAE|Pipeline)\b", "<class>", first)
    return re.sub(r"\d+", "N", first)[:160]


def count(report: Path, module: str) -> dict:
    classes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    reasons: collections.Counter = collections.Counter()
    for case in ET.parse(report).getroot().iter("testcase"):
        if not case.get("classname", "").startswith(f"tests.{module}"):
            continue
        name = case.get("classname", "").rsplit(".", 1)[-1]
        skipped, failed = case.find("skipped"), case.find("failure") or case.find("error")
        if failed is not None:
            classes[name]["failed"] += 1
        elif skipped is not None:
            classes[name]["skipped"] += 1
            reasons[_reason(skipped.get("message", "") or skipped.text or "")] += 1
        else:
            classes[name]["passed"] += 1
    return {"classes": classes, "reasons": reasons}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=25, help="skip reasons to list per suite (most frequent first)")
    parser.add_argument("--junitxml", type=Path, help="count an existing JUnit report of a run that included both "
                        "suites (e.g. the full test run) instead of running them")
    args = parser.parse_args(argv)
    failed_any = False
    with tempfile.TemporaryDirectory() as tmp:
        for suite, path in SUITES.items():
            report = args.junitxml or Path(tmp) / f"{suite}.xml"
            if args.junitxml is None:
                subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path,
                                f"--junitxml={report}"], stdout=subprocess.DEVNULL, check=False)
            result = count(report, Path(path).stem)
            totals = sum(result["classes"].values(), collections.Counter())
            failed_any |= bool(totals["failed"])
            print(f"## {suite} ({path}): {sum(totals.values())} run, {totals['passed']} passed, "
                  f"{totals['failed']} failed, {totals['skipped']} skipped")
            for name, counts in sorted(result["classes"].items()):
                print(f"- {name}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
            print("skip reasons:")
            for reason, n in result["reasons"].most_common(args.top):
                print(f"  {n:5d}  {reason}")
            print()
    return 1 if failed_any else 0


if __name__ == "__main__":
    raise SystemExit(main())
