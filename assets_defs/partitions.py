"""One dynamic partition per raw subject and dataset; the discovery sensor adds them."""
from __future__ import annotations

import dagster as dg

facescape_subjects = dg.DynamicPartitionsDefinition(name="facescape_subjects")
thuman_subjects = dg.DynamicPartitionsDefinition(name="thuman_subjects")
SUBJECT_PARTITIONS = {"facescape": facescape_subjects, "thuman": thuman_subjects}
