"""Replaying kept dead letters: push them through the steps and the sink again, exactly once.

``osmosis dead-letters replay ID [--run RUN]`` runs this under the pipeline's lease. Each dead letter
re-enters the pipeline where it left it: a letter of step ``3: map`` goes through steps 3, 4, ... and
the sink; a letter the sink refused goes to the sink only; a letter of the read goes through every
step. Values come back as the dead-letter file kept them (JSON: timestamps and decimals as text), so a
``cast`` step may be needed before a typed sink. A letter whose record was kept only as text (the
source could not decode it) cannot be replayed and stays a dead letter, as does every record that
fails again: both land in the replay run's own dead letters (replayable in turn with ``--run``).

Exactly once: the replay is a run in the history (status ``succeeded``, window ``-``, note "replay of
...", the watermark untouched). It stages its output like any run, claims each source folder
(``_replay.json``, :mod:`osmosis_beam.io.files.dead_letters`) before its sink publishes, and marks the
claims done after. A replay that dies in between is settled by the sink's own record of what it
published: a second replay never publishes the same dead letters twice.

Example::

    from osmosis_beam.sync.runner import SyncRunner
    run = SyncRunner(spec, store, home=home).replay()         # every dead letter not replayed yet
    run = SyncRunner(spec, store, home=home).replay("20240601T000000-ab12cd34")
"""
from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from osmosis_beam.core.errors import ConfigError, OsmosisError, RunError
from osmosis_beam.core.models import SyncRun
from osmosis_beam.core.records import DeadLetter
from osmosis_beam.core.secrets import redact_text
from osmosis_beam.core.timefmt import utcnow
from osmosis_beam.io.files.dead_letters import DeadLetterFolder, dead_letter_root, find_folders
from osmosis_beam.sync.attempt import describe_error, new_run

if TYPE_CHECKING:
    from osmosis_beam.sync.runner import SyncRunner

__all__ = ["Replay", "start_index"]

log = logging.getLogger(__name__)
_STEP = re.compile(r"^(\d+): ")


def start_index(step: Any) -> int:
    """Where a dead letter re-enters: the index of its step, 0 for the read, -1 for the sink."""
    text = str(step or "")
    match = _STEP.match(text)
    if match:
        return int(match.group(1))
    if text.startswith("sink"):
        return -1
    return 0


