"""How long a fresh instance takes to settle the whole graph under the Dagster daemon alone, and what it built.

A new DAGSTER_HOME and data root in a temporary folder, MORPHABLE_SENSORS=on, `dagster-daemon run` on the code
location, nothing launched by hand: the discovery sensor adds partitions, the automation sensor requests what the
conditions say. The graph has settled when no run is queued or in flight for `--quiet` seconds (longer than both
sensors' intervals). Prints one JSON object: seconds from the daemon's start to the last run's end, runs by status,
every failed run with its first error, materializations per asset, the comparison table's rows, and (with
`--against` a make-demo comparison.parquet) whether the rows and values agree.

    .venv/bin/python benchmarks/daemon_settle.py [--timeout 3600] [--against .morphable/store/metrics/comparison.parquet]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

IN_FLIGHT = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}


def _first_error(instance, run_id: str) -> str:
    import dagster as dg

    for kind in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for entry in instance.all_logs(run_id, of_type=kind):
            data = entry.dagster_event.event_specific_data
            error = getattr(data, "error", None)
            return (error.message if error is not None else entry.message or "")[:400].strip()
    return ""


def _materialized(instance, runs) -> Counter:
    import dagster as dg

    counts: Counter = Counter()
    for run in runs:
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            counts["/".join(entry.dagster_event.asset_key.path)] += 1
    return counts


def _compare(ours, against_path: Path) -> dict:
    import pandas as pd

    theirs = pd.read_parquet(against_path)
    keys = [c for c in ("experiment", "dataset", "protocol") if c in ours.columns and c in theirs.columns]
    a, b = ours.set_index(keys).sort_index(), theirs.set_index(keys).sort_index()
    same_rows = list(a.index) == list(b.index)
    numeric = [c for c in a.columns if c in b.columns and pd.api.types.is_numeric_dtype(a[c])]
    text = [c for c in a.columns if c in b.columns and c not in numeric]
    diff, text_differs = {}, []
    if same_rows:
        for c in numeric:
            d = (a[c] - b[c]).abs()
            diff[c] = float(d.max()) if d.notna().any() else 0.0
        text_differs = [c for c in text if not a[c].fillna("").astype(str).equals(b[c].fillna("").astype(str))]
    return {"against": str(against_path), "same_rows": same_rows, "rows": len(a), "rows_against": len(b),
            "max_abs_difference": diff, "largest_difference": max(diff.values(), default=None),
            "text_columns_that_differ": text_differs}  # e.g. checkpoint_hash: a retrained model


def _report(instance, tmp: Path, settled: bool | None, wall: float | None, against: Path | None) -> dict:
    """What the instance in `tmp` holds: runs, failures, materializations, the comparison (vs `against`)."""
    runs = instance.get_runs()
    ends = [r for r in (instance.get_run_record_by_id(x.run_id) for x in runs) if r and r.end_time]
    last_end = max((r.end_time for r in ends), default=None)
    first_create = min((r.create_timestamp.timestamp() for r in ends), default=None)
    report = {
        "settled": settled,
        "seconds_first_run_to_last_end": round(last_end - first_create, 1) if last_end and first_create else None,
        "wall_seconds": round(wall, 1) if wall else None,
        "runs": dict(Counter(r.status.value for r in runs)),
        "failed": [{"job": r.job_name, "run_id": r.run_id, "tags": {k: v for k, v in r.tags.items()
                                                                    if k.startswith("dagster/partition")},
                    "error": _first_error(instance, r.run_id)} for r in runs if r.status.value == "FAILURE"],
        "materializations": dict(sorted(_materialized(instance, runs).items())),
        "cpu": os.cpu_count(),
    }
    comparison = tmp / "data" / "store" / "metrics" / "comparison.parquet"
    if comparison.exists():
        import pandas as pd

        table = pd.read_parquet(comparison)
        report["comparison_rows"] = len(table)
        report["comparison"] = table.round(4).to_dict(orient="records")
        if against:
            report["against"] = _compare(table, against)
    else:
        report["comparison_rows"] = 0
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    p.add_argument("--quiet", type=float, default=240, help="settled after this long with nothing queued or running")
    p.add_argument("--poll", type=float, default=10)
    p.add_argument("--against", type=Path, help="a make-demo metrics/comparison.parquet to compare the rows with")
    p.add_argument("--keep", action="store_true", help="keep the temporary instance and data root")
    p.add_argument("--report", type=Path, help="only report on the kept folder of an earlier run")
    args = p.parse_args()
    if args.report:
        os.environ.update(DAGSTER_HOME=str(args.report / "home"))
        import dagster as dg

        print(json.dumps(_report(dg.DagsterInstance.get(), args.report, None, None, args.against), indent=1,
                         default=str))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="daemon-settle-"))
    os.environ.update(DAGSTER_HOME=str(tmp / "home"), MORPHABLE_DATA_ROOT=str(tmp / "data"), MORPHABLE_SENSORS="on")
    os.environ.pop("MORPHABLE_SETTINGS", None)
    from assets_defs.instance import get_instance

    instance = get_instance()  # DAGSTER_HOME with the project's dagster.yaml, pools sized
    daemon_bin = Path(sys.executable).parent / "dagster-daemon"
    log = open(tmp / "daemon.log", "w")
    start = time.monotonic()
    daemon = subprocess.Popen([str(daemon_bin), "run", "-m", "assets_defs.definitions"], cwd=REPO, stdout=log,
                              stderr=subprocess.STDOUT, env=os.environ.copy())
    quiet_since, last_summary = None, ""
    try:
        while True:
            time.sleep(args.poll)
            elapsed = time.monotonic() - start
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited ({daemon.returncode}); see {tmp / 'daemon.log'}")
            runs = instance.get_runs()
            status = Counter(r.status.value for r in runs)
            flying = sum(v for k, v in status.items() if k in IN_FLIGHT)
            summary = (", ".join(f"{v} {k.lower()}" for k, v in sorted(status.items())) + "  in flight: "
                       + ", ".join(sorted({r.job_name for r in runs if r.status.value in IN_FLIGHT})))
            if summary != last_summary:
                print(f"[daemon-settle] {elapsed:6.0f} s  runs: {summary}", file=sys.stderr, flush=True)
                last_summary = summary
            if runs and flying == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= args.quiet:
                    break
            else:
                quiet_since = None
            if elapsed > args.timeout:
                print(f"[daemon-settle] timed out after {elapsed:.0f} s", file=sys.stderr)
                break
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()

    report = _report(instance, tmp, quiet_since is not None, time.monotonic() - start, args.against)
    report["tmp"] = str(tmp) if args.keep else None
    print(json.dumps(report, indent=1, default=str))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if report["settled"] and not report["failed"] and report["comparison_rows"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
