"""The GPU-step channel (Dagster Pipes over a file) delivers every report, even one caught mid-write, and a step
whose worker reports nothing fails instead of succeeding without its output."""
import sys
import textwrap

import dagster as dg
import pytest

from assets_defs.gpu_steps import worker_report
from assets_defs.pipes_channel import WholeLineFileMessageReader, complete_lines

# A worker whose file channel writes each message in 1 kB pieces with pauses: the reader sees partial lines, as it
# does when a loaded machine deschedules the writer in the middle of a large message.
SLOW_WORKER = textwrap.dedent("""
    import json, sys, time
    from contextlib import contextmanager
    from dagster_pipes import (PipesDefaultMessageWriter, PipesFileMessageWriterChannel, open_dagster_pipes)

    class SlowChannel(PipesFileMessageWriterChannel):
        def write_message(self, message):
            text = json.dumps(message) + "\\n"
            for i in range(0, len(text), 1024):
                with open(self._path, "a", encoding="utf-8") as f:
                    f.write(text[i:i + 1024])
                time.sleep(0.002)

    class SlowWriter(PipesDefaultMessageWriter):
        @contextmanager
        def open(self, params):
            yield SlowChannel(params[self.FILE_PATH_KEY])

    with open_dagster_pipes(message_writer=SlowWriter()) as pipes:
        pipes.log.info("working")
        if sys.argv[1] == "report":
            pipes.report_asset_materialization(metadata={"dagster/uri": "/out", "sheet": "A" * 60000},
                                               data_version="v1")
""")


def test_complete_lines_keeps_the_unfinished_tail(tmp_path):
    path = tmp_path / "messages"
    pending = bytearray()
    with open(path, "wb") as w, open(path, "rb") as r:
        w.write(b'{"a": 1}\n{"b": ')
        w.flush()
        assert complete_lines(r, pending) == [b'{"a": 1}'] and pending == b'{"b": '
        w.write(b'2}\n')
        w.flush()
        assert complete_lines(r, pending) == [b'{"b": 2}'] and pending == b""


def _asset(tmp_path, mode: str):
    script = tmp_path / "worker.py"
    script.write_text(SLOW_WORKER)

    @dg.asset(name=f"step_{mode}")
    def step(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        client = dg.PipesSubprocessClient(message_reader=WholeLineFileMessageReader())
        invocation = client.run(context=context, command=[sys.executable, str(script), mode])
        return worker_report(invocation.get_results(implicit_materializations=False), "test")

    return step


def test_a_report_written_in_pieces_arrives_whole(tmp_path):
    result = dg.materialize([_asset(tmp_path, "report")], instance=dg.DagsterInstance.ephemeral())
    mat = result.asset_materializations_for_node("step_report")[0]
    assert mat.metadata["dagster/uri"].value == "/out"
    assert len(mat.metadata["sheet"].value) == 60000


def test_a_worker_that_reports_nothing_fails_the_step(tmp_path):
    result = dg.materialize([_asset(tmp_path, "silent")], instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "exited without reporting its output" in failure.step_failure_data.error.message


def test_a_report_without_its_output_location_is_refused():
    with pytest.raises(dg.Failure, match="exited without reporting"):
        worker_report([dg.MaterializeResult(metadata={"steps": 3})], "train")
    with pytest.raises(dg.Failure, match="0 materialization reports"):
        worker_report([], "train")


def test_a_stages_metadata_is_the_same_in_process_and_over_pipes():
    """One vocabulary (pipelines/metadata.py): the worker's wire form and the in-process conversion agree on every
    kind, so a baseline computed in process and a model's set from the worker show the same metadata."""
    from assets_defs.outcomes import dagster_metadata
    from pipelines.metadata import JsonValue, Markdown, PathValue, TableColumns, to_wire

    meta = {"views": 48, "device": "cpu", "sample": Markdown("![x](data:...)"), "sets": JsonValue({"no_mesh": "/s"}),
            "run_dir": PathValue("/runs/a"), "schema": TableColumns({"psnr": "float64"})}
    wire = to_wire(meta)
    assert wire["views"] == 48 and wire["sample"] == {"raw_value": "![x](data:...)", "type": "md"}
    assert wire["sets"] == {"raw_value": {"no_mesh": "/s"}, "type": "json"}
    assert wire["run_dir"] == {"raw_value": "/runs/a", "type": "path"}
    shown = dagster_metadata(meta)
    assert shown["views"] == 48 and shown["sample"] == dg.MetadataValue.md("![x](data:...)")
    assert shown["sets"] == dg.MetadataValue.json({"no_mesh": "/s"}) and shown["run_dir"] == dg.MetadataValue.path(
        "/runs/a")
    assert [c.name for c in shown["schema"].columns] == ["psnr"]
