"""The case karyotype as a laboratory reports it: clonality, mosaics, chimeras, structural
abnormalities marked on chromosomes, cell roles against the lab's policy, the reviewer's
override, and the two-person sign-off."""

from __future__ import annotations

import pytest

from karyo_gui.core.case import (
    Case,
    CaseDetails,
    CellRole,
    SignOffRefused,
    SignRole,
    Study,
)
from karyo_gui.core.case_file import load_case, save_case
from karyo_gui.core.case_karyotype import (
    DEFAULT_POLICIES,
    case_karyotype,
    cell_line,
    compose_case,
    derivative_names,
    suggest_interpretation,
    tally,
)
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.review import corrected_chromosomes, reassign, swap
from karyo_gui.core.synthetic import generate_cell

_CELLS: dict[tuple[str, int], object] = {}


def cell_of(karyotype: str, index: int, name: str | None = None):
    """A generated cell whose given labels are the truth (cached: generating takes time)."""
    key = (karyotype, index)
    if key not in _CELLS:
        _CELLS[key] = generate_cell(karyotype, seed=100 + index)
    cell = _CELLS[key]
    copy = type(cell)(name=name or f"cell {index:02d}", chromosomes=[
        type(c)(id=c.id, image=c.image, given=c.given) for c in cell.chromosomes])
    return copy


def case_of(lines: list[tuple[str, int]], study: Study = Study.CONSTITUTIONAL) -> Case:
    cells, index = [], 0
    for karyotype, count in lines:
        for _ in range(count):
            index += 1
            cells.append(cell_of(karyotype, index % 4))
            cells[-1].name = f"cell {index:02d}"
    return Case("C1", cells, study=study)


def of_type(cell, label: T, which: int = 0) -> str:
    return [c.id for c in cell.chromosomes if c.label is label][which]


# ------------------------------------------------------------------ clonality


def test_a_chromosome_lost_in_one_cell_is_not_the_case_karyotype():
    case = case_of([("46,XX", 19), ("45,XX,-20", 1)])
    composition = compose_case(case)
    assert composition.karyotype == "46,XX"
    assert [(f.abnormality, len(f.cells)) for f in composition.single_cell_findings] == [
        ("-20", 1)]
    assert "not clonal" not in composition.karyotype


@pytest.mark.parametrize(("lines", "study", "expected"), [
    ([("45,X", 12), ("46,XX", 8)], Study.CONSTITUTIONAL, "mos 45,X[12]/46,XX[8]"),
    ([("46,XY", 2), ("47,XY,+21", 18)], Study.CONSTITUTIONAL, "mos 47,XY,+21[18]/46,XY[2]"),
    ([("46,XX", 10), ("46,XY", 10)], Study.CONSTITUTIONAL, "chi 46,XX[10]/46,XY[10]"),
    ([("47,XY,+21", 20)], Study.CONSTITUTIONAL, "47,XY,+21"),
    ([("47,XXY", 5), ("46,XY", 15)], Study.CONSTITUTIONAL, "mos 47,XXY[5]/46,XY[15]"),
    ([("47,XY,+8", 12), ("46,XY", 8)], Study.ONCOLOGY, "47,XY,+8[12]/46,XY[8]"),
    ([("46,XY", 20)], Study.ONCOLOGY, "46,XY[20]"),
    ([("45,XY,-7", 3), ("46,XY", 17)], Study.ONCOLOGY, "45,XY,-7[3]/46,XY[17]"),
    ([("47,XY,+8", 2), ("46,XY", 18)], Study.ONCOLOGY, "47,XY,+8[2]/46,XY[18]"),
])
def test_mosaics_chimeras_and_clones_are_written_by_the_iscn_rules(lines, study, expected):
    assert compose_case(case_of(lines, study)).karyotype == expected


def test_a_loss_in_two_cells_is_not_a_clone_but_a_gain_in_two_is():
    loss = compose_case(case_of([("45,XY,-7", 2), ("46,XY", 18)], Study.ONCOLOGY))
    assert loss.karyotype == "46,XY[20]"
    assert [(f.abnormality, len(f.cells)) for f in loss.single_cell_findings] == [("-7", 2)]
    gain = compose_case(case_of([("47,XY,+8", 1), ("46,XY", 19)], Study.ONCOLOGY))
    assert gain.karyotype == "46,XY[20]"
    assert gain.single_cell_findings[0].abnormality == "+8"


