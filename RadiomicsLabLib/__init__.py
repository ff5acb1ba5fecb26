"""RadiomicsLab: IBSI-compliant radiomics for 3D Slicer.

Layers (see DESIGN.md): the core (this package, minus ``mrml`` and ``web``) works on numpy
arrays and SimpleITK images; ``RadiomicsLabLib.mrml`` reads and writes the Slicer MRML scene;
the GUIs and the CLI call the MRML logic or the core.
"""

__version__ = "0.1.0"
