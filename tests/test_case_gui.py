"""The case in the window: cell roles and the tally, a translocation marked on the
ideogram, the derivative placed and named in the karyogram, the two-person sign-off, and
the case report rendered."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from test_review import click, make_window, of_type

from karyo_gui.core.case import Case, CellRole, SignRole
from karyo_gui.core.case_karyotype import DEFAULT_POLICIES
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.case_report import CaseReportInfo, render_case_report_pages


@pytest.fixture
def window(qtbot):
    window = make_window(qtbot)
    cells = [generate_cell("46,XY", seed=k, name=f"cell {k}") for k in range(1, 4)]
    window.set_case(Case("CASE-26", cells), None, "generated")
    return window


def click_band(ideogram, name: str) -> None:
    point = ideogram.band_rect(name).center().toPoint()
    QTest.mouseClick(ideogram, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)


def test_roles_tally_in_the_cells_panel_and_the_case_panel(window):
    window.set_role(CellRole.KARYOGRAMMED)
    cell = window.current_cell
    assert cell.roles == {CellRole.KARYOGRAMMED, CellRole.COUNTED}  # karyogrammed: counted
    assert "[C K]" in window.cell_list.item(0).text()
    assert "counted 1/20" in window.case_panel.tally_label.text()
    assert "karyogrammed 1/2" in window.case_panel.tally_label.text()
    assert window.role_actions[CellRole.KARYOGRAMMED].isChecked()
    window.set_role(CellRole.KARYOGRAMMED)  # toggles off
    assert CellRole.KARYOGRAMMED not in cell.roles


def test_a_translocation_marked_on_the_ideogram(window, qtbot):
    cell = window.current_cell
    nine = of_type(cell, T.autosome(9))[0]
    click(window, nine.id)
    assert window.selected_id() == nine.id
    dialog = window.mark_abnormality()
    qtbot.waitExposed(dialog)
    assert dialog.current_kind == "t" and dialog.first.currentText() == "9"
    dialog.second.setCurrentText("22")
    first, second = dialog.ideograms
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    click_band(first, "q34")
    click_band(second, "q11.2")
    assert dialog.preview.text() == "t(9;22)(q34;q11.2)"
    assert dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    assert "q34" in first.chosen
    dialog.accept()
    twenty_two = of_type(cell, T.autosome(22))[0]
    assert [(m.iscn, set(m.chromosome_ids)) for m in cell.abnormalities] == [
        ("t(9;22)(q34;q11.2)", {nine.id, twenty_two.id})]
    assert window.karyotype_label.text() == "46,XY,t(9;22)(q34;q11.2)"
    # one cell of three: not a clone, a single-cell finding beside the case karyotype
    assert window.case_panel.karyotype_label.text() == "46,XY"
    assert "not clonal: t(9;22)(q34;q11.2) in 1 cell" in window.case_panel.detail_label.text()
    # the derivative stands right of its normal homolog and is named under it
    slot = window.scene.layout.slots[T.autosome(9)]
    assert slot.members[-1] == nine.id
    captions = [item.text() for item in window.scene._decorations if hasattr(item, "text")]
    assert "der(9)" in captions and "der(22)" in captions
    window.undo_action.trigger()
    assert not cell.abnormalities
    assert [e.action for e in cell.audit[-2:]] == ["abnormality", "abnormality"]


def test_a_translocation_needs_both_derivatives_in_the_cell(window, qtbot):
    cell = window.current_cell
    nine = of_type(cell, T.autosome(9))[0]
    for other in of_type(cell, T.autosome(22)):
        cell.chromosome(other.id).assigned = T.UNCLASSIFIED  # no 22 left in the cell
    window.select(nine.id)
    dialog = window.mark_abnormality()
    dialog.second.setCurrentText("22")
    click_band(dialog.ideograms[0], "q34")
    click_band(dialog.ideograms[1], "q11.2")
    assert "both derivatives" in dialog.problem.text()
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    dialog.reject()


def test_two_person_sign_off_refuses_the_same_name_and_locks_the_case(window):
    assert window.sign_case(SignRole.ANALYST, "Ann Smith")
    assert not window.sign_case(SignRole.CHECKER, "ann  smith")
    assert "different person" in window.last_error
    assert window.case.checker is None
    assert not window.set_role(CellRole.COUNTED)  # a signed case is not changed
    assert not window.reassign(window.current_cell.chromosomes[0].id, T.CHR2)
    assert window.sign_case(SignRole.CHECKER, "Bob Jones")
    assert window.case.is_final
    assert "final" in window.case_panel.detail_label.text()
    assert not window.case_panel.checker_button.isEnabled()
    assert window.reopen_case()
    assert not window.case.signatures
    assert window.set_role(CellRole.COUNTED)


def test_override_refuses_malformed_iscn_with_its_position(window):
    assert not window.override_karyotype("46,XY,t(9;22)(q34")
    assert "at " in window.last_error
    assert window.override_karyotype("46,XY,inv(9)(p12q13)")
    assert window.case_panel.karyotype_label.text() == "46,XY,inv(9)(p12q13)"


def test_the_case_report_shows_the_case_and_its_karyograms(window, tmp_path):
    for cell in window.case.cells:
        window.show_cell(cell)
        window.set_role(CellRole.ANALYSED)
    window.show_cell(window.case.cells[0])
    window.set_role(CellRole.KARYOGRAMMED)
    window.sign_case(SignRole.ANALYST, "Ann")
    pdf = window.export_case_report(tmp_path / "report.pdf")
    assert pdf is not None and pdf.read_bytes().startswith(b"%PDF")
    assert pdf.read_bytes().count(b"/Type /Page\n") + pdf.read_bytes().count(
        b"/Type /Page ") + pdf.read_bytes().count(b"/Type/Page") >= 2
    pages = render_case_report_pages(window.case, CaseReportInfo(
        DEFAULT_POLICIES[window.case.study]), tmp_path)
    assert len(pages) == 2  # the summary and the one karyogrammed cell
    summary = QImage(str(pages[0]))
    assert not summary.isNull() and summary.width() > 700
    ink = sum(summary.pixelColor(x, y).lightness() < 128
              for x in range(0, summary.width(), 4) for y in range(0, summary.height(), 4))
    assert ink > 200  # text was drawn


def test_ideograms_beside_the_pairs_follow_the_case_band_level(window):
    window.ideogram_action.trigger()
    layout = window.scene.layout
    assert set(layout.ideograms) == set(T.types())
    nine = window.scene.layout.slots[T.autosome(9)]
    beside = layout.ideograms[T.autosome(9)]
    assert nine.rect.x < beside.x and beside.right <= nine.rect.right
    for chromosome_id in nine.members:  # the homologs stand left of it
        assert layout.placements[chromosome_id].right <= beside.x
    window.case.set_study(window.case.study, 850)
    window.ideogram_action.trigger()
    window.ideogram_action.trigger()
    assert window.scene.ideogram_level == 850
    window.ideogram_action.trigger()
    assert not window.scene.layout.ideograms and window.scene.ideogram_level is None


def test_the_lab_policy_is_edited_kept_and_tallied(window):
    from karyo_gui.core.case import Study

    dialog = window.edit_policy()
    dialog.spins[(Study.CONSTITUTIONAL, "counted")].setValue(30)
    dialog.accept()
    assert window.settings.policy(Study.CONSTITUTIONAL).counted == 30
    assert window.settings.policy(Study.ONCOLOGY) == DEFAULT_POLICIES[Study.ONCOLOGY]
    assert "counted 0/30" in window.case_panel.tally_label.text()


def test_what_is_still_to_check_is_shown_before_signing(window, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from karyo_gui.core.case import Flag

    cell = window.current_cell
    window.set_role(CellRole.COUNTED)
    touching, unsure = cell.chromosomes[0], cell.chromosomes[1]
    touching.flags.add(Flag.CLUSTER)
    unsure.flags.add(Flag.LOW_CONFIDENCE)
    cell.chromosomes[2].flags.add(Flag.ORIENTATION_UNSURE)  # shown apart: not a question
    window.case_edited()
    text = window.case_panel.detail_label.text()
    assert "still to check: 2 chromosome(s) in 1 cell(s) with a role" in text
    assert "1 may change the count" in text
    asked = []
    monkeypatch.setattr(QInputDialog, "getText",
                        lambda parent, title, label, **kw: (asked.append(label), ("", False))[1])
    assert not window.sign_case(SignRole.ANALYST)  # the prompt is cancelled: nothing signed
    assert f"{cell.name}: 2 chromosome(s) to check, 1 of them may change the count" in asked[0]
    assert window.case.analyst is None
    # set by hand, a chromosome is settled; a cell without a role is not asked about
    window.reassign(touching.id, touching.label)
    window.reassign(unsure.id, unsure.label)
    assert "still to check" not in window.case_panel.detail_label.text()
    window.cell_list.setCurrentRow(1)
    window.current_cell.chromosomes[0].flags.add(Flag.CLUSTER)
    window.case_edited()
    assert "still to check" not in window.case_panel.detail_label.text()
