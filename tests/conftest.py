"""Shared test set-up: Qt runs offscreen, so the suite needs no screen."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _own_settings(tmp_path_factory, monkeypatch, _cache_home):
    """Each test gets its own settings and autosave folders: never the user's. The cache
    (the classifier's quick-start traces) is the suite's own, shared by its tests."""
    home = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))


@pytest.fixture
def window(qtbot):
    """A review window without a model (generated cells keep the types they were made with),
    closed by qtbot at the end of the test."""
    from karyo_gui.qt.main_window import MainWindow

    window = MainWindow(load_model=False)
    window.ask_on_close = False
    qtbot.addWidget(window)
    window.show()
    return window