def test_clones_list_their_cells_largest_first_normal_last():
    composition = compose_case(case_of([("46,XY", 9), ("47,XY,+8", 7), ("45,XY,-7", 4)],
                                       Study.ONCOLOGY))
    assert [(c.karyotype.text, len(c.cells)) for c in composition.clones] == [
        ("47,XY,+8[7]", 7), ("45,XY,-7[4]", 4), ("46,XY[9]", 9)]
    assert composition.karyotype == "47,XY,+8[7]/45,XY,-7[4]/46,XY[9]"
    assert composition.as_dict()["clones"][0] == {"karyotype": "47,XY,+8[7]", "cells": 7}


# ------------------------------------------------------------------ structural


def test_a_translocation_marked_on_both_derivatives_reads_as_balanced():
    case = case_of([("46,XY", 4)])
    for cell in case.cells:
        ids = (of_type(cell, T.autosome(9)), of_type(cell, T.autosome(22)))
        cell.mark_abnormality("t(9;22)(q34.1;q11.2)", ids, by="ann")
    assert cell_line(case.cells[0]).text == "46,XY,t(9;22)(q34.1;q11.2)"
    assert compose_case(case).karyotype == "46,XY,t(9;22)(q34.1;q11.2)"
    names = derivative_names(case.cells[0])
    assert sorted(names.values()) == ["der(22)", "der(9)"]


def test_a_robertsonian_fusion_is_one_chromosome_for_two():
    case = case_of([("45,XX,-14", 3)])
    for cell in case.cells:  # the fused chromosome was typed 13 by the model
        cell.mark_abnormality("der(13;14)(q10;q10)", (of_type(cell, T.autosome(13)),))
    assert compose_case(case).karyotype == "45,XX,der(13;14)(q10;q10)"


def test_a_deletion_and_a_gain_together_in_iscn_order():
    case = case_of([("47,XX,+8", 2)])
    for cell in case.cells:
        cell.mark_abnormality("del(5)(q13q33)", (of_type(cell, T.autosome(5)),))
    assert compose_case(case).karyotype == "47,XX,del(5)(q13q33),+8"


def test_an_extra_derivative_is_written_as_a_gain_of_it_not_of_its_chromosome():
    case = case_of([("47,XY,+22", 2)])
    for cell in case.cells:
        cell.mark_abnormality("+der(22)t(9;22)(q34;q11.2)", (of_type(cell, T.autosome(22), 2),))
    assert compose_case(case).karyotype == "47,XY,+der(22)t(9;22)(q34;q11.2)"


def test_a_structural_change_in_one_cell_is_a_single_cell_finding():
    case = case_of([("46,XY", 10)])
    cell = case.cells[3]
    cell.mark_abnormality("del(7)(q22)", (of_type(cell, T.autosome(7)),))
    composition = compose_case(case)
    assert composition.karyotype == "46,XY"
    assert composition.single_cell_findings[0].abnormality == "del(7)(q22)"
    assert composition.single_cell_findings[0].cells == (cell.name,)


def test_a_mark_that_does_not_read_is_named_and_the_cell_left_out():
    case = case_of([("46,XY", 3)])
    case.cells[0].abnormalities.clear()
    case.cells[0].mark_abnormality("t(9;22)(q99;q11)", (case.cells[0].chromosomes[0].id,))
    composition = compose_case(case)
    assert composition.karyotype == "46,XY"
    assert any("q99" in problem and case.cells[0].name in problem
               for problem in composition.problems)


# ------------------------------------------------------------------ roles and policy


def test_the_karyotype_rests_on_the_cells_with_a_role_once_any_has_one():
    case = case_of([("46,XX", 3), ("45,X", 3)])
    assert compose_case(case).karyotype == "mos 45,X[3]/46,XX[3]"
    assert "no cell has a role" in compose_case(case).basis
    for cell in case.cells[:3]:
        cell.set_role(CellRole.COUNTED, True, by="ann")
    composition = compose_case(case)
    assert composition.karyotype == "46,XX"
    assert composition.cells == tuple(c.name for c in case.cells[:3])


def test_tally_against_the_lab_policy_says_what_is_missing():
    case = case_of([("46,XX", 6)])
    for cell in case.cells:
        cell.set_role(CellRole.COUNTED, True, by="ann")
    for cell in case.cells[:5]:
        cell.set_role(CellRole.ANALYSED, True, by="ann")
    counts = tally(case, DEFAULT_POLICIES[Study.CONSTITUTIONAL])
    assert counts.done == {CellRole.COUNTED: 6, CellRole.ANALYSED: 5, CellRole.KARYOGRAMMED: 0}
    assert counts.missing == {CellRole.COUNTED: 14, CellRole.ANALYSED: 0,
                              CellRole.KARYOGRAMMED: 2}
    assert counts.text().endswith("missing 14 counted, 2 karyogrammed")
    oncology = tally(case, DEFAULT_POLICIES[Study.ONCOLOGY])
    assert oncology.missing[CellRole.ANALYSED] == 15
    assert not oncology.complete


