"""Choices that configs and commands share, named once in a module that imports nothing, so that a
dataclass default or a `--help` line can read them without loading torch.

The student names are keys of `tinyear.host.students.STUDENTS` (tests/test_students.py checks it).
"""

DEFAULT_STUDENT = "dscnn-m"
"""The student `tinyear distill` trains unless told otherwise: DS-CNN at the MLPerf Tiny size (23 k
parameters), the size of the shipped model."""

PIPELINE_STUDENT = "dscnn-s"
"""The student of `tinyear pipeline` (DS-CNN, 32 channels, 7.5 k parameters): smaller than
DEFAULT_STUDENT, as the pipeline has been since it was written; its numbers are in the README."""

DEFAULT_MAX_LATENCY_MS = 300.0
"""The longest median detection delay (after a word's end, on the validation stream) that calibration
chooses while a quicker choice meets the budget: issue 10's target. The smoothing window is most of
the delay: 700 ms of it put the 80-epoch bundles' median at 365-423 ms on the public stream
(docs/BENCHMARKS.md, "Eighty epochs")."""