class Replay:
    """One replay of ``runner.spec``'s kept dead letters (``run_id`` narrows it to one run's)."""

    def __init__(self, runner: "SyncRunner", run_id: str | None = None) -> None:
        self.runner = runner
        self.only = run_id
        self.published = False

    def pending(self) -> list[DeadLetterFolder]:
        """The folders to replay: not replayed yet, with claims of dead replays settled first."""
        runner = self.runner
        root = dead_letter_root(runner.spec, runner.home)
        folders = find_folders(root, self.only)
        sink = runner.sink()
        for folder in folders:
            folder.settle(sink.is_published)
        if self.only is not None:
            done = [f for f in folders if f.replayed_by]
            if done:
                raise ConfigError(
                    f"pipeline {runner.spec.id}: the dead letters of run {self.only} were already replayed by run "
                    f"{done[0].replayed_by}; their records that failed again are that run's dead letters "
                    f"(replay them with --run {done[0].replayed_by})"
                )
        return [f for f in folders if f.claim() is None and f.files]

    def run(self) -> SyncRun | None:
        runner, spec, store = self.runner, self.runner.spec, self.runner.store
        folders = self.pending()
        if not folders:
            return None
        letters = [letter for folder in folders for letter in folder.letters()]
        run = new_run(runner, "running")
        run.note = "replay of the dead letters of run " + ", ".join(f.run_id for f in folders)
        store.start_run(run, runner.holder)
        runner.current_run = run
        started = time.monotonic()
        sink = runner.sink()
        dead_sink = runner.dead_letter_sink()
        claimed: list[DeadLetterFolder] = []
        try:
            sink.use_schema(None)
            sink.prepare(run.run_id)
            dead_sink.prepare(run.run_id)
            groups, unreplayable = self._groups(letters)
            counts = self._run_job(sink, dead_sink, groups, unreplayable, run.run_id)
            run.records_read = len(letters)
            run.records_written = counts.get("records_written", 0)
            run.dead_letter = counts.get("dead_letter", 0) + len(unreplayable)
            if runner.cancelled():
                raise RunError("cancelled before the replay was published")
            hi = utcnow()
            store.set_pending_state(run.run_id, None, {
                "records_read": run.records_read, "records_written": run.records_written, "dead_letter": run.dead_letter,
            })
            dead_sink.seal(run.run_id, hi)
            for folder in folders:
                folder.write_claim(run.run_id, "pending")
                claimed.append(folder)
            try:
                sink.publish(run.run_id, window_hi=hi)
            except BaseException:
                self.published = self._maybe_published(sink, run.run_id)
                raise
            self.published = True
            for folder in folders:
                folder.write_claim(run.run_id, "done")
            dead_sink.publish(run.run_id, window_hi=hi)
            run.status = "succeeded"
            run.finished_at = utcnow()
            store.commit_run(run, None, None)
        except BaseException as exc:
            raise self._failed(run, exc, sink, dead_sink, claimed) from None
        log.info(
            "pipeline %s: replay %s of %d dead letter(s): written %d, dead letters again %d, %.2fs",
            spec.id, run.run_id, run.records_read, run.records_written, run.dead_letter, time.monotonic() - started,
        )
        return run

    # -- the job ------------------------------------------------------------------------------------
    def _groups(self, letters: list[dict[str, Any]]) -> tuple[dict[int, list[dict]], list[dict]]:
        groups: dict[int, list[dict]] = {}
        unreplayable: list[dict] = []
        for letter in letters:
            record = letter.get("record")
            if not isinstance(record, dict):
                unreplayable.append(DeadLetter(
                    str(letter.get("step")),
                    f"not replayable: the record was kept only as text ({letter.get('error')})",
                    record,
                ).to_dict())
                continue
            groups.setdefault(start_index(letter.get("step")), []).append(record)
        return groups, unreplayable

    def _run_job(self, sink, dead_sink, groups, unreplayable, run_id: str) -> dict[str, int]:
        import apache_beam as beam

        import osmosis_beam.runners as runners
        from osmosis_beam.io.files.jsonl_write import WriteJSONL
        from osmosis_beam.io.write import WriteToSink
        from osmosis_beam.steps.base import StepContext
        from osmosis_beam.steps.pipeline import StepChain, build_step
        from osmosis_beam.sync.job import JobRunner

        runner, spec = self.runner, self.runner.spec
        size = spec.read.batch_size
        p = runners.make_pipeline(
            runner.runner, runner.runner_options, runner.beam_args,
            job_name=runners.job_name(spec.id, run_id), labels=runners.job_labels(spec.id, run_id),
        )
        context = StepContext(pipeline_id=spec.id, cursor_field=spec.incremental.cursor_field, batch_size=size)
        records, dead = [], []
        for start, group in sorted(groups.items()):
            batches = [group[i : i + size] for i in range(0, len(group), size)]
            name = "sink" if start < 0 else f"step {max(start, 1)}"
            pcoll = p | f"Dead letters for {name}" >> beam.Create(batches, reshuffle=False)
            steps = [s for s in spec.steps if start >= 0 and s.index >= start]
            if steps:
                chain = StepChain()
                for step_spec in steps:
                    chain.add_step(build_step(step_spec, runner.registry, context), label=step_spec.label,
                                   on_error=step_spec.on_error)
                out = pcoll | f"Steps from {name}" >> chain
                pcoll = out["records"]
                dead.append(out["dead_letter"])
            records.append(pcoll)
        merged = tuple(records) | "Replayed records" >> beam.Flatten() if records else p | "No records" >> beam.Create([])
        written = merged | f"Write {spec.sink.type}" >> WriteToSink.for_run(sink, run_id)
        dead.append(written.dead_letter)
        if unreplayable:
            dead.append(p | "Not replayable" >> beam.Create(unreplayable, reshuffle=False))
        (
            tuple(dead)
            | "Dead letters" >> beam.Flatten()
            | "Batch dead letters" >> beam.BatchElements(min_batch_size=1, max_batch_size=500)
            | "Write dead letters"
            >> WriteJSONL(str(dead_sink.staging_dir(run_id)), counter="dead_letter_written", lenient=True)
        )
        job = JobRunner(runner.runner, runner.runner_options, runner.beam_args, pipeline_id=spec.id,
                        secrets=runner.secrets, cancelled=runner.cancelled)
        return job.wait(job.submit(p))

    # -- failure ------------------------------------------------------------------------------------
    @staticmethod
    def _maybe_published(sink, run_id: str) -> bool:
        try:
            return sink.is_published(run_id)
        except Exception:  # noqa: BLE001 - unknown: leave it for the claim settlement
            return True

    def _failed(self, run: SyncRun, exc: BaseException, sink, dead_sink, claimed) -> BaseException:
        runner, spec = self.runner, self.runner.spec
        text = redact_text(describe_error(exc), runner.secrets)
        if self.published:
            log.error("pipeline %s: replay %s published but could not finish (%s); the next start commits it",
                      spec.id, run.run_id, text)
            return RunError(
                f"pipeline {spec.id}: replay {run.run_id} published its output but could not finish ({text}); "
                "the next run or replay of this pipeline completes it"
            )
        for target in (sink, dead_sink):
            try:
                target.abort(run.run_id)
            except Exception as cleanup:  # noqa: BLE001
                log.warning("pipeline %s: cleanup after a failed replay failed: %s", spec.id, cleanup)
        for folder in claimed:
            folder.settle(lambda _run: False)
        run.status = "failed"
        run.finished_at = utcnow()
        run.error = text
        try:
            runner.store.fail_run(run)
        except OsmosisError as state_exc:
            log.error("pipeline %s: could not record the failed replay: %s", spec.id, state_exc)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
        return RunError(f"pipeline {spec.id}: replay {run.run_id} failed: {text}")
