"""The karyotype of a case, composed from its cells by the ISCN rules of clonality.

Each cell's own line comes from its labels (numerical changes) and the structural
abnormalities a reviewer marked on its chromosomes (``cell_line``). The case karyotype
(``compose_case``) then follows ISCN:

* a **clone** is at least two cells with the same gain or structural abnormality, or at
  least three cells with the same loss; anything seen in fewer cells is a single-cell (non-
  clonal) finding, listed apart and not written into the karyotype (a chromosome lost while
  spreading does not make the case "45,XX,-20");
* cells with the same clonal abnormalities form one cell line; lines are written largest
  first, the normal line last, each with its cell count in brackets:
  ``mos 45,X[12]/46,XX[8]``, ``47,XY,+21[18]/46,XY[2]``;
* constitutional studies write ``mos`` before a mosaic and ``chi`` before a chimera (lines of
  one normal count whose only difference is the sex chromosomes: ``chi 46,XX[10]/46,XY[10]``),
  and a case of one line without its count (``47,XY,+21``); oncology studies write every
  line with its count and no prefix (``47,XY,+8[12]/46,XY[8]``, ``46,XY[20]``).

Which cells: those given a role (counted, analysed, karyogrammed); while no cell has one yet
(a case just classified), every classified cell, and ``CaseComposition.basis`` says so.
Sex chromosomes are compared with the case's own complement (the most common normal one):
45,X in a 46,XX case is a loss of an X (clonal from three cells). Cells far from diploid
(more than 57 chromosomes) are compared as whole lines. Acquired clonal evolution (stemline
and sidelines, ``idem``) is not worked out: lines are ordered by size.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from karyo_gui.core.case import Case, Cell, CellRole, CellStatus, Study
from karyo_gui.core.iscn import (
    NEAR_DIPLOID_MAX,
    Abnormality,
    CaseKaryotype,
    IscnError,
    Karyotype,
    order_abnormalities,
    parse_abnormality,
    parse_cell_line,
)
from karyo_gui.core.labels import ChromosomeType

CLONE_GAIN = 2  # cells with the same gain or structural abnormality make a clone
CLONE_LOSS = 3  # cells with the same loss
# (NEAR_DIPLOID_MAX: above it a cell is compared as a whole line, triploid and up)


@dataclass(frozen=True)
class CellPolicy:
    """How many cells a lab's policy asks for in a case."""

    counted: int
    analysed: int
    karyogrammed: int

    def needed(self, role: CellRole) -> int:
        return getattr(self, role.value)


DEFAULT_POLICIES = {
    Study.CONSTITUTIONAL: CellPolicy(counted=20, analysed=5, karyogrammed=2),
    Study.ONCOLOGY: CellPolicy(counted=20, analysed=20, karyogrammed=2),
}


@dataclass(frozen=True)
class Tally:
    done: dict[CellRole, int]
    needed: dict[CellRole, int]

    @property
    def missing(self) -> dict[CellRole, int]:
        return {role: max(0, self.needed[role] - self.done[role]) for role in CellRole}

    @property
    def complete(self) -> bool:
        return not any(self.missing.values())

    def text(self) -> str:
        """``counted 12/20 · analysed 5/5 · karyogrammed 1/2 — missing 8 counted, 1
        karyogrammed``"""
        parts = " · ".join(f"{role.value} {self.done[role]}/{self.needed[role]}"
                           for role in CellRole)
        missing = ", ".join(f"{n} {role.value}" for role, n in self.missing.items() if n)
        return f"{parts} — missing {missing}" if missing else f"{parts} — complete"


def tally(case: Case, policy: CellPolicy) -> Tally:
    done = {role: sum(role in cell.roles for cell in case.cells) for role in CellRole}
    return Tally(done, {role: policy.needed(role) for role in CellRole})


# ----------------------------------------------------------------------- one cell


class MarkProblem(ValueError):
    """A marked abnormality karyo cannot read; the message names the cell and the mark."""


