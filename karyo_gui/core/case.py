"""The domain model: a Case holds Cells (metaphases), a Cell holds Chromosomes (crops).

Labels of a chromosome, from weakest to strongest:
  * ``given``     the label its input came with (class folder of a labelled cell, generator);
  * ``predicted`` the classifier's argmax, with ``probabilities`` over the 24 types;
  * ``assigned``  the label after the karyotype-aware assignment of the whole cell;
  * ``manual``    a reviewer's correction (who, when).
``Chromosome.label`` is the strongest one present: what the karyogram shows.
"""

from __future__ import annotations

import enum
import getpass
import hashlib
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar

import numpy as np

from karyo_gui.core.images import is_dark_background
from karyo_gui.core.iscn import karyotype_string, sex_chromosomes
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.metaphase import MetaphaseImage, Region


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): still record something honest
        return "unknown"


class Flag(str, enum.Enum):
    """Why a chromosome deserves the reviewer's eye."""

    LOW_CONFIDENCE = "low_confidence"
    MOVED_BY_ASSIGNMENT = "moved_by_assignment"
    ORIENTATION_UNSURE = "orientation_unsure"
    # an X or Y call (or a crop that looked like one) below the bar a sex call needs, or in a
    # cell whose other sex is nearly as probable: the diagnosis waits for a person
    SEX_UNCERTAIN = "sex_uncertain"
    IMAGE_MISSING = "image_missing"
    IMAGE_CHANGED = "image_changed"
    # set by the chromosome finder on a whole metaphase image
    FINDER_UNSURE = "finder_unsure"  # found with a low score: a chromosome at all?
    CLUSTER = "cluster"  # too large or too wide for one chromosome: touching ones not separated?
    OVERLAP = "overlap"  # shares pixels with another chromosome: a crossing to check
    # looks more like a chromosome given another type than like its own homolog(s): a
    # swapped pair, or two unlike chromosomes given one type
    HOMOLOG_UNLIKE = "homolog_unlike"
    # set aside by the karyotype assignment as likely no chromosome of the cell (an object
    # the finder was unsure of that fits no free place: debris, a piece, two as one): not
    # counted in the karyotype until a reviewer gives it a type
    SET_ASIDE = "set_aside"
    # found faintly, below the finder's threshold: kept by the first assignment only where it
    # fills a free place of the karyotype (then the flag goes and FINDER_UNSURE stays), else
    # dropped from the cell (``core.assignment.drop_unplaced_candidates``)
    CANDIDATE = "candidate"
    # found faintly (a candidate the first assignment kept): it stays, and it never decides
    # the cell's sex, however often the cell is assigned again
    FAINT = "faint"


# what each flag asks of the reviewer. Type flags: the type may be wrong (these send N
# there, draw the doubt mark and count as "flagged"); orientation flags: the type is fine,
# the chromosome may stand upside down (shown apart; N visits them only when asked);
# information: said in the inspector and the JSON, asks nothing (the assignment gave a
# chromosome another type than the model's first choice, confidently)
TYPE_FLAGS = frozenset({Flag.LOW_CONFIDENCE, Flag.SEX_UNCERTAIN, Flag.HOMOLOG_UNLIKE})
ORIENTATION_FLAGS = frozenset({Flag.ORIENTATION_UNSURE})
INFORMATION_FLAGS = frozenset({Flag.MOVED_BY_ASSIGNMENT, Flag.FAINT})


class CellStatus(str, enum.Enum):
    UNREVIEWED = "unreviewed"
    REVIEWED = "reviewed"
    SIGNED_OFF = "signed_off"


class CellRole(str, enum.Enum):
    """What was done with a cell, in the guidelines' terms (ACMG E3.1.1): counted (its number
    of chromosomes confirmed), analysed (its banding checked, band by band) and karyogrammed
    (its karyogram goes in the report)."""

    COUNTED = "counted"
    ANALYSED = "analysed"
    KARYOGRAMMED = "karyogrammed"

    @property
    def letter(self) -> str:
        return self.value[0].upper()


class Study(str, enum.Enum):
    """Constitutional (blood, amniotic fluid: the karyotype one is born with) or oncology
    (bone marrow, tumour: acquired clones). It sets the lab's cell policy and how the case
    karyotype is written (``mos`` / ``chi`` only for constitutional mosaics and chimeras; an
    acquired karyotype always gives its cell counts)."""

    CONSTITUTIONAL = "constitutional"
    ONCOLOGY = "oncology"


