"""Phase "repair": finish the runs a dead process left ``running``, before the next run begins.

A run whose output was published is committed with the connector state it stored before publishing
(its watermark is the run's ``hi``); any other is marked failed ("abandoned") and its staging removed,
so the next run reads its window again. The caller holds the pipeline's lease, so those processes are gone.
"""
from __future__ import annotations

import logging
from typing import Callable

from osmosis_beam.core.timefmt import utcnow
from osmosis_beam.io.base import BaseSink
from osmosis_beam.state.store import StateStore

__all__ = ["repair_runs"]

log = logging.getLogger(__name__)


def repair_runs(
    pipeline_id: str, store: StateStore, sink: Callable[[], BaseSink], dead_sink: Callable[[], BaseSink]
) -> int:
    """Repair ``pipeline_id``'s unfinished runs; ``sink``/``dead_sink`` build the sinks when one is needed.

    Returns how many runs were repaired.
    """
    repaired = 0
    for run, holder in store.running_runs(pipeline_id):
        repaired += 1
        target = sink()
        if run.window is not None and target.is_published(run.run_id):
            run.status = "succeeded"
            run.finished_at = utcnow()
            run.note = "committed at the next start: the process stopped after publishing its output"
            store.commit_run(run, run.window.hi, store.get_pending_state(run.run_id))
            log.warning("pipeline %s: run %s was published but not committed; committed it now", pipeline_id, run.run_id)
        else:
            target.abort(run.run_id)
            dead_sink().abort(run.run_id)
            run.status = "failed"
            run.finished_at = utcnow()
            run.error = f"abandoned: the process running it ({holder}) stopped before it committed"
            store.fail_run(run)
            log.warning("pipeline %s: run %s was abandoned by %s; marked failed", pipeline_id, run.run_id, holder)
    return repaired
