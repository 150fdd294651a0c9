"""Screenshots of a case as a laboratory reports it, for the README: the window with its Case
panel, the structural-abnormality dialog with a translocation chosen on the ideograms, and
the pages of the case report.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/case_screenshot.py \\
        [--out docs] [--cells 6] [--no-model]

A generated case of ``--cells`` cells of 46,XY in which the reviewer marked
t(9;22)(q34.1;q11.2) on the der(9) and der(22) of every cell but one (that one shows
46,XY), roles set (all counted, five analysed, two karyogrammed), details typed in, and the
analyst's signature. Writes OUT/case-window.png, OUT/case-abnormality.png and
OUT/case-report-N.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

from karyo_gui.core.case import Case, CaseDetails, CellRole, SignRole, Study
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.case_report import CaseReportInfo, render_case_report_pages
from karyo_gui.qt.main_window import MainWindow


def wait_for(app: QApplication, done, timeout: float = 120.0) -> bool:
    end = time.perf_counter() + timeout
    while not done() and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)
    return done()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--no-model", action="store_true", help="keep the generated types")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(load_model=not args.no_model)
    window.ask_on_close = False
    window.resize(1560, 960)
    window.show()
    cells = [generate_cell("46,XY", seed=40 + k, name=f"cell {k + 1:02d}")
             for k in range(args.cells)]
    case = Case("CYT-2026-0417", cells, study=Study.ONCOLOGY)
    window.set_case(case, None, "generated")
    if not args.no_model and not wait_for(app, lambda: all(
            c.probabilities is not None for cell in cells for c in cell.chromosomes), 300):
        print(f"the cells were not classified: {window.model_problem}", file=sys.stderr)
        return 1
    for index, cell in enumerate(cells):
        window.cell_list.setCurrentRow(index)
        window.set_role(CellRole.ANALYSED if index < 5 else CellRole.COUNTED)
        if index < 2:
            window.set_role(CellRole.KARYOGRAMMED, True)
        if index == len(cells) - 1:
            continue
        nine = [c.id for c in cell.chromosomes if c.label is ChromosomeType.autosome(9)]
        twenty_two = [c.id for c in cell.chromosomes if c.label is ChromosomeType.autosome(22)]
        if nine and twenty_two:
            cell.mark_abnormality("t(9;22)(q34.1;q11.2)", (nine[0], twenty_two[0]),
                                  by=window.settings.reviewer)
            window.cell_edited(cell, [])
    case.set_details(CaseDetails(
        patient_id="P-004512", specimen_id="BM-26-1183", lab_id="CYTO-LAB-2",
        indication="suspected chronic myeloid leukaemia", specimen_type="bone marrow",
        culture="24 h unstimulated"))
    case.set_study(Study.ONCOLOGY, 400)
    window.case_edited()
    window.cell_list.setCurrentRow(0)
    first = cells[0]
    nine = next(c for c in first.chromosomes if c.label is ChromosomeType.autosome(9)
                and first.abnormality_of(c.id))
    window.select(nine.id)
    wait_for(app, lambda: False, 0.5)
    args.out.mkdir(parents=True, exist_ok=True)
    shots = [args.out / "case-window.png"]
    window.grab().save(str(shots[0]))

    dialog = window.mark_abnormality("t")
    dialog.second.setCurrentText("22")
    for which, wanted in ((0, ("q34.1", "q34")), (1, ("q11.2", "q11"))):
        shown = {band.name for band in dialog.ideograms[which].bands}
        dialog.choose_band(which, next(name for name in wanted if name in shown))
    dialog.resize(620, 760)
    wait_for(app, lambda: False, 0.3)
    shots.append(args.out / "case-abnormality.png")
    dialog.grab().save(str(shots[-1]))
    dialog.reject()

    composed = window.composition()
    from karyo_gui.core.case_karyotype import suggest_interpretation

    case.set_details(CaseDetails(**{**case.details.__dict__,
                                    "interpretation": suggest_interpretation(composed,
                                                                             case.study)}))
    window.sign_case(SignRole.ANALYST, "A. Analyst")
    classifier = window.service.classifier
    info = CaseReportInfo(window.settings.policy(case.study),
                          classifier.description if classifier else None)
    for page in render_case_report_pages(case, info, args.out, dpi=110):
        target = args.out / f"case-report-{page.stem.split('-')[-1]}.png"
        page.replace(target)
        shots.append(target)
    window.close()
    for shot in shots:
        print(f"wrote {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