def _objects_for(abnormality: Abnormality) -> int:
    """How many chromosomes of the cell carry the abnormality in place: both derivatives of
    a reciprocal translocation or insertion, one fused chromosome for der(13;14) / rob, one
    for the rest."""
    if abnormality.kind in ("t", "ins") and abnormality.derivation is None:
        return len(abnormality.chromosomes)
    return 1


def _stands_for(abnormality: Abnormality) -> tuple[str, ...]:
    """The normal chromosomes the marked ones take the place of."""
    if abnormality.sign == "+":
        return ()  # an extra abnormal chromosome: it replaces none
    if abnormality.kind in ("t", "ins", "rob", "dic") and abnormality.derivation is None:
        return abnormality.chromosomes
    if abnormality.kind == "der" and abnormality.derivation is None:
        return abnormality.chromosomes  # der(13;14): one chromosome for a 13 and a 14
    return abnormality.chromosomes[:1]


def cell_line(cell: Cell) -> Karyotype:
    """The cell's own ISCN line: its count, its sex chromosomes, the numerical changes its
    labels show and the structural abnormalities marked on it (a marked derivative stands
    for the normal chromosome(s) it replaces, so t(9;22) does not read as -9,-22,+9,+22).
    Raises MarkProblem when a mark does not read as ISCN."""
    counts = cell.label_counts()
    structural = []
    for marked in cell.abnormalities:
        try:
            abnormality = parse_abnormality(marked.iscn)
        except IscnError as error:
            raise MarkProblem(f"cell {cell.name}: the marked abnormality {marked.iscn!r} "
                              f"does not read as ISCN: {error}") from None
        structural.append(abnormality)
        labels = [cell.chromosome(cid).label for cid in marked.chromosome_ids
                  if any(c.id == cid for c in cell.chromosomes)]
        stands_for = _stands_for(abnormality)
        if abnormality.sign == "+" or len(labels) != _objects_for(abnormality):
            stands_for = () if abnormality.sign == "+" else tuple(
                label.display_name for label in labels)  # marked on too few/many: as labelled
        for label in labels:
            counts[label] -= 1
        for name in stands_for:
            counts[ChromosomeType.from_name(name)] += 1
    sex = "X" * counts.get(ChromosomeType.X, 0) + "Y" * counts.get(ChromosomeType.Y, 0)
    items: list[Abnormality] = []
    for number in range(1, 23):
        deviation = counts.get(ChromosomeType.autosome(number), 0) - 2
        items.extend([Abnormality("+" if deviation > 0 else "-", (str(number),))]
                     * abs(deviation))
    markers = counts.get(ChromosomeType.UNCLASSIFIED, 0)
    if markers > 0:
        items.append(Abnormality("mar", (), sign="+", copies=markers))
    return Karyotype(len(cell), sex, order_abnormalities(items + structural))


# ----------------------------------------------------------------------- the case


@dataclass(frozen=True)
class Clone:
    karyotype: Karyotype  # with its cell count
    cells: tuple[str, ...]  # names of its cells


@dataclass(frozen=True)
class SingleCellFinding:
    """An abnormality seen in too few cells to be clonal."""

    abnormality: str  # its ISCN text: "-20", "+X", "t(4;11)(q21;q23)", "69,XXY"
    cells: tuple[str, ...]

    def text(self) -> str:
        where = ", ".join(self.cells)
        plural = "s" if len(self.cells) > 1 else ""
        return f"{self.abnormality} in {len(self.cells)} cell{plural} ({where})"


@dataclass(frozen=True)
class CaseComposition:
    karyotype: str  # composed ISCN ("" when there is no cell to compose from)
    clones: tuple[Clone, ...]
    single_cell_findings: tuple[SingleCellFinding, ...]
    basis: str  # which cells it rests on, in words
    cells: tuple[str, ...]  # their names
    problems: tuple[str, ...] = ()  # cells left out, and why

    def as_dict(self) -> dict:
        return {
            "karyotype": self.karyotype,
            "clones": [{"karyotype": clone.karyotype.text, "cells": len(clone.cells)}
                       for clone in self.clones],
            "single_cell_findings": [
                {"abnormality": f.abnormality, "cells": list(f.cells)}
                for f in self.single_cell_findings
            ],
            "basis": self.basis,
        }


