"""One module per panel: a state dataclass, a UI class (widgets, signals) and a logic class (actions).

:func:`workflow_panels` lists the workflow panels whose MRML Logic is present; each such module
defines ``KEY``, ``TITLE``, ``ICON``, ``UI(server, max_upload_bytes, error_state)`` and
``Logic(server, slicer_app, loader, jobs, show_results)`` with ``set_ui`` and ``refresh``, and may set
``NEEDS_VOLUME = False`` when its rail button works without an open study.
"""

import importlib
import importlib.util

#: (panel module, MRML Logic module it needs), in rail order.
WORKFLOWS = (
    ("featuremaps", "RadiomicsLabLib.mrml.featuremaps"),
    ("habitats", "RadiomicsLabLib.mrml.habitats"),
    ("observers", "RadiomicsLabLib.mrml.observers"),
    ("delta", "RadiomicsLabLib.mrml.delta"),
    ("cohort", "RadiomicsLabLib.mrml.cohort"),
    ("study", "RadiomicsLabLib.mrml.study"),
)


def workflow_panels() -> list:
    """(key, panel module) of each workflow panel that exists and whose Logic imports."""
    panels = []
    for key, logic_module in WORKFLOWS:
        if importlib.util.find_spec(f"{__name__}.{key}") is None or importlib.util.find_spec(logic_module) is None:
            continue
        module = importlib.import_module(f"{__name__}.{key}")
        panels.append((module.KEY, module))
    return panels