@dataclass(frozen=True)
class MarkedAbnormality:
    """A structural abnormality a reviewer marked on one or two chromosomes of a cell: its
    ISCN text (``t(9;22)(q34.1;q11.2)``, ``del(5)(q13q33)``, ``der(13;14)(q10;q10)``) and the
    ids of the chromosomes that carry it (the der(9) and der(22) of a translocation)."""

    iscn: str
    chromosome_ids: tuple[str, ...]
    by: str
    at: datetime


@dataclass(frozen=True)
class Orientation:
    """How a crop is turned for display: rotation in degrees (multiple of 90), then mirror."""

    rotation: int = 0
    flipped: bool = False

    def __post_init__(self) -> None:
        if self.rotation % 90:
            raise ValueError(f"rotation must be a multiple of 90 degrees, not {self.rotation}")
        object.__setattr__(self, "rotation", self.rotation % 360)

    def rotated(self, degrees: int) -> Orientation:
        return Orientation(self.rotation + degrees, self.flipped)

    def mirrored(self) -> Orientation:
        return Orientation(self.rotation, not self.flipped)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The crop as displayed (counter-clockwise rotation, then left-right mirror)."""
        shown = np.rot90(image, self.rotation // 90)
        return np.fliplr(shown) if self.flipped else shown

    def displayed_size(self, width: int, height: int) -> tuple[int, int]:
        return (height, width) if self.rotation in (90, 270) else (width, height)


@dataclass(frozen=True)
class ManualLabel:
    label: ChromosomeType
    by: str
    at: datetime


@dataclass(frozen=True)
class Correction:
    """One entry of a cell's audit trail."""

    chromosome_id: str
    # "label" | "orientation" | "status" | "role" | "abnormality" | on a metaphase: "split" |
    # "join" | "delete" | "add" | "separate" (a crossing); on a case (``Case.audit``):
    # "details" | "karyotype" (an override) | "sign" | "reopen"
    action: str
    before: str
    after: str
    by: str
    at: datetime


