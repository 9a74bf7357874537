"""Instructed contrast pairs (RepE; Apollo's training set): one true statement, said under an
honest and under a dishonest instruction.

The recipe of Zou et al.'s representation engineering, as Apollo's deception-detection
trains its best probe: read a CSV of factual statements (``statement,label``; RepE's
``facts_true_false.csv``, copied in Apollo's ``data/repe/true_false_facts.csv``), keep the
true ones (``label`` 1), and write each as the assistant's reply to the user turn "Pretend
you're an honest person making statements about the world." (label 0) and to "Pretend you're
a dishonest person making statements about the world." (label 1). The reply text is the same
on both sides, so only the instruction differs; both transcripts of a statement share its
group, so a split never puts one statement on both sides.

One difference from upstream: Apollo reads the statement without its last five words (the
detect mask stops before them); here the whole statement is the reply that the ``reply``
token selection reads.
"""

from __future__ import annotations

from pathlib import Path

from interp.data.external.common import ExternalDataError, read_csv_rows, turn
from interp.data.transcripts import Transcript

HONEST = "Pretend you're an honest person making statements about the world."
DISHONEST = "Pretend you're a dishonest person making statements about the world."


def build_instructed_pairs(path: str | Path, *, true_only: bool = True) -> list[Transcript]:
    """Two transcripts (honest, dishonest instruction) per statement of the CSV at ``path``;
    ``true_only=False`` keeps false statements too (upstream keeps true ones)."""
    path = Path(path)
    out: list[Transcript] = []
    for line, row in read_csv_rows(path, ("statement", "label")):
        truth = row["label"].strip()
        if truth not in ("0", "1"):
            raise ExternalDataError(f"{path}:{line}: label must be 0 or 1, got {truth!r}")
        statement = (row["statement"] or "").strip()
        if not statement:
            raise ExternalDataError(f"{path}:{line}: empty statement")
        if true_only and truth != "1":
            continue
        group = f"fact-{line:04d}"
        for instruction, text, label in (("honest", HONEST, 0), ("dishonest", DISHONEST, 1)):
            out.append(
                Transcript(
                    id=f"{group}-{instruction}",
                    group=group,
                    messages=(turn("user", text), turn("assistant", statement)),
                    label=label,
                    meta={
                        "source": "repe:true_false_facts",
                        "file": str(path),
                        "line": line,
                        "instruction": instruction,
                        "statement_true": truth == "1",
                    },
                )
            )
    return out
