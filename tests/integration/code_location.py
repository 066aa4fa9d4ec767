"""The project's code location with the refresh schedule, for the webserver test's daemon to run.

Once ``pipelines/definitions.py`` registers the schedule itself this module adds nothing and serves it as is.
(Dagster refuses a module with two ``Definitions`` at module scope, hence the function.)
"""

from dagster import Definitions

import pipelines.definitions
from pipelines.schedules import refresh_schedule


def _with_schedule(project: Definitions) -> Definitions:
    if refresh_schedule.name in {s.name for s in (project.schedules or [])}:
        return project
    return Definitions.merge(project, Definitions(schedules=[refresh_schedule]))


defs = _with_schedule(pipelines.definitions.defs)