def test_role_changes_go_in_the_audit_trail_and_leave_a_sign_off_valid(tmp_path):
    case = case_of([("46,XX", 1)])
    cell = case.cells[0]
    from karyo_gui.core.case import CellStatus

    cell.set_status(CellStatus.SIGNED_OFF, by="ann")
    cell.set_role(CellRole.KARYOGRAMMED, True, by="ann")
    assert cell.audit[-1].action == "role" and cell.audit[-1].after == "karyogrammed"
    path = tmp_path / "c.karyo.json"
    save_case(case, path)
    again = load_case(path).cells[0]
    assert again.status is CellStatus.SIGNED_OFF  # the digest still checks out
    assert again.roles == {CellRole.KARYOGRAMMED}


# ------------------------------------------------------------------ override, sign-off


def test_the_reviewer_override_is_stated_and_recorded():
    case = case_of([("46,XX", 2)])
    composed = compose_case(case).karyotype
    case.override_karyotype("46,XX,inv(9)(p12q13)", composed, by="ann", reason="seen by eye")
    assert case_karyotype(case) == "46,XX,inv(9)(p12q13)"
    assert case.audit[-1].action == "karyotype"
    assert case.audit[-1].before == "46,XX" and case.audit[-1].after == "46,XX,inv(9)(p12q13)"
    case.override_karyotype(None, composed, by="ann")
    assert case_karyotype(case) == "46,XX"


@pytest.mark.parametrize("checker", ["Ann Smith", "ann smith", "  Ann   Smith ", "ANN SMITH"])
def test_the_checker_must_be_another_person(checker):
    case = case_of([("46,XX", 1)])
    case.sign(SignRole.ANALYST, "Ann Smith", "46,XX")
    with pytest.raises(SignOffRefused, match="different person"):
        case.sign(SignRole.CHECKER, checker, "46,XX")
    assert not case.is_final


def test_two_person_sign_off_makes_the_case_final_and_read_only():
    case = case_of([("46,XX", 1)])
    with pytest.raises(SignOffRefused, match="analyst signs first"):
        case.sign(SignRole.CHECKER, "Bob", "46,XX")
    with pytest.raises(SignOffRefused, match="name"):
        case.sign(SignRole.ANALYST, "   ", "46,XX")
    case.sign(SignRole.ANALYST, "Ann", "46,XX")
    with pytest.raises(PermissionError, match="reopen"):
        case.set_details(CaseDetails(patient_id="P-1"))
    with pytest.raises(SignOffRefused, match="karyotype changed"):
        case.sign(SignRole.CHECKER, "Bob", "47,XX,+21")
    case.sign(SignRole.CHECKER, "Bob", "46,XX")
    assert case.is_final
    assert [entry.by for entry in case.audit if entry.action == "sign"] == ["Ann", "Bob"]
    case.reopen(by="Ann", reason="new cells")
    assert not case.signatures and case.audit[-1].action == "reopen"


def test_the_case_file_keeps_everything_a_report_needs(tmp_path):
    case = case_of([("46,XY", 2)], Study.ONCOLOGY)
    cell = case.cells[0]
    cell.set_role(CellRole.ANALYSED, True, by="ann")
    cell.mark_abnormality("t(9;22)(q34.1;q11.2)",
                          (of_type(cell, T.autosome(9)), of_type(cell, T.autosome(22))), by="ann")
    case.set_details(CaseDetails(patient_id="P-17", indication="CML?", specimen_type="bone "
                                 "marrow", culture="24 h unstimulated", interpretation="x"))
    case.set_study(Study.ONCOLOGY, 400, by="ann")
    case.override_karyotype("46,XY,t(9;22)(q34.1;q11.2)[20]", "46,XY[2]", by="ann")
    case.sign(SignRole.ANALYST, "Ann", "46,XY,t(9;22)(q34.1;q11.2)[20]")
    case.sign(SignRole.CHECKER, "Bob", "46,XY,t(9;22)(q34.1;q11.2)[20]")
    path = tmp_path / "case.karyo.json"
    save_case(case, path)
    again = load_case(path)
    assert again.study is Study.ONCOLOGY and again.band_level == 400
    assert again.details == case.details
    assert again.karyotype_override.text == "46,XY,t(9;22)(q34.1;q11.2)[20]"
    assert [(s.role, s.name, s.at) for s in again.signatures] == [
        (s.role, s.name, s.at) for s in case.signatures]
    assert again.is_final
    assert again.cells[0].roles == {CellRole.ANALYSED}
    assert again.cells[0].abnormalities == cell.abnormalities
    assert [e.action for e in again.audit] == [e.action for e in case.audit]


