"""View > Display adjustments: brightness, contrast, gamma and sharpening of the karyogram.

For the eye only: the crops, the model's input, the labels and the ISCN never change. Each
slider applies at once; Reset goes back to the pictures as they are.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
)

from karyo_gui.core.display import DisplayOptions

# option: (label, slider minimum, maximum, slider steps per unit of the option)
SLIDERS = {
    "brightness": ("Brightness", -50, 50, 100),
    "contrast": ("Contrast", 25, 400, 100),
    "gamma": ("Gamma (bands darker →)", 30, 300, 100),
    "sharpen": ("Sharpening", 0, 200, 100),
}


class DisplayDialog(QDialog):
    """Sliders for the karyogram's tone; ``changed`` carries the new DisplayOptions."""

    changed = Signal(object)

    def __init__(self, options: DisplayOptions, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Display adjustments")
        self.options = options
        self.sliders: dict[str, QSlider] = {}
        self.values: dict[str, QLabel] = {}
        form = QFormLayout()
        for name, (label, low, high, steps) in SLIDERS.items():
            slider = QSlider(Qt.Orientation.Horizontal, self)
            slider.setRange(low, high)
            slider.setValue(round(getattr(options, name) * steps))
            slider.valueChanged.connect(self._moved)
            value = QLabel(self)
            value.setMinimumWidth(40)
            self.sliders[name], self.values[name] = slider, value
            row = QHBoxLayout()
            row.addWidget(slider, 1)
            row.addWidget(value)
            form.addRow(label, row)
        note = QLabel("For the eye only: crops, labels and the ISCN do not change.", self)
        note.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Reset | QDialogButtonBox.StandardButton.Close, self)
        buttons.button(QDialogButtonBox.StandardButton.Reset).clicked.connect(self.reset)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self._show_values()

    def current(self) -> DisplayOptions:
        values = {name: self.sliders[name].value() / SLIDERS[name][3] for name in SLIDERS}
        return replace(self.options, **values)

    def reset(self) -> None:
        plain = DisplayOptions()
        for name, slider in self.sliders.items():
            slider.blockSignals(True)
            slider.setValue(round(getattr(plain, name) * SLIDERS[name][3]))
            slider.blockSignals(False)
        self._moved()

    def _moved(self) -> None:
        self.options = self.current()
        self._show_values()
        self.changed.emit(self.options)

    def _show_values(self) -> None:
        for name, label in self.values.items():
            label.setText(f"{getattr(self.options, name):.2f}")
