"""The PySide6 app: renders the core's model and turns gestures into commands."""
