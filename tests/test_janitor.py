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


def test_a_dead_actors_group_is_given_back_and_no_other():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        driver_group = placement_group([{"CPU": 0.5}])  # like Tune's trial groups: made by the driver
        ray.get(driver_group.ready())
        alive, doomed = Controller.remote(), Controller.remote()
        kept = ray.get(alive.start_workers.remote(0.5))
        lost = ray.get(doomed.start_workers.remote(1.0))
        assert orphaned_groups() == []
        assert ray.available_resources().get("CPU", 0) == 0

        said = []
        with Janitor(poll_s=0.1, say=said.append) as janitor:
            ray.kill(doomed)  # its group stays, holding 1 CPU, until the driver exits
            deadline = time.time() + 30
            while not janitor.removed and time.time() < deadline:
                time.sleep(0.1)
        assert [g["placement_group"] for g in janitor.removed] == [lost]
        assert janitor.removed[0]["resources"] == {"CPU": 1.0}
        assert said == ["gave back the resources of a dead trial's Train workers (1 CPU)"]
        deadline = time.time() + 10
        while ray.available_resources().get("CPU", 0) < 1.0 and time.time() < deadline:
            time.sleep(0.1)
        assert ray.available_resources().get("CPU", 0) == 1.0  # the dead one's CPU is back
        states = {pg: info["state"] for pg, info in ray.util.placement_group_table().items()}
        assert states[lost] == "REMOVED" and states[kept] == "CREATED"
        assert states[driver_group.id.hex()] == "CREATED"
    finally:
        ray.shutdown()
