"""Dagster at dataset scale: the project's definitions on an instance holding every FaceScape (359) and THuman 2.1
(2,445) subject as dynamic partitions, with their materialization history.

In a temporary DAGSTER_HOME (SQLite, or with `--postgres` a throw-away PostgreSQL server on loopback) and a raw tree
with the real datasets' subject folders and file counts (FaceScape: 20 expressions x `--views` images + params.json;
THuman: scan, material, texture, SMPL-X fit and mesh; the files are a few bytes each, so hashing costs what stat and
the hash cache cost, not reading terabytes), it times:

* the `discovery` sensor: the first tick (2,804 new partitions, every file hashed once), a tick with nothing changed,
  a tick after one subject's file changed (goal: a tick < 10 s);
* one evaluation of every automation condition (`dagster.evaluate_automation_conditions`, what the daemon and
  `morphable demo` run), with every subject observed and its per-subject assets materialized (goal < 30 s);
* the GraphQL queries behind an asset's partition page (`PartitionHealthQuery` as the installed UI sends it, read from
  dagster-webserver's bundle; and one partition's materializations), through the webserver's own GraphQL schema
  (goal < 2 s).
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FACESCAPE_SUBJECTS, THUMAN_SUBJECTS = 359, 2445


def write_raw_tree(root: Path, facescape: int, thuman: int, expressions: int, views: int) -> int:
    """Subject folders with the real datasets' layouts and file counts; returns the number of files."""
    from pipelines.demo_data import FACESCAPE_EXPRESSION_TABLE

    n = 0
    exprs = list(FACESCAPE_EXPRESSION_TABLE)[:expressions]
    for sid in range(1, facescape + 1):
        for expr in exprs:
            d = root / "facescape" / str(sid) / expr
            d.mkdir(parents=True)
            for v in range(views):
                (d / f"{v}.jpg").write_bytes(f"{sid}/{expr}/{v}".encode())
            (d / "params.json").write_text("{}")
            n += views + 1
    for uid in range(thuman):
        u = f"{uid:04d}"
        scan, fit = root / "thuman" / "model" / u, root / "thuman" / "smplx" / u
        scan.mkdir(parents=True)
        fit.mkdir(parents=True)
        for path in (scan / f"{u}.obj", scan / "material0.mtl", scan / "material0.jpeg", fit / "smplx_param.pkl",
                     fit / "mesh_smplx.obj"):
            path.write_bytes(f"{path.name}/{u}".encode())
            n += 1
    return n


def write_history(instance, defs, datasets: dict[str, str]) -> int:
    """Every subject observed and every per-subject asset materialized once (runless events, as a finished
    preprocessing of the whole dataset leaves them); returns the number of events."""
    import dagster as dg

    from assets_defs.partitions import SUBJECT_PARTITIONS

    graph = defs.resolve_asset_graph()
    events = 0
    for dataset, pdef in SUBJECT_PARTITIONS.items():
        keys = [k for k in graph.get_all_asset_keys() if k.path[0] == dataset and graph.get(k).is_materializable
                and graph.get(k).partitions_def == pdef]
        for subject in instance.get_dynamic_partitions(pdef.name):
            instance.report_runless_asset_event(dg.AssetObservation(
                dg.AssetKey([dataset, "raw_subject"]), partition=subject,
                tags={"dagster/data_version": datasets.get(f"{dataset}/{subject}", "v1")}))
            for key in keys:
                instance.report_runless_asset_event(dg.AssetMaterialization(
                    key, partition=subject, tags={"dagster/data_version": f"{subject}-1", "dagster/code_version": "1"}))
            events += 1 + len(keys)
    return events