def _is_loss(atom: str) -> bool:
    return atom.startswith("-")


def _threshold(atom: str) -> int:
    return CLONE_LOSS if _is_loss(atom) else CLONE_GAIN


def _case_sex(lines: list[Karyotype]) -> str:
    sexes = Counter(line.sex for line in lines if line.count <= NEAR_DIPLOID_MAX)
    normal = Counter({sex: n for sex, n in sexes.items() if sex in ("XX", "XY")})
    chosen = normal or sexes
    if not chosen:
        return ""
    best = max(chosen.values())
    return sorted(sex for sex, n in chosen.items() if n == best)[0]


def _atoms(line: Karyotype, case_sex: str) -> list[tuple[str, Abnormality | None]]:
    """What sets a cell's line apart from the case's normal complement, one atom per change
    (a double loss of 4 is two atoms, so one lost 4 in three cells is a clone of its own)."""
    if line.count > NEAR_DIPLOID_MAX:
        return [(line.text, None)]
    atoms: list[tuple[str, Abnormality | None]] = []
    for letter in "XY":
        difference = line.sex.count(letter) - case_sex.count(letter)
        atoms += [((f"+{letter}" if difference > 0 else f"-{letter}"), None)] * abs(difference)
    seen: Counter[str] = Counter()
    for abnormality in line.abnormalities:
        for _ in range(abnormality.copies if abnormality.kind == "mar" else 1):
            text = abnormality.text if abnormality.kind != "mar" else "+mar"
            seen[text] += 1
            key = text if seen[text] == 1 else f"{text}#{seen[text]}"
            atoms.append((key, abnormality))
    return atoms


def _atom_text(atom: str) -> str:
    return atom.split("#")[0]


def _line_of(atoms: list[tuple[str, Abnormality | None]], case_sex: str) -> Karyotype:
    """The ISCN line of a clone from its clonal atoms."""
    for atom, _ in atoms:
        if atom[0].isdigit():  # a whole polyploid line
            return parse_cell_line(atom)
    x, y = case_sex.count("X"), case_sex.count("Y")
    items: list[Abnormality] = []
    markers = 0
    for atom, abnormality in atoms:
        text = _atom_text(atom)
        if text in ("+X", "-X"):
            x += 1 if text[0] == "+" else -1
        elif text in ("+Y", "-Y"):
            y += 1 if text[0] == "+" else -1
        elif text == "+mar":
            markers += 1
        elif abnormality is not None:
            items.append(abnormality)
    if markers:
        items.append(Abnormality("mar", (), sign="+", copies=markers))
    sex = "X" * max(x, 0) + "Y" * max(y, 0)
    ordered = order_abnormalities(items)
    count = 44 + len(sex) + sum(item.count_change for item in ordered)
    return Karyotype(count, sex, ordered)


def composition_cells(case: Case) -> tuple[list[Cell], str]:
    """The cells the case karyotype rests on, and in words which they are."""
    with_role = [cell for cell in case.cells if cell.roles]
    if with_role:
        return with_role, f"{len(with_role)} cells with a role (counted, analysed, karyogrammed)"
    classified = [cell for cell in case.cells if cell.is_classified and len(cell)]
    reviewed = sum(cell.status is not CellStatus.UNREVIEWED for cell in classified)
    return classified, (f"all {len(classified)} classified cells ({reviewed} reviewed): no "
                        "cell has a role yet")


