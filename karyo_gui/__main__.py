from karyo_gui.cli import entry_point

entry_point()