@dataclass(eq=False)
class Chromosome:
    id: str
    image: np.ndarray | None  # 2-D uint8, dark bands on a light background
    source_path: str | None = None
    content_hash: str | None = None
    given: ChromosomeType | None = None
    predicted: ChromosomeType | None = None
    probabilities: np.ndarray | None = None  # shape (24,), sums to 1
    assigned: ChromosomeType | None = None
    manual: ManualLabel | None = None
    orientation: Orientation = field(default_factory=Orientation)
    flags: set[Flag] = field(default_factory=set)
    # where it lies in its cell's metaphase image (None for a crop that came cut out)
    region: Region | None = None
    found_score: float | None = None  # the finder's confidence that this is a chromosome
    # the model's embedding of the picture, for comparing homologs (kept in memory only:
    # a case file reopened compares them again once it is classified again)
    embedding: np.ndarray | None = field(default=None, repr=False)
    # the chromosome's picture cut other ways where it touches or crosses another (a finder's
    # or an annotation's cut: ``core.metaphase.other_cuts``), read with ``image`` by the
    # classifier; kept in memory only, and never for a chromosome drawn or edited by hand
    other_cuts: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def counted(self) -> bool:
        """Whether the cell's karyotype counts it: not when the assignment set it aside as
        likely no chromosome and no reviewer has labelled it since."""
        return self.manual is not None or Flag.SET_ASIDE not in self.flags

    @property
    def label(self) -> ChromosomeType:
        for candidate in (
            self.manual.label if self.manual else None,
            self.assigned,
            self.predicted,
            self.given,
        ):
            if candidate is not None:
                return candidate
        return ChromosomeType.UNCLASSIFIED

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels as displayed; (0, 0) when the image is missing."""
        if self.image is None:
            return (0, 0)
        height, width = self.image.shape[:2]
        return self.orientation.displayed_size(width, height)

    def displayed_image(self) -> np.ndarray | None:
        return None if self.image is None else self.orientation.apply(self.image)


@dataclass(eq=False)
class Cell:
    """One metaphase: the chromosome crops of one spread."""

    name: str
    chromosomes: list[Chromosome] = field(default_factory=list)
    source: str | None = None  # the folder it was loaded from
    status: CellStatus = CellStatus.UNREVIEWED
    model_id: str | None = None
    audit: list[Correction] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be loaded, and why
    # the whole metaphase image the chromosomes were found in (None: a cell of crops)
    metaphase: MetaphaseImage | None = None
    finder_id: str | None = None  # the chromosome finder that found them
    # set when the cell is signed off: sign_off_digest(cell) of what was signed, kept in the
    # case file and checked when it is opened again (see sign_off_digest)
    sign_off_digest: str | None = None
    # set when a case file claimed a sign-off that its digest does not confirm: the cell was
    # opened as reviewed, not signed off, and this says why ("modified outside karyo")
    sign_off_problem: str | None = None
    # what was done with it in the case (counted, analysed, karyogrammed)
    roles: set[CellRole] = field(default_factory=set)
    # structural abnormalities the reviewer marked (numerical ones come from the labels)
    abnormalities: list[MarkedAbnormality] = field(default_factory=list)
    # the last assignment's word on the cell's sex from its own chromosomes (log odds of XX
    # against XY) and the share of XX cells it assumed (0.5, or what the case's other cells
    # said: core.assignment.case_female_shares); not saved, the next assignment finds them
    sex_evidence: float | None = field(default=None, repr=False)
    sex_share: float = field(default=0.5, repr=False)

    @property
    def needs_finding(self) -> bool:
        """A metaphase image whose chromosomes have not been looked for yet (and whose
        image is at hand: a case file's missing image is not searched)."""
        return (
            self.metaphase is not None
            and not self.metaphase.missing
            and self.finder_id is None
            and not self.chromosomes
        )

    @property
    def bright_on_dark(self) -> bool:
        """Stained bright on a dark background (Q-banding, fluorescence) rather than dark on
        light (G-banding): a metaphase image that was inverted when read, or a cell most of
        whose crops have a dark border."""
        if self.metaphase is not None:
            return self.metaphase.inverted
        dark = [
            is_dark_background(image)
            for image in (c.image for c in self.chromosomes)
            if image is not None and image.ndim == 2 and image.size
        ]
        return bool(dark) and sum(dark) > len(dark) / 2

    def __len__(self) -> int:
        return len(self.chromosomes)

    def chromosome(self, chromosome_id: str) -> Chromosome:
        for chromosome in self.chromosomes:
            if chromosome.id == chromosome_id:
                return chromosome
        raise KeyError(f"cell {self.name} has no chromosome {chromosome_id!r}")

    def label_counts(self) -> Counter[ChromosomeType]:
        """Counts of the labels shown, of the chromosomes the karyotype counts."""
        return Counter(chromosome.label for chromosome in self.chromosomes if chromosome.counted)

    def given_counts(self) -> Counter[ChromosomeType]:
        """Counts of the labels the input came with (the truth of a labelled cell)."""
        return Counter(c.given for c in self.chromosomes if c.given is not None)

    @property
    def is_classified(self) -> bool:
        """Whether any chromosome has a label at all (given, predicted, assigned or manual)."""
        return any(
            c.given is not None or c.predicted is not None or c.assigned is not None or c.manual
            for c in self.chromosomes
        )

    @property
    def sex(self) -> str:
        """Sex chromosomes of the labels shown, written out: ``XX``, ``XY``, ``X``, ``XXY``..."""
        return sex_chromosomes(self.label_counts())

    @property
    def karyotype(self) -> str:
        """ISCN string of the labels currently shown, with the structural abnormalities
        marked on the cell (a mark that does not read leaves the numerical string)."""
        if not self.abnormalities:
            return karyotype_string(self.label_counts())
        from karyo_gui.core.case_karyotype import MarkProblem, cell_line  # it imports this

        try:
            return cell_line(self).text
        except MarkProblem:
            return karyotype_string(self.label_counts())

    def set_manual_label(
        self, chromosome_id: str, label: ChromosomeType, by: str | None = None
    ) -> None:
        """A reviewer's correction, recorded in the audit trail."""
        self._require_editable()
        chromosome = self.chromosome(chromosome_id)
        before = chromosome.label
        by = by or current_user()
        at = now_utc()
        chromosome.manual = ManualLabel(label, by, at)
        self.audit.append(
            Correction(chromosome_id, "label", before.display_name, label.display_name, by, at)
        )

    def restore_manual_label(
        self, chromosome_id: str, manual: ManualLabel | None, by: str | None = None
    ) -> None:
        """Put back an earlier manual label (or none): an undo, recorded in the audit trail."""
        self._require_editable()
        chromosome = self.chromosome(chromosome_id)
        before = chromosome.label
        chromosome.manual = manual
        after = chromosome.label
        self.audit.append(
            Correction(
                chromosome_id, "label", before.display_name, f"{after.display_name} (undo)",
                by or current_user(), now_utc(),
            )
        )

    def set_orientation(
        self, chromosome_id: str, orientation: Orientation, by: str | None = None
    ) -> None:
        self._require_editable()
        chromosome = self.chromosome(chromosome_id)
        before = chromosome.orientation
        chromosome.orientation = orientation
        self.audit.append(
            Correction(
                chromosome_id,
                "orientation",
                _describe(before),
                _describe(orientation),
                by or current_user(),
                now_utc(),
            )
        )

    def set_role(self, role: CellRole, on: bool, by: str | None = None) -> None:
        """Count a cell as counted / analysed / karyogrammed (or not), in the audit trail.
        Allowed on a signed-off cell: it says what was done with the cell, not what it is."""
        if (role in self.roles) == on:
            return
        (self.roles.add if on else self.roles.discard)(role)
        self.audit.append(Correction("", "role", "" if on else role.value,
                                     role.value if on else "", by or current_user(), now_utc()))

    def mark_abnormality(self, iscn: str, chromosome_ids: tuple[str, ...] | list[str],
                         by: str | None = None) -> MarkedAbnormality:
        """The reviewer marks chromosomes as carrying a structural abnormality (its ISCN
        text, already checked by the caller); recorded in the audit trail."""
        self._require_editable()
        for chromosome_id in chromosome_ids:
            self.chromosome(chromosome_id)  # KeyError for an id the cell does not have
        marked = MarkedAbnormality(iscn, tuple(chromosome_ids), by or current_user(), now_utc())
        self.abnormalities.append(marked)
        self.audit.append(Correction(",".join(marked.chromosome_ids), "abnormality", "", iscn,
                                     marked.by, marked.at))
        return marked

    def unmark_abnormality(self, marked: MarkedAbnormality, by: str | None = None) -> None:
        self._require_editable()
        self.abnormalities.remove(marked)
        self.audit.append(Correction(",".join(marked.chromosome_ids), "abnormality",
                                     marked.iscn, "", by or current_user(), now_utc()))

    def abnormality_of(self, chromosome_id: str) -> MarkedAbnormality | None:
        """The structural abnormality marked on this chromosome, if any."""
        for marked in self.abnormalities:
            if chromosome_id in marked.chromosome_ids:
                return marked
        return None

    def set_status(self, status: CellStatus, by: str | None = None) -> None:
        """A new review status, recorded in the audit trail; signing off also records the
        digest of what was signed (``sign_off_digest``), reopening drops it."""
        before = self.status
        self.status = status
        self.audit.append(
            Correction("", "status", before.value, status.value, by or current_user(), now_utc())
        )
        signed = status is CellStatus.SIGNED_OFF
        self.sign_off_digest = sign_off_digest(self) if signed else None
        if signed:
            self.sign_off_problem = None

    def _require_editable(self) -> None:
        if self.status is CellStatus.SIGNED_OFF:
            raise PermissionError(
                f"cell {self.name} is signed off; reopen it for editing before changing it"
            )


def _describe(orientation: Orientation) -> str:
    return f"rot{orientation.rotation}{'+flip' if orientation.flipped else ''}"


def last_sign_off(cell: Cell) -> Correction | None:
    """The audit entry of the cell's latest sign-off (who, when), or None."""
    for entry in reversed(cell.audit):
        if entry.action == "status" and entry.after == CellStatus.SIGNED_OFF.value:
            return entry
    return None


def _mask_digest(region: Region) -> str:
    return hashlib.sha256(np.packbits(region.mask.ravel()).tobytes()).hexdigest()


def sign_off_digest(cell: Cell) -> str | None:
    """``sha256:`` over a canonical JSON of what a sign-off vouches for: per chromosome its
    id, crop content hash, given, predicted, assigned and manual labels (who, when),
    orientation and region; the metaphase image's content hash; the whole audit trail, with
    the sign-off entry (signer and time). None when the audit trail records no sign-off.

    Tamper-EVIDENT, not tamper-proof: no secret goes in, so anyone who knows this function
    can write a matching digest for a forged file. It catches a hand edit of a signed-off
    cell (a label, an edit, a sign-off typed in) and tells it apart from karyo's own save.
    Flags, probabilities and file paths are left out: they are recomputed or may move.
    """
    signed = last_sign_off(cell)
    if signed is None:
        return None

    def name(label: ChromosomeType | None) -> str | None:
        return None if label is None else label.display_name

    content = {
        "what": "karyo sign-off",
        "version": 1,
        "cell": cell.name,
        "signed_by": signed.by,
        "signed_at": signed.at.isoformat(),
        "metaphase": None if cell.metaphase is None else cell.metaphase.content_hash,
        "chromosomes": [
            [
                c.id, c.content_hash, name(c.given), name(c.predicted), name(c.assigned),
                None if c.manual is None
                else [name(c.manual.label), c.manual.by, c.manual.at.isoformat()],
                c.orientation.rotation, c.orientation.flipped,
                None if c.region is None else [list(c.region.box), _mask_digest(c.region)],
            ]
            for c in cell.chromosomes
        ],
        # role changes are left out: they say what was done with the cell, may change after
        # its sign-off, and were not there when older files were signed
        "audit": [
            [e.chromosome_id, e.action, e.before, e.after, e.by, e.at.isoformat()]
            for e in cell.audit if e.action != "role"
        ],
    }
    if cell.abnormalities:  # only when marked: digests of older files stay as they were
        content["abnormalities"] = [
            [m.iscn, list(m.chromosome_ids), m.by, m.at.isoformat()] for m in cell.abnormalities
        ]
    # ASCII: names that are not valid UTF-8 (surrogate escapes) still give one digest
    text = json.dumps(content, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


BAND_LEVELS = (300, 400, 550, 700, 850)  # bands per haploid set of the ISCN ideograms


@dataclass(frozen=True)
class CaseDetails:
    """What the report says about the specimen: typed in by the lab, kept in the case file,
    never sent anywhere."""

    patient_id: str = ""
    specimen_id: str = ""
    lab_id: str = ""
    indication: str = ""  # the reason for the study ("recurrent miscarriage")
    specimen_type: str = ""  # "peripheral blood", "bone marrow", "amniotic fluid"...
    culture: str = ""  # "72 h PHA-stimulated", "24 h unstimulated"...
    interpretation: str = ""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "patient_id", "specimen_id", "lab_id", "indication", "specimen_type", "culture",
        "interpretation")
    TITLES: ClassVar[dict[str, str]] = {
        "patient_id": "Patient ID", "specimen_id": "Specimen ID", "lab_id": "Lab ID",
        "indication": "Indication", "specimen_type": "Specimen type", "culture": "Culture",
        "interpretation": "Interpretation"}


@dataclass(frozen=True)
class KaryotypeOverride:
    """The reviewer's own case karyotype in place of the composed one, with who and why."""

    text: str
    composed: str  # what karyo had composed when it was overridden
    by: str
    at: datetime
    reason: str = ""


class SignRole(str, enum.Enum):
    ANALYST = "analyst"
    CHECKER = "checker"


@dataclass(frozen=True)
class Signature:
    role: SignRole
    name: str
    at: datetime
    karyotype: str  # the case karyotype as it stood when signed


class SignOffRefused(ValueError):
    """A case signature karyo does not accept; the message says why."""


def same_person(first: str, second: str) -> bool:
    """Whether two typed names are one person's (case, accents' composition and runs of
    spaces aside): the checker must be someone else than the analyst."""
    def norm(name: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", name).casefold().split())

    return norm(first) == norm(second)


@dataclass(eq=False)
class Case:
    """One patient or sample: the cells a cytogeneticist reviews together."""

    case_id: str
    cells: list[Cell] = field(default_factory=list)
    created: datetime = field(default_factory=now_utc)
    notes: str = ""
    problems: list[str] = field(default_factory=list)  # cells that could not be loaded at all
    study: Study = Study.CONSTITUTIONAL
    band_level: int | None = None  # set by the reviewer (a suggestion is only an estimate)
    details: CaseDetails = field(default_factory=CaseDetails)
    karyotype_override: KaryotypeOverride | None = None
    # two-person review: the analyst signs, then a different person checks and signs
    signatures: list[Signature] = field(default_factory=list)
    audit: list[Correction] = field(default_factory=list)  # case-level entries

    @property
    def analyst(self) -> Signature | None:
        return next((s for s in self.signatures if s.role is SignRole.ANALYST), None)

    @property
    def checker(self) -> Signature | None:
        return next((s for s in self.signatures if s.role is SignRole.CHECKER), None)

    @property
    def is_final(self) -> bool:
        """Final only when the analyst and a different checker have both signed."""
        return self.analyst is not None and self.checker is not None

    def require_unsigned(self, doing: str = "change the case") -> None:
        if self.signatures:
            who = ", ".join(f"{s.role.value} {s.name}" for s in self.signatures)
            raise PermissionError(f"case {self.case_id} is signed ({who}); reopen the case "
                                  f"before you {doing}")

    def _log(self, action: str, before: str, after: str, by: str | None) -> None:
        self.audit.append(Correction("", action, before, after, by or current_user(), now_utc()))

    def set_details(self, details: CaseDetails, by: str | None = None) -> None:
        """New report details; the audit trail names the fields that changed (not their
        values: the case file keeps those, the audit need not repeat patient identifiers)."""
        changed = [name for name in CaseDetails.FIELDS
                   if getattr(details, name) != getattr(self.details, name)]
        if not changed:
            return
        self.require_unsigned("change its details")
        self.details = details
        self._log("details", "", ", ".join(changed), by)

    def set_study(self, study: Study, band_level: int | None, by: str | None = None) -> None:
        if band_level is not None and band_level not in BAND_LEVELS:
            raise ValueError(f"band level {band_level} is not one of the ISCN levels "
                             f"{', '.join(map(str, BAND_LEVELS))}")
        if (study, band_level) == (self.study, self.band_level):
            return
        self.require_unsigned("change its study or band level")
        before = f"{self.study.value}, {self.band_level or 'no'} band level"
        self.study, self.band_level = study, band_level
        self._log("details", before, f"{study.value}, {band_level or 'no'} band level", by)

    def override_karyotype(self, text: str | None, composed: str, by: str | None = None,
                           reason: str = "") -> None:
        """The reviewer's own case karyotype (ISCN text, checked by the caller), or None to
        go back to the composed one; recorded in the case's audit trail."""
        self.require_unsigned("change its karyotype")
        before = self.karyotype_override.text if self.karyotype_override else composed
        by = by or current_user()
        self.karyotype_override = (None if text is None
                                   else KaryotypeOverride(text, composed, by, now_utc(), reason))
        self._log("karyotype", before, text if text is not None else f"{composed} (composed)",
                  by)

    def sign(self, role: SignRole, name: str, karyotype: str) -> Signature:
        """Sign the case as analyst (first) or checker (then, someone else)."""
        name = " ".join(name.split())
        if not name:
            raise SignOffRefused("type your name to sign")
        if role is SignRole.ANALYST:
            if self.analyst is not None:
                raise SignOffRefused(f"the case is already signed by the analyst "
                                     f"{self.analyst.name}")
        else:
            analyst = self.analyst
            if analyst is None:
                raise SignOffRefused("the analyst signs first; the checker signs after")
            if self.checker is not None:
                raise SignOffRefused(f"the case is already checked by {self.checker.name}")
            if same_person(analyst.name, name):
                raise SignOffRefused(f"{name} signed as the analyst; the check must be signed "
                                     "by a different person")
            if analyst.karyotype != karyotype:
                raise SignOffRefused(f"the karyotype changed since the analyst signed "
                                     f"({analyst.karyotype} -> {karyotype}); reopen the case")
        signature = Signature(role, name, now_utc(), karyotype)
        self.signatures.append(signature)
        self.audit.append(Correction("", "sign", role.value, karyotype, name, signature.at))
        return signature

    def reopen(self, by: str | None = None, reason: str = "") -> None:
        """Withdraw the signatures so the case can be changed; recorded."""
        if not self.signatures:
            return
        before = "; ".join(f"{s.role.value} {s.name}" for s in self.signatures)
        self.signatures.clear()
        self._log("reopen", before, reason, by)

    def cell(self, name: str) -> Cell:
        for cell in self.cells:
            if cell.name == name:
                return cell
        raise KeyError(f"case {self.case_id} has no cell {name!r}")