def compose_case(case: Case) -> CaseComposition:
    """The case karyotype by the ISCN clonality rules (see the module's docstring)."""
    cells, basis = composition_cells(case)
    problems: list[str] = []
    lines: dict[str, Karyotype] = {}
    for cell in cells:
        try:
            lines[cell.name] = cell_line(cell)
        except MarkProblem as error:
            problems.append(str(error))
    if not lines:
        return CaseComposition("", (), (), basis, (), tuple(problems))
    case_sex = _case_sex(list(lines.values()))
    atoms = {name: _atoms(line, case_sex) for name, line in lines.items()}
    carriers: dict[str, list[str]] = defaultdict(list)
    for name, cell_atoms in atoms.items():
        for atom, _ in cell_atoms:
            carriers[atom].append(name)
    clonal = {atom for atom, names in carriers.items() if len(names) >= _threshold(atom)}
    groups: dict[frozenset[str], list[str]] = defaultdict(list)
    for name, cell_atoms in atoms.items():
        groups[frozenset(atom for atom, _ in cell_atoms if atom in clonal)].append(name)
    clones = []
    for key, names in groups.items():
        line = _line_of([(atom, abn) for atom, abn in atoms[names[0]] if atom in key], case_sex)
        clones.append(Clone(Karyotype(line.count, line.sex, line.abnormalities, len(names)),
                            tuple(names)))
    clones.sort(key=lambda c: (c.karyotype.is_normal, -len(c.cells), c.karyotype.text))
    findings: dict[str, dict[str, None]] = defaultdict(dict)  # ordered sets of cell names
    for atom, names in carriers.items():
        if atom not in clonal:
            findings[_atom_text(atom)].update(dict.fromkeys(names))
    single = tuple(SingleCellFinding(text, tuple(names)) for text, names in sorted(
        findings.items(), key=lambda item: (-len(item[1]), item[0])))
    return CaseComposition(_write(clones, case.study), tuple(clones), single, basis,
                           tuple(lines), tuple(problems))


def _write(clones: list[Clone], study: Study) -> str:
    lines = tuple(clone.karyotype for clone in clones)
    if study is Study.ONCOLOGY:
        return CaseKaryotype(lines).text
    if len(lines) == 1:
        only = lines[0]
        return Karyotype(only.count, only.sex, only.abnormalities).text
    chimera = (all(not line.abnormalities for line in lines)
               and len({line.count for line in lines}) == 1
               and len({line.sex for line in lines}) == len(lines))
    return CaseKaryotype(lines, "chi" if chimera else "mos").text


def case_karyotype(case: Case, composition: CaseComposition | None = None) -> str:
    """What the report states: the reviewer's override when there is one, else composed."""
    if case.karyotype_override is not None:
        return case.karyotype_override.text
    return (composition or compose_case(case)).karyotype


# ------------------------------------------------------------------ interpretation

_SYNDROMES = {
    "+21": "trisomy 21, consistent with a diagnosis of Down syndrome",
    "+18": "trisomy 18, consistent with a diagnosis of Edwards syndrome",
    "+13": "trisomy 13, consistent with a diagnosis of Patau syndrome",
}
_SEX_FINDINGS = {
    "X": "monosomy X, consistent with a diagnosis of Turner syndrome",
    "XXY": "an additional X chromosome in a male, consistent with a diagnosis of "
           "Klinefelter syndrome",
    "XXX": "an additional X chromosome in a female (trisomy X)",
    "XYY": "an additional Y chromosome in a male (47,XYY)",
}
# recurrent acquired rearrangements, by kind and chromosomes (any breakpoint resolution)
_RECURRENT = {
    ("t", ("9", "22")): "the Philadelphia translocation (BCR::ABL1), as in chronic myeloid "
                        "leukaemia and Ph-positive acute lymphoblastic leukaemia; "
                        "confirmation by FISH or RT-PCR is suggested",
    ("t", ("15", "17")): "t(15;17) (PML::RARA), as in acute promyelocytic leukaemia",
    ("t", ("8", "21")): "t(8;21) (RUNX1::RUNX1T1), as in acute myeloid leukaemia",
    ("inv", ("16",)): "inv(16) (CBFB::MYH11), as in acute myeloid leukaemia",
    ("t", ("11", "14")): "t(11;14) (CCND1::IGH), as in mantle cell lymphoma and myeloma",
}
_KINDS = {
    "t": "a reciprocal translocation", "rob": "a Robertsonian translocation",
    "der": "a derivative chromosome", "del": "a deletion", "dup": "a duplication",
    "inv": "an inversion", "i": "an isochromosome", "r": "a ring chromosome",
    "ins": "an insertion", "add": "additional material of unknown origin",
    "dic": "a dicentric chromosome",
}


