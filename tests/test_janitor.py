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
