"""bench/janitor.py on a real local Ray: the placement group of a dead actor (as a Train
controller that died with its node, or with its stopped trial) is given back; groups of live
actors and of drivers (Tune's trial groups) are never touched."""
import time

import ray
from ray.util.placement_group import placement_group

from bench.janitor import Janitor, orphaned_groups


@ray.remote(num_cpus=0)
class Controller:
    """Creates a group as Train's controller does for its workers."""

    def start_workers(self, cpus: float) -> str:
        group = placement_group([{"CPU": cpus}])
        ray.get(group.ready())
        return group.id.hex()


def until(condition, timeout: float, then=lambda: None) -> None:
    """Poll `condition` (calling `then` between polls) until it holds or `timeout` s pass."""
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        then()
        time.sleep(0.1)


def test_a_dead_actors_group_is_given_back_and_no_other(local_ray):
    def free_cpus() -> float:
        return ray.available_resources().get("CPU", 0)

    idle = free_cpus()
    assert idle >= 2, "the test reserves 2 CPUs"
    driver_group = placement_group([{"CPU": 0.5}])  # like Tune's trial groups: made by the driver
    ray.get(driver_group.ready())
    alive, doomed = Controller.remote(), Controller.remote()
    try:
        kept = ray.get(alive.start_workers.remote(0.5))
        lost = ray.get(doomed.start_workers.remote(1.0))
        assert orphaned_groups() == []
        assert free_cpus() == idle - 2

        said = []
        with Janitor(poll_s=0.1, say=said.append) as janitor:
            ray.kill(doomed)  # its group stays, holding 1 CPU, until the driver exits
            until(lambda: janitor.removed, 30)
        assert [g["placement_group"] for g in janitor.removed] == [lost]
        assert janitor.removed[0]["resources"] == {"CPU": 1.0}
        assert said == ["gave back the resources of a dead trial's Train workers (1 CPU)"]
        until(lambda: free_cpus() >= idle - 1, 10)
        assert free_cpus() == idle - 1  # the dead one's CPU is back
        states = {pg: info["state"] for pg, info in ray.util.placement_group_table().items()}
        assert states[lost] == "REMOVED" and states[kept] == "CREATED"
        assert states[driver_group.id.hex()] == "CREATED"
    finally:  # the session's Ray goes on serving other tests: give everything back
        ray.kill(alive)
        ray.kill(doomed)
        ray.util.remove_placement_group(driver_group)
        # the killed actors' groups, once they are seen dead
        until(lambda: free_cpus() >= idle, 30, then=Janitor(say=lambda msg: None).sweep)


@ray.remote(num_cpus=0)
class DyingController:
    """Creates a group while it is being killed, as a Train controller whose stopped trial's actor
    was killed restarts its worker group on its way out (seen in a CI run): the GCS has already
    recorded it dead, so the group's `creator_actor_dead` flag is never set."""

    def arm(self) -> None:
        """From now on, a thread watches the GCS's record of this actor and makes a group as soon
        as it reads dead (the process is killed a few ms after that: the CI run's controller
        made its group 0.1 s after its recorded death)."""
        import threading

        from ray._private.state import state
        from ray.core.generated import gcs_pb2

        me = ray.ActorID(bytes.fromhex(ray.get_runtime_context().get_actor_id()))
        accessor = state._connect_and_get_accessor()

        def watch() -> None:
            while gcs_pb2.ActorTableData.FromString(accessor.get_actor_info(me)).state != gcs_pb2.ActorTableData.DEAD:
                time.sleep(0.002)
            placement_group([{"CPU": 1.0}])

        threading.Thread(target=watch, daemon=True).start()


@ray.remote(num_cpus=0)
class TrialActor:
    """Owns a DyingController, as Tune's function actor owns its Train controller."""

    def start(self) -> None:
        self.controller = DyingController.remote()
        ray.get(self.controller.arm.remote())


def stale_groups() -> list[str]:
    """This job's live groups whose creator flag says alive although the creator is dead."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    accessor = state._connect_and_get_accessor()
    out = []
    for raw in accessor.get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        info = accessor.get_actor_info(ray.ActorID(pg.creator_actor_id))
        if (pg.state != gcs_pb2.PlacementGroupTableData.REMOVED and not pg.creator_actor_dead and info is not None
                and gcs_pb2.ActorTableData.FromString(info).state == gcs_pb2.ActorTableData.DEAD):
            out.append(pg.placement_group_id.hex())
    return out


def test_a_group_made_by_a_controller_after_its_recorded_death_is_given_back(local_ray):
    """The race is Ray's timing (the raylet may kill the controller before its group is made),
    so it is set up until it happens, up to 6 times."""
    idle = ray.available_resources().get("CPU", 0)
    stale: list[str] = []
    for _ in range(6):
        trial = TrialActor.remote()
        ray.get(trial.start.remote())
        ray.kill(trial)  # the controller dies with its owner, and makes a group on its way out
        until(lambda: stale_groups(), 5)
        stale = stale_groups()
        if stale:
            break
    assert stale, "the race (a group made after its creator's recorded death) did not happen in 6 tries"
    assert [g["placement_group"] for g in orphaned_groups()] == stale  # the flag alone never says so
    janitor = Janitor(say=lambda msg: None)
    assert [g["placement_group"] for g in janitor.sweep()] == stale
    until(lambda: ray.available_resources().get("CPU", 0) >= idle, 10)
    assert ray.available_resources().get("CPU", 0) == idle and stale_groups() == []
