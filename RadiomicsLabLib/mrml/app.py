"""Access to the MRML scene: desktop Slicer's ``slicer.mrmlScene``, or a headless ``SlicerApp``.

This is the one place that decides where the scene comes from; everything else takes a scene.
"""

_headless_app = None
_apps = []


def in_desktop_slicer() -> bool:
    import slicer

    return getattr(slicer, "mrmlScene", None) is not None


def default_scene():
    """The desktop application's scene inside Slicer, otherwise the shared headless scene."""
    import slicer

    if in_desktop_slicer():
        return slicer.mrmlScene
    return headless_app().scene


def headless_app():
    """The process-wide headless Slicer application (``trame_slicer.core.SlicerApp``)."""
    global _headless_app
    if _headless_app is None:
        _headless_app = new_headless_app()
    return _headless_app


def new_headless_app():
    """A fresh headless Slicer application with an empty scene and the core module logics (Sequences included).

    VTK's console messages (zip progress, informational notes) are kept in memory instead of
    being printed; :func:`vtk_messages` returns them. Failures are reported by return values.
    """
    from trame_slicer.core import SlicerApp
    from vtkmodules.vtkCommonCore import vtkLogger, vtkOutputWindow

    import slicer

    app = SlicerApp()
    app.register_module_logic(slicer.vtkSlicerSequencesLogic(), logic_name="Sequences")  # sequence browser nodes
    vtkOutputWindow.SetInstance(_vtk_messages)
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    _apps.append(app)  # the scene needs the app's IO logic (e.g. to read .mrb) as long as it lives
    return app


def vtk_messages() -> str:
    """What VTK and Slicer's libraries reported since the headless application started."""
    return _vtk_messages.GetOutput()


def _string_output_window():
    from vtkmodules.vtkCommonCore import vtkStringOutputWindow

    return vtkStringOutputWindow()


_vtk_messages = _string_output_window()
