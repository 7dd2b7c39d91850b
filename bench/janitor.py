"""Gives back the resources of trials that died without giving them back.

Why (Ray 2.60, checked): a Train run's workers sit in a placement group that its Train
controller creates. A placement group lives until its creator actor *and the job* are dead,
i.e. until the driver exits. When a trial's controller dies before removing its group — its
node was lost, or Tune stopped the trial (ASHA, a time budget) and killed its actor — the group
stays, idle and unusable by anyone; when it had bundles on a lost node, Ray even reschedules it
onto the surviving nodes. On a small cluster that deadlocks the grid: the retried trial waits
for CPUs the dead trial's group holds (measured: a 2-node run whose worker node was killed
waited until its 30-minute worker-group timeout). Train V2 starts a `PlacementGroupCleaner` for
this, but it asks the State API whether the controller is alive, which needs the dashboard
(`ray[default]`; kdbench starts Ray without it), so it never acts; kdbench's trainer leaves it
out (`bench.trial._trainer_class`), since it costs a process per trial.

What it does: every `poll_s`, it removes each non-detached placement group of this job (this
run's driver) whose creator was an actor that is now dead. In kdbench such an actor is a Train
controller: the workers in its group were owned by it and died with it, so the group has no
live user and removing it is safe. Other jobs' groups are never touched; groups made by drivers (Tune's trial
groups, whose creator field holds a nil actor id) are never touched. The GCS keeps the creator fields in its
table; Ray's public `placement_group_table()` leaves them out, so it is read from the GCS
accessor (`tests/test_janitor.py` checks it on a real Ray).
"""
from __future__ import annotations

import functools
import threading
import time
from typing import Any


def orphaned_groups() -> list[dict[str, Any]]:
    """Placement groups of this job alive in the GCS whose creator actor is dead (see the module
    docstring). Other jobs' groups are theirs to keep: on a shared cluster an actor of another
    job may have created a group for others to use."""
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    job = bytes.fromhex(ray.get_runtime_context().get_job_id())
    out = []
    accessor = state._connect_and_get_accessor()
    for raw in accessor.get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if pg.creator_job_id != job:
            continue
        # a driver's groups carry a nil actor id (measured: all 0xff; its unique part, before the
        # job-id bytes, is all 0xff in any case) and read as "creator dead"
        made_by_actor = set(pg.creator_actor_id[:-len(job)]) != {0xFF}
        if (pg.state != gcs_pb2.PlacementGroupTableData.REMOVED and not pg.is_detached and made_by_actor
                and (pg.creator_actor_dead or _actor_dead(accessor, pg.creator_actor_id))):  # (this job is alive)
            resources: dict[str, float] = {}
            for bundle in pg.bundles:
                for k, v in bundle.unit_resources.items():
                    resources[k] = resources.get(k, 0.0) + v
            out.append({"placement_group": pg.placement_group_id.hex(), "resources": resources})
    return out


def _actor_dead(accessor, actor_id: bytes) -> bool:
    """The GCS's own word on an actor, for a group whose `creator_actor_dead` flag was never
    set: a controller being killed can still create a group (its worker died with the trial, so
    it restarts the worker group) after the GCS has marked it dead, and the flag is only set for
    groups that exist when the death is recorded (seen in a CI run: the group was registered
    0.1 s after its controller's death, stayed CREATED and starved the next run's stage job)."""
    import ray
    from ray.core.generated import gcs_pb2

    raw = accessor.get_actor_info(ray.ActorID(actor_id))
    return raw is None or gcs_pb2.ActorTableData.FromString(raw).state == gcs_pb2.ActorTableData.DEAD


class Janitor:
    """A daemon thread that removes orphaned placement groups while a grid or search runs
    (`with Janitor(): ...`); `removed` lists what it gave back, with when."""

    def __init__(self, poll_s: float = 0.5, say=functools.partial(print, flush=True)):
        """`poll_s`: a trial waiting for a dead trial's CPUs gets them within about this long
        (each poll reads the GCS's placement-group table: a few dozen rows in a kdbench run)."""
        self.poll_s, self.say = poll_s, say
        self.removed: list[dict[str, Any]] = []
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    def sweep(self) -> list[dict[str, Any]]:
        """Remove every orphaned group now; each is recorded as soon as it is gone."""
        import ray
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        found = []
        for pg in orphaned_groups():
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg["placement_group"]))))
            pg["seconds_after_start"] = round(time.time() - self.started, 2)
            self.removed.append(pg)
            found.append(pg)
            held = ", ".join(f"{v:g} {k}" for k, v in sorted(pg["resources"].items()))
            self.say(f"gave back the resources of a dead trial's Train workers ({held})")
        return found

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sweep()
                self._last_error = None
            except Exception as exc:  # the GCS is briefly unreachable: try again at the next poll
                error = f"{type(exc).__name__}: {exc}"
                if error != self._last_error:  # once, not once per poll
                    self.say(f"(placement-group janitor: {error}; still trying)")
                self._last_error = error

    def __enter__(self) -> Janitor:
        self._thread = threading.Thread(target=self._watch, daemon=True, name="kdbench-janitor")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