def ui_query(name: str) -> str:
    """A GraphQL query exactly as the installed Dagster UI sends it (from dagster-webserver's JS bundle)."""
    import dagster_webserver

    build = Path(dagster_webserver.__file__).parent / "webapp" / "build"
    pattern = re.compile(r'"(\\n\s*query ' + name + r'\(.*?)"', re.S)
    for js in sorted(build.rglob("*.js")):
        text = js.read_text(errors="ignore")
        if f"query {name}(" in text:
            match = pattern.search(text)
            if match:
                return json.loads(f'"{match.group(1)}"')
    raise SystemExit(f"query {name} not found in {build}: is dagster-webserver installed?")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--facescape", type=int, default=FACESCAPE_SUBJECTS)
    ap.add_argument("--thuman", type=int, default=THUMAN_SUBJECTS)
    ap.add_argument("--expressions", type=int, default=20)
    ap.add_argument("--views", type=int, default=60, help="images per FaceScape expression")
    ap.add_argument("--postgres", action="store_true", help="instance storage in a throw-away PostgreSQL server")
    args = ap.parse_args()

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="morphable-bench-dagster-")))
        os.environ.update({"DAGSTER_HOME": str(tmp / "home"), "MORPHABLE_SYNTHETIC_ROOT": str(tmp / "raw"),
                           "MORPHABLE_DATA_ROOT": str(tmp / "data")})
        os.environ.pop("MORPHABLE_SETTINGS", None)
        result: dict = {"subjects": {"facescape": args.facescape, "thuman": args.thuman},
                        "storage": "postgres (loopback)" if args.postgres else "sqlite"}
        files, result["raw_tree_seconds"] = timed(lambda: write_raw_tree(tmp / "raw", args.facescape, args.thuman,
                                                                         args.expressions, args.views))
        result["raw_files"] = files

        from assets_defs.instance import prepare_home

        home = prepare_home(tmp / "home")
        if args.postgres:
            import yaml

            from assets_defs.local_postgres import throwaway_postgres

            port = stack.enter_context(throwaway_postgres())
            cfg = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
            cfg.pop("storage", None)
            cfg["storage"] = {"postgres": {"postgres_db": {  # (the scheme as in deploy/cluster/dagster.yaml)
                "username": "dagster", "password": "", "hostname": "127.0.0.1", "db_name": "dagster", "port": port,
                "scheme": "postgresql+psycopg2"}}}
            (home / "dagster.yaml").write_text(yaml.safe_dump(cfg))
        import dagster as dg

        from assets_defs.definitions import defs

        instance = stack.enter_context(dg.DagsterInstance.get())
        sensor = defs.resolve_sensor_def("discovery")
        resources = {"settings": defs.resources["settings"]}

        def tick(cursor):
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            res = sensor(ctx)
            return ctx.cursor, res

        (cursor, first), result["sensor_first_tick_seconds"] = timed(lambda: tick(None))
        result["partitions"] = {p: len(instance.get_dynamic_partitions(p))
                                for p in ("facescape_subjects", "thuman_subjects")}
        (cursor, _), result["sensor_unchanged_tick_seconds"] = timed(lambda: tick(cursor))
        changed = tmp / "raw" / "facescape" / "1" / next(iter(sorted(os.listdir(tmp / "raw" / "facescape" / "1"))))
        (changed / "0.jpg").write_bytes(b"changed")
        (cursor, third), result["sensor_one_changed_tick_seconds"] = timed(lambda: tick(cursor))
        result["one_changed_run_requests"] = len(third.run_requests or [])

        events, result["history_seconds"] = timed(lambda: write_history(instance, defs, {}))
        result["history_events"] = events
        (evaluation, result["automation_first_evaluation_seconds"]) = timed(
            lambda: dg.evaluate_automation_conditions(defs, instance))
        result["automation_requested"] = evaluation.total_requested
        result["automation_requested_assets"] = {
            "/".join(k.path): n for k in defs.resolve_asset_graph().get_all_asset_keys()
            if (n := evaluation.get_num_requested(k))}
        (_, result["automation_next_evaluation_seconds"]) = timed(
            lambda: dg.evaluate_automation_conditions(defs, instance, cursor=evaluation.cursor))

        from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

        context = stack.enter_context(define_out_of_process_context(str(REPO / "assets_defs" / "definitions.py"),
                                                                    "defs", instance))
        health = ui_query("PartitionHealthQuery")
        pages = {}
        for key in (["facescape", "flame", "views"], ["thuman", "smplx", "views"]):
            res, seconds = timed(lambda: execute_dagster_graphql(context, health, {"assetKey": {"path": key}}))
            node = res.data["assetNodeOrError"]
            pages["/".join(key)] = {"seconds": seconds, "partition_keys": len(node["partitionKeysByDimension"][0]
                                                                                 ["partitionKeys"]),
                                    "materialized": len(node["assetPartitionStatuses"]["materializedPartitions"])}
        detail = """query Detail($key: AssetKeyInput!, $p: [String!]) { assetNodeOrError(assetKey: $key) {
            ... on AssetNode { assetMaterializations(partitions: $p) { runId timestamp partition } } } }"""
        res, seconds = timed(lambda: execute_dagster_graphql(context, detail,
                                                             {"key": {"path": ["thuman", "smplx", "views"]}, "p": ["2444"]}))
        pages["thuman/smplx/views partition 2444 materializations"] = {
            "seconds": seconds, "events": len(res.data["assetNodeOrError"]["assetMaterializations"])}
        result["partition_page"] = pages
        result["goals"] = {"sensor tick": "< 10 s", "automation evaluation": "< 30 s", "partition page": "< 2 s"}
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
