"""Phase "repair": finish the runs a dead process left ``running``, before the next run begins.

A run whose output was published is committed with the connector state and the counts it stored before
publishing (its watermark is the run's ``hi``), and its sealed dead letters are published; any other is
marked failed ("abandoned") and its staging removed, so the next run reads its window again. The caller
holds the pipeline's lease, so those processes are gone; staging that failed runs of this pipeline left
behind (a stage table whose drop failed with the database down) is removed too.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from osmosis_beam.core.errors import OsmosisError
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
        if target.is_published(run.run_id):
            window_hi = run.window.hi if run.window is not None else None
            hi = window_hi if isinstance(window_hi, dt.datetime) else utcnow()
            if run.full_refresh:  # idempotent: finishes removing the older output a kill may have interrupted
                target.publish(run.run_id, window_hi=hi, full_refresh=True)
            dead_sink().publish(run.run_id, window_hi=hi)  # sealed before the sink published: a rename
            run.status = "succeeded"
            run.finished_at = utcnow()
            note = "committed at the next start: the process stopped after publishing its output"
            run.note = f"{run.note}; {note}" if run.note else note
            # A replay of dead letters has no window: it never moves the watermark.
            state = store.get_pending_state(run.run_id) if run.window is not None else None
            store.commit_run(run, window_hi, state)
            log.warning("pipeline %s: run %s was published but not committed; committed it now", pipeline_id, run.run_id)
        else:
            target.abort(run.run_id)
            dead_sink().abort(run.run_id)
            run.status = "failed"
            run.finished_at = utcnow()
            run.error = f"abandoned: the process running it ({holder}) stopped before it committed"
            store.fail_run(run)
            log.warning("pipeline %s: run %s was abandoned by %s; marked failed", pipeline_id, run.run_id, holder)
    last = store.query_runs(pipeline_id, status=("succeeded", "failed"), limit=1)
    if not repaired and not (last and last[0].status == "failed"):
        return repaired  # nothing can have been left behind since the last success
    try:
        removed = sink().clean_stale_staging()
    except OsmosisError as exc:  # the next start tries again
        log.warning("pipeline %s: could not remove staging of earlier failed runs: %s", pipeline_id, exc)
    else:
        if removed:
            log.info("pipeline %s: removed the staging of %d earlier failed run(s)", pipeline_id, removed)
    return repaired
