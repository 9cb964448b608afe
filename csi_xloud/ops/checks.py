"""What a doctor check finds, and how a run of checks is printed and judged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO


class Outcome(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: what was checked, what was found and, when it is not ok, what to do."""

    check: str
    outcome: Outcome
    detail: str
    fix: str = ""

    def line(self) -> str:
        """`fail  auth          <detail> -- fix: <fix>` on one line."""
        text = f"{self.outcome.value:<5} {self.check:<22} {self.detail}"
        return f"{text} -- fix: {self.fix}" if self.fix and self.outcome is not Outcome.OK else text


def ok(check: str, detail: str) -> Finding:
    return Finding(check, Outcome.OK, detail)


def warn(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, Outcome.WARN, detail, fix)


def fail(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, Outcome.FAIL, detail, fix)


def failed(findings: Iterable[Finding]) -> bool:
    """Whether any check failed (a warning alone does not fail the run)."""
    return any(f.outcome is Outcome.FAIL for f in findings)


def write_report(findings: Sequence[Finding], out: TextIO) -> None:
    """One line per check, then a summary line with the counts."""
    for finding in findings:
        out.write(finding.line() + "\n")
    counts = {outcome: sum(f.outcome is outcome for f in findings) for outcome in Outcome}
    summary = ", ".join(f"{counts[o]} {o.value}" for o in Outcome)
    verdict = "FAILED" if counts[Outcome.FAIL] else "passed"
    out.write(f"doctor {verdict}: {summary}\n")