def suggest_interpretation(composition: CaseComposition, study: Study) -> str:
    """A starting text for the report's interpretation, for common findings; the reviewer
    edits it. Empty when there is nothing to compose from."""
    clones = composition.clones
    if not clones:
        return ""
    sentences = []
    abnormal = [clone for clone in clones if not clone.karyotype.is_normal]
    total = sum(len(clone.cells) for clone in clones)
    if not abnormal:
        sex = clones[0].karyotype.sex
        who = {"XX": "female", "XY": "male"}.get(sex, "")
        sentences.append(f"Normal {who + ' ' if who else ''}karyotype in all {total} cells "
                         "examined. No numerical or structural abnormality was detected at "
                         "this band level.".replace("  ", " "))
    for clone in abnormal:
        line = clone.karyotype
        what = [_SYNDROMES[a.text] for a in line.abnormalities if a.text in _SYNDROMES]
        if line.sex in _SEX_FINDINGS and line.count in (45, 47):
            what.append(_SEX_FINDINGS[line.sex])
        for item in line.abnormalities:
            recurrent = _RECURRENT.get((item.kind, item.chromosomes))
            robertsonian = (item.kind in ("der", "rob") and item.derivation is None
                            and len(item.chromosomes) == 2
                            and set(item.chromosomes) <= {"13", "14", "15", "21", "22"})
            if recurrent and study is Study.ONCOLOGY:
                what.append(f"{recurrent}: {item.text}")
            elif robertsonian:
                what.append(f"a Robertsonian translocation, {item.text} (balanced: 45 "
                            "chromosomes with the long arms of both present)"
                            if line.count == 45 else
                            f"a Robertsonian translocation, {item.text} (unbalanced)")
            elif item.is_structural and item.kind in _KINDS:
                balanced = (item.count_change == 0 and item.kind in ("t", "inv", "ins")) or (
                    item.kind == "rob")
                what.append(f"{_KINDS[item.kind]}, {item.text}"
                            + (" (apparently balanced)" if balanced else ""))
        if not what:
            what = [f"an abnormal karyotype, {line.text}"]
        share = (f" in {len(clone.cells)} of {total} cells"
                 if len(clones) > 1 or study is Study.ONCOLOGY else "")
        finding = "; ".join(what)
        sentences.append(f"{finding[0].upper()}{finding[1:]}{share}.")
    if len(clones) > 1 and study is Study.CONSTITUTIONAL:
        sentences.append("The result indicates mosaicism."
                         if not composition.karyotype.startswith("chi")
                         else "The result indicates chimerism.")
    if composition.single_cell_findings:
        listed = "; ".join(f.text() for f in composition.single_cell_findings)
        sentences.append(f"Non-clonal finding(s), not included in the karyotype: {listed}.")
    return " ".join(sentences)


def derivative_names(cell: Cell) -> dict[str, str]:
    """Chromosome id -> what the karyogram writes under it: ``der(9)`` and ``der(22)`` for
    the two chromosomes of a t(9;22), ``del(5)``, ``inv(9)``, ``der(13;14)``, ``i(17)``."""
    names = {}
    for marked in cell.abnormalities:
        text = marked.iscn.lstrip("+")
        short = text[: text.find(")") + 1] if ")" in text else text
        for chromosome_id in marked.chromosome_ids:
            reciprocal = text.startswith(("t(", "ins(")) and len(marked.chromosome_ids) > 1
            if reciprocal and any(c.id == chromosome_id for c in cell.chromosomes):
                names[chromosome_id] = f"der({cell.chromosome(chromosome_id).label.display_name})"
            else:
                names[chromosome_id] = short
    return names