def test_a_hand_made_signature_by_the_same_person_is_not_kept(tmp_path):
    import json

    case = case_of([("46,XX", 1)])
    case.sign(SignRole.ANALYST, "Ann", "46,XX")
    path = tmp_path / "case.karyo.json"
    save_case(case, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    forged = dict(document["case"]["signatures"][0], role="checker", name="ANN")
    document["case"]["signatures"].append(forged)
    path.write_text(json.dumps(document), encoding="utf-8")
    again = load_case(path)
    assert not again.is_final and again.checker is None
    assert any("different person" in problem for problem in again.problems)


def test_band_level_must_be_an_iscn_level():
    case = case_of([("46,XX", 1)])
    with pytest.raises(ValueError, match="550"):
        case.set_study(Study.CONSTITUTIONAL, 500)


# ------------------------------------------------------------------ corrections, wording


def test_manual_corrections_count_chromosomes_not_audit_entries():
    cell = cell_of("46,XX", 1)
    for chromosome in cell.chromosomes:  # the model's call is the given type here
        chromosome.assigned = chromosome.given
    first = cell.chromosomes[0]
    other = next(c for c in cell.chromosomes if c.label is not first.label)
    drag = reassign(cell, first.id, other.label, "ann")
    drag.apply()
    drag.revert()
    swap(cell, first.id, other.id, "ann").apply()
    assert len([e for e in cell.audit if e.action == "label"]) >= 4
    assert corrected_chromosomes(cell) == 2


def test_the_suggested_interpretation_names_common_findings():
    down = compose_case(case_of([("47,XY,+21", 20)]))
    assert "Down syndrome" in suggest_interpretation(down, Study.CONSTITUTIONAL)
    turner = compose_case(case_of([("45,X", 12), ("46,XX", 8)]))
    text = suggest_interpretation(turner, Study.CONSTITUTIONAL)
    assert "Turner syndrome" in text and "12 of 20 cells" in text and "mosaicism" in text
    normal = compose_case(case_of([("46,XX", 19), ("45,XX,-20", 1)]))
    text = suggest_interpretation(normal, Study.CONSTITUTIONAL)
    assert text.startswith("Normal female karyotype") and "-20 in 1 cell" in text


def test_the_suggestion_names_a_robertsonian_carrier_and_the_philadelphia_translocation():
    case = case_of([("45,XX,-14", 3)])
    for cell in case.cells:
        cell.mark_abnormality("der(13;14)(q10;q10)", (of_type(cell, T.autosome(13)),))
    text = suggest_interpretation(compose_case(case), Study.CONSTITUTIONAL)
    assert "Robertsonian translocation, der(13;14)(q10;q10) (balanced" in text
    leukaemia = case_of([("46,XY", 3)], Study.ONCOLOGY)
    for cell in leukaemia.cells:
        cell.mark_abnormality("t(9;22)(q34.1;q11.2)", (of_type(cell, T.autosome(9)),
                                                      of_type(cell, T.autosome(22))))
    text = suggest_interpretation(compose_case(leukaemia), Study.ONCOLOGY)
    assert "Philadelphia" in text and "3 of 3 cells" in text


def test_a_signed_case_whose_cells_were_changed_outside_karyo_opens_unsigned(tmp_path):
    import json

    case = case_of([("46,XX", 1)])
    case.sign(SignRole.ANALYST, "Ann", "46,XX")
    case.sign(SignRole.CHECKER, "Bob", "46,XX")
    path = tmp_path / "case.karyo.json"
    save_case(case, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["case"]["cells"][0]["chromosomes"][0]["given"] = "Y"  # a hand edit
    path.write_text(json.dumps(document), encoding="utf-8")
    again = load_case(path)
    assert not again.signatures and not again.is_final
    assert any("signed as 46,XX" in problem for problem in again.problems)
    assert again.audit[-1].action == "reopen"


def test_a_schema_2_case_file_opens_with_no_roles_marks_or_signatures(tmp_path):
    import json

    case = case_of([("46,XX", 2)])
    path = tmp_path / "old.karyo.json"
    save_case(case, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["schema_version"] = 2
    for key in ("study", "band_level", "details", "karyotype_override", "signatures", "audit"):
        del document["case"][key]
    for cell in document["case"]["cells"]:
        del cell["roles"], cell["abnormalities"]
    path.write_text(json.dumps(document), encoding="utf-8")
    again = load_case(path)
    assert again.study is Study.CONSTITUTIONAL and again.band_level is None
    assert not again.signatures and again.details == CaseDetails()
    assert all(not cell.roles and not cell.abnormalities for cell in again.cells)
    assert compose_case(again).karyotype == "46,XX"
