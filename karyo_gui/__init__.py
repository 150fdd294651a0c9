"""karyo: a desktop karyotyping workstation.

Layers, imports only going down: ``karyo_gui.core`` (no Qt, no torch) <- ``trainer`` <-
``karyo_gui.inference`` <- ``karyo_gui.qt``.
"""

__version__ = "0.1.0"
