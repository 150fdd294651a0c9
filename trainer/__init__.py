"""The bundled trainer (torch, no Qt): supervised contrastive learning for any timm backbone.
It reads labelled cells through ``karyo_gui.core.loaders`` and corrected cases through
``karyo_gui.core.case_file``."""
