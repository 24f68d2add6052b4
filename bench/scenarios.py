"""Scenarios: what one timed run of a tool is. A scenario gives each run its target (untimed
set-up) and checks the bucket afterwards (untimed); the harness times the tool's command in
between. Add a scenario by subclassing Scenario and listing it in SCENARIOS."""
from __future__ import annotations

from .runner import Bench
from .tools import Target, Tool


class Scenario:
    name = ""
    title = ""
    dataset = "A"
    throughput = False  # the run moves the whole data set: report MiB/s

    def target(self, bench: Bench, tool: Tool) -> Target:
        raise NotImplementedError

    def check(self, bench: Bench, tool: Tool, target: Target) -> dict:
        """Raise BenchError when the bucket is wrong; else return what was verified."""
        return bench.verify(target, bench.dataset(self.dataset))


class UploadFirst(Scenario):
    name = "upload-first"
    title = "first upload of the data set into an empty bucket"
    throughput = True

    def target(self, bench: Bench, tool: Tool) -> Target:
        return bench.fresh_target(tool, self.dataset)  # new bucket; skycompile: cold state

    def check(self, bench: Bench, tool: Tool, target: Target) -> dict:
        verified = super().check(bench, tool, target)
        bench.keep_filled(tool, self.dataset, target)  # resync-nochange reuses the last one
        return verified


class ResyncNoChange(Scenario):
    name = "resync-nochange"
    title = "re-sync of the unchanged data set into the bucket that holds it"

    def target(self, bench: Bench, tool: Tool) -> Target:
        return bench.filled_target(tool, self.dataset)  # same bucket; skycompile: warm state


SCENARIOS = [UploadFirst(), ResyncNoChange()]
