"""Runs the harness with a slow oracle; the resume test starts it as a subprocess and kills it mid-run.

Usage: ``python slow_run.py DATA OUT DELAY_SECONDS [--resume]``; prints nothing, writes OUT.
"""

from __future__ import annotations

import sys
import time

from eval.harness import run_eval
from eval.judges import OfflineJudge
from eval.predictors import OraclePredictor


class SlowOracle(OraclePredictor):
    """The oracle, ``delay`` seconds per case, diagnosis and localisation only (fast to score)."""

    name = "slow-oracle"
    tasks = frozenset({"diagnosis", "localisation"})

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def predict_case(self, case_id, records, dataset):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        pred = super().predict_case(case_id, records, dataset)
        # a deterministic, not-always-right answer so that every metric has something to measure
        if int(case_id[-1]) % 3 == 0:
            pred.diagnoses = ["synthetic something else", *pred.diagnoses]
            pred.probabilities = [0.6, 0.4]
        return pred


def main(argv: list[str]) -> None:
    data, out, delay = argv[0], argv[1], float(argv[2])
    run_eval(
        data,
        out,
        SlowOracle(delay),
        judge=OfflineJudge(synonyms=[]),
        resume="--resume" in argv,
        n_resamples=200,
        report=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
