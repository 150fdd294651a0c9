"""ISCN karyotype strings from label counts, and back.

The string is: chromosome count, the sex chromosome complement written out (``XX``,
``XY``, ``X``, ``XXY``), then gains and losses of autosomes relative to two copies in
ascending order (``+21``, ``-20``; a double loss is written twice), then marker
chromosomes (objects of no known type) as ``+mar`` / ``+2mar``. Examples: ``46,XX``,
``47,XY,+21``, ``45,X``, ``47,XXY``, ``45,XX,-20``, ``46,XXY,-17,-18,+mar``.
A cell without any sex chromosome (a partial spread) has no sex field: ``36,-13,-13``.

The full ISCN short form (structural rearrangements, mosaics, chimeras and clones with their
cell counts) is read and written by ``parse_iscn`` / ``CaseKaryotype``; see the section
"The ISCN grammar" below. ``parse_karyotype`` stays the reader of numerical karyotypes into
label counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from karyo_gui.core.bands import is_band
from karyo_gui.core.labels import ChromosomeType

_DISOMY = 2


def sex_chromosomes(counts: Mapping[ChromosomeType, int]) -> str:
    """The sex chromosomes written out: ``XX``, ``XY``, ``X``, ``XXY``; '' when none."""
    return "X" * counts.get(ChromosomeType.X, 0) + "Y" * counts.get(ChromosomeType.Y, 0)


def karyotype_string(counts: Mapping[ChromosomeType, int]) -> str:
    """ISCN string of a cell whose chromosomes have the given label counts."""
    total = sum(counts.values())
    fields = [str(total)]
    sex = sex_chromosomes(counts)
    if sex:
        fields.append(sex)
    for number in range(1, 23):
        deviation = counts.get(ChromosomeType.autosome(number), 0) - _DISOMY
        sign = "+" if deviation > 0 else "-"
        fields.extend([f"{sign}{number}"] * abs(deviation))
    markers = counts.get(ChromosomeType.UNCLASSIFIED, 0)
    if markers:
        fields.append("+mar" if markers == 1 else f"+{markers}mar")
    return ",".join(fields)


_COUNT = re.compile(r"\d{1,3}")
_SEX = re.compile(r"[XY]+")
_AUTOSOME = re.compile(r"(?P<sign>[+-])(?P<type>\d{1,2}|X|Y)(?:x(?P<times>\d))?")
_MARKER = re.compile(r"\+(?P<times>\d*)mar\d*")


def parse_karyotype(text: str) -> Counter[ChromosomeType]:
    """Label counts of a numerical ISCN karyotype such as ``47,XY,+21``.

    Structural rearrangements (``t(9;22)``...) are outside what counts can express and
    raise ValueError, as does a stated count that differs from the listed complement.
    """
    fields = [field.strip() for field in text.strip().split(",")]
    if not fields or not _COUNT.fullmatch(fields[0]):
        raise ValueError(f"{text!r} is not an ISCN karyotype: it must start with a count")
    stated = int(fields[0])
    rest = fields[1:]
    counts: Counter[ChromosomeType] = Counter(
        {chromosome_type: _DISOMY for chromosome_type in ChromosomeType.types()[:22]}
    )
    if rest and _SEX.fullmatch(rest[0]):
        counts[ChromosomeType.X] = rest[0].count("X")
        counts[ChromosomeType.Y] = rest[0].count("Y")
        rest = rest[1:]
    for field in rest:
        _apply_change(field, counts, text)
    counts = Counter({k: v for k, v in counts.items() if v > 0})
    listed = sum(counts.values())
    if listed != stated:
        raise ValueError(f"{text!r} states {stated} chromosomes but describes {listed}")
    return counts


def _apply_change(field: str, counts: Counter[ChromosomeType], text: str) -> None:
    if marker := _MARKER.fullmatch(field):
        counts[ChromosomeType.UNCLASSIFIED] += int(marker.group("times") or 1)
        return
    change = _AUTOSOME.fullmatch(field)
    if change is None:
        raise ValueError(f"{text!r}: cannot read {field!r} (only numerical changes are supported)")
    name = change.group("type")
    if name.isdigit() and not 1 <= int(name) <= 22:  # from_name would read 23 as X, 25 as ?
        raise ValueError(f"{text!r}: {field!r} names no chromosome (autosomes are 1-22)")
    chromosome_type = ChromosomeType.from_name(name)
    times = int(change.group("times") or 1)
    counts[chromosome_type] += times if change.group("sign") == "+" else -times
    if counts[chromosome_type] < 0:
        raise ValueError(f"{text!r}: {field!r} removes a chromosome that is not there")


# ----------------------------------------------------------------------- the ISCN grammar
#
# A case karyotype is one cell line, or several separated by "/" each with its cell count in
# brackets, optionally after "mos " (a constitutional mosaic) or "chi " (a chimera):
# ``mos 45,X[12]/46,XX[8]``. A cell line is the chromosome count, the sex chromosomes, then
# its abnormalities separated by commas: whole-chromosome gains and losses (``+21``, ``-7``),
# markers (``+mar``, ``+2mar``) and the rearrangements of REARRANGEMENTS with their
# chromosomes and breakpoint bands (``t(9;22)(q34.1;q11.2)``, ``del(5)(q13q33)``,
# ``der(9)t(9;22)(q34;q11.2)``, ``+der(22)t(9;22)(q34;q11.2)x2``). Every band is checked
# against the ideogram (``bands.is_band``).
#
# The count is checked against the complement for near-diploid lines only: 44 autosomes,
# the sex chromosomes written, and each abnormality's ``count_change``. Two readings of ISCN
# are allowed for: after an acquired loss of a sex chromosome the sex field shows those that
# remain (``45,X,-Y``), and a rearranged sex chromosome may stand outside the sex field
# (``46,X,i(X)(q10)``) or in it (``46,XY,t(X;18)(p11.2;q11.2)``). Lines of more than 57
# chromosomes (triploid 58-80, tetraploid 81-103, and up) are not checked: ISCN writes
# their changes relative to the nearest ploidy, which the count alone does not give.

REARRANGEMENTS = ("del", "dup", "inv", "t", "der", "i", "r", "rob", "ins", "add", "dic")
PREFIXES = ("mos", "chi")
NEAR_DIPLOID_MAX = 57
# the normal karyotypes; evaluations judge the cells read otherwise apart from these
NORMAL_KARYOTYPES = ("46,XX", "46,XY")
_CHROMOSOMES = (*(str(number) for number in range(1, 23)), "X", "Y")
_BAND_TOKEN = re.compile(r"[pq]ter|cen|[pq]\d{2}(?:\.\d+)?")
_EXAMPLES = {
    "del": "del(5)(q13q33)", "dup": "dup(1)(q21q32)", "inv": "inv(9)(p12q13)",
    "t": "t(9;22)(q34;q11.2)", "der": "der(9)t(9;22)(q34;q11.2)", "i": "i(17)(q10)",
    "r": "r(18)(p11.3q23)", "rob": "rob(13;14)(q10;q10)", "ins": "ins(2;5)(p13;q31q33)",
    "add": "add(7)(q32)", "dic": "dic(9;12)(p11;p12)",
}  # fmt: skip


class IscnError(ValueError):
    """A karyotype that does not read as ISCN; ``position`` is the 0-based index into
    ``text`` of the part that is wrong."""

    def __init__(self, message: str, position: int, text: str) -> None:
        super().__init__(f"at {position}: {message}")
        self.message = message
        self.position = position
        self.text = text


@dataclass(frozen=True)
class Abnormality:
    """One item of a cell line: a whole chromosome gained or lost (kind "+" / "-"), marker
    chromosomes ("mar"), or a rearrangement (a kind of REARRANGEMENTS)."""

    kind: str
    chromosomes: tuple[str, ...]  # ("21",), ("9", "22"); () for markers
    breakpoints: tuple[str, ...] = ()  # one group per chromosome as written: ("q13q33",)
    sign: str = ""  # "+" / "-" before a rearrangement or marker; "" for one in place
    derivation: Abnormality | None = None  # der(9)t(9;22)(...): the t(...)
    copies: int = 1  # +2mar, +der(22)t(9;22)(q34;q11.2)x2

    @property
    def is_numerical(self) -> bool:
        return self.kind in ("+", "-")

    @property
    def is_structural(self) -> bool:
        return self.kind in REARRANGEMENTS

    @property
    def text(self) -> str:
        if self.is_numerical:
            return ",".join([f"{self.kind}{self.chromosomes[0]}"] * self.copies)
        if self.kind == "mar":
            return f"{self.sign}{self.copies if self.copies > 1 else ''}mar"
        text = f"{self.sign}{self.kind}({';'.join(self.chromosomes)})"
        if self.breakpoints:
            text += f"({';'.join(self.breakpoints)})"
        if self.derivation is not None:
            text += self.derivation.text
        return text + (f"x{self.copies}" if self.copies > 1 else "")

    @property
    def count_change(self) -> int:
        """Its effect on the chromosome count: +1 for +21, +mar, +der(22)...; -1 for -20 and
        for der(13;14), rob and dic in place (one chromosome for two); 0 for the rest in
        place (t, del, inv, i, r...); times its copies."""
        if self.is_numerical:
            change = 1 if self.kind == "+" else -1
        elif self.sign:
            change = 1 if self.sign == "+" else -1
        elif self.kind in ("rob", "dic") or (
            self.kind == "der" and self.derivation is None and len(self.chromosomes) > 1
        ):
            change = -1
        else:
            change = 0
        return change * self.copies

    @property
    def involved(self) -> tuple[str, ...]:
        """The chromosomes it names, a derivation's included."""
        names = list(self.chromosomes)
        if self.derivation is not None:
            names += self.derivation.involved
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Karyotype:
    """One cell line: ``47,XY,+21``, ``46,XY,t(9;22)(q34.1;q11.2)[20]``."""

    count: int
    sex: str  # "XX", "XY", "X", "XXY", "" when none is given
    abnormalities: tuple[Abnormality, ...] = ()
    cells: int | None = None  # the [n] after it

    @property
    def text(self) -> str:
        fields = [str(self.count), *([self.sex] if self.sex else [])]
        fields += [item.text for item in self.abnormalities]
        return ",".join(fields) + (f"[{self.cells}]" if self.cells is not None else "")

    @property
    def is_normal(self) -> bool:
        return not self.abnormalities and (self.count, self.sex) in ((46, "XX"), (46, "XY"))


@dataclass(frozen=True)
class CaseKaryotype:
    """What a report states: one cell line or several (a mosaic, a chimera, clones)."""

    clones: tuple[Karyotype, ...]
    prefix: str = ""  # "", "mos", "chi"

    @property
    def text(self) -> str:
        lines = "/".join(line.text for line in self.clones)
        return f"{self.prefix} {lines}" if self.prefix else lines


def _chromosome_rank(name: str) -> int:
    return _CHROMOSOMES.index(name) + 2 if name not in ("X", "Y") else "XY".index(name)


def order_abnormalities(items: Iterable[Abnormality]) -> tuple[Abnormality, ...]:
    """ISCN order: by chromosome whatever the aberration (sex chromosomes first, X before Y,
    then autosomes in ascending number; a rearrangement by the first chromosome it names);
    for one chromosome numerical before structural; markers last. Otherwise as given."""

    def key(item: Abnormality) -> tuple[int, int]:
        if not item.involved:
            return (len(_CHROMOSOMES) + 1, 0)
        return (_chromosome_rank(item.involved[0]), 0 if item.is_numerical else 1)

    return tuple(sorted(items, key=key))


def karyotype_text(count: int, sex: str, abnormalities: Iterable[Abnormality]) -> str:
    """A cell line written out, its abnormalities in ISCN order."""
    return Karyotype(count, sex, order_abnormalities(abnormalities)).text


def parse_iscn(text: str) -> CaseKaryotype:
    """Read a karyotype as a report states it; raises IscnError naming the position."""
    _check_brackets(text)
    start = _skip_spaces(text, 0)
    if start == len(text):
        raise IscnError("the karyotype is empty", 0, text)
    prefix = ""
    if match := re.compile(r"(mos|chi)(?![A-Za-z])").match(text, start):
        prefix, prefix_at = match.group(1), start
        start = _skip_spaces(text, match.end())
        if start == len(text):
            raise IscnError(f"'{prefix}' is not followed by any cell line", prefix_at, text)
    spans = _split(text, start, len(text), "/")
    lines = [_read_line(text, *span) for span in spans]
    if prefix and len(lines) < 2:
        what = "mosaic" if prefix == "mos" else "chimera"
        raise IscnError(f"a {what} ('{prefix}') has at least two cell lines", prefix_at, text)
    if len(lines) > 1:
        for line, (_, end) in zip(lines, spans):
            if line.cells is None:
                raise IscnError("each of several cell lines needs its cell count in brackets, "
                                "as in [10]", _strip_end(text, end), text)
    return CaseKaryotype(tuple(lines), prefix)


def parse_cell_line(text: str) -> Karyotype:
    """Read one cell line (no '/', no mos/chi): ``47,XY,+8[12]``."""
    _check_brackets(text)
    if (slash := text.find("/")) >= 0:
        raise IscnError("one cell line is expected, not several", slash, text)
    start = _skip_spaces(text, 0)
    if re.compile(r"(mos|chi)(?![A-Za-z])").match(text, start):
        raise IscnError("a single cell line has no mos/chi prefix", start, text)
    return _read_line(text, start, len(text))


def parse_abnormality(text: str) -> Abnormality:
    """Read one abnormality on its own: ``t(9;22)(q34.1;q11.2)``, ``+21``, ``+mar``."""
    _check_brackets(text)
    start, end = _skip_spaces(text, 0), _strip_end(text, len(text))
    if start == end:
        raise IscnError("the abnormality is empty", 0, text)
    if (comma := text.find(",", start, end)) >= 0:
        raise IscnError("one abnormality is expected, not a list", comma, text)
    return _read_abnormality(text, start, end)


# ----------------------------------------------------------------------- reading


def _skip_spaces(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _strip_end(text: str, end: int) -> int:
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return end


def _check_brackets(text: str) -> None:
    """Parentheses and brackets pair up and do not nest."""
    opened: tuple[str, int] | None = None
    for at, char in enumerate(text):
        if char in "([":
            if opened is not None:
                raise IscnError(f"'{char}' inside the '{opened[0]}' opened at {opened[1]}",
                                at, text)
            opened = (char, at)
        elif char in ")]":
            if opened is None:
                raise IscnError(f"'{char}' closes nothing", at, text)
            if opened[0] != ("(" if char == ")" else "["):
                raise IscnError(f"'{char}' cannot close the '{opened[0]}' opened at "
                                f"{opened[1]}", at, text)
            opened = None
    if opened is not None:
        raise IscnError(f"'{opened[0]}' is never closed", opened[1], text)


def _split(text: str, start: int, end: int, separator: str) -> list[tuple[int, int]]:
    """Spans of text[start:end] between separators outside brackets."""
    spans, depth, begin = [], 0, start
    for at in range(start, end):
        char = text[at]
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == separator and depth == 0:
            spans.append((begin, at))
            begin = at + 1
    spans.append((begin, end))
    return spans


def _read_line(text: str, start: int, end: int) -> Karyotype:
    start, end = _skip_spaces(text, start), _strip_end(text, end)
    if start >= end:
        raise IscnError("a cell line is missing here", min(start, len(text)), text)
    cells = None
    if (bracket := text.find("[", start, end)) >= 0:
        close = text.index("]", bracket)
        if _strip_end(text, end) != close + 1:
            raise IscnError("nothing may follow the cell count in brackets", close + 1, text)
        inner = text[bracket + 1 : close].strip()
        if not inner.isdigit() or int(inner) == 0:
            raise IscnError(f"the cell count [{inner}] is not a positive whole number",
                            bracket + 1, text)
        cells, end = int(inner), _strip_end(text, bracket)
    fields = []
    spans = _split(text, start, end, ",")
    for index, (begin, finish) in enumerate(spans):
        begin, finish = _skip_spaces(text, begin), _strip_end(text, finish)
        if begin >= finish:
            if index == 0:
                raise IscnError("a karyotype starts with its chromosome count", start, text)
            comma = spans[index - 1][1]
            what = "a trailing comma" if index == len(spans) - 1 else "an empty field"
            raise IscnError(f"{what}: nothing follows this comma", comma, text)
        fields.append((begin, finish))
    count = _read_count(text, *fields[0])
    sex, items = "", []
    for index, (begin, finish) in enumerate(fields[1:], start=1):
        field = text[begin:finish]
        if field.isalpha() and field not in REARRANGEMENTS and field != "mar":
            if index != 1 and set(field) <= {"X", "Y"}:
                raise IscnError("the sex chromosomes are written once, right after the count",
                                begin, text)
            if index == 1:
                bad = next((at for at, char in enumerate(field) if char not in "XY"), None)
                if bad is None:
                    sex = field
                    continue
                raise IscnError(f"'{field[bad]}' is not a sex chromosome (they are written "
                                f"X and Y): '{field}'", begin + bad, text)
        items.append(_read_abnormality(text, begin, finish))
    line = Karyotype(count, sex, tuple(items), cells)
    _check_count(line, text, fields[0][0])
    return line


def _read_count(text: str, begin: int, end: int) -> int:
    field = text[begin:end]
    if not field[0].isdigit():
        raise IscnError(f"a karyotype starts with its chromosome count, not '{field}'",
                        begin, text)
    digits = len(field) - len(field.lstrip("0123456789"))
    if digits < len(field):
        raise IscnError(f"cannot read '{field}' as a chromosome count (fields are separated "
                        "by commas)", begin + digits, text)
    if digits > 3:
        raise IscnError(f"a chromosome count has at most 3 digits, not '{field}'", begin, text)
    if int(field) == 0:
        raise IscnError("a cell line has at least one chromosome", begin, text)
    return int(field)


def _check_count(line: Karyotype, text: str, at: int) -> None:
    if line.count > NEAR_DIPLOID_MAX:
        return  # triploid and up: counted relative to the ploidy (see above)
    listed = 44 + len(line.sex)
    optional = 0  # rearranged sex chromosomes the sex field may leave out
    for item in line.abnormalities:
        if item.is_numerical and item.kind == "-" and item.chromosomes[0] in "XY":
            continue  # 45,X,-Y: the sex field already shows what remains
        listed += item.count_change
        if item.is_structural and not item.sign and {"X", "Y"} & set(item.chromosomes):
            optional += 1
    if not listed <= line.count <= listed + optional:
        adds_up = f"{listed}" if not optional else f"{listed} to {listed + optional}"
        raise IscnError(f"the count {line.count} does not match the chromosomes listed, which "
                        f"add up to {adds_up}", at, text)


def _check_chromosome(text: str, begin: int, end: int) -> str:
    name = text[begin:end].strip()
    if not name:
        raise IscnError("a chromosome is missing here", begin, text)
    if name not in _CHROMOSOMES:
        raise IscnError(f"'{name}' is not a chromosome (1-22, X or Y)", begin, text)
    return name


def _read_abnormality(text: str, begin: int, end: int) -> Abnormality:
    at, sign = begin, ""
    if text[at] in "+-":
        sign, at = text[at], at + 1
    if at == end:
        raise IscnError(f"'{sign}' names no chromosome", begin, text)
    body = text[at:end]
    if marker := re.fullmatch(r"(\d*)mar", body):
        copies = int(marker.group(1) or 1)
        if not sign or copies == 0:
            raise IscnError("marker chromosomes are written +mar or +2mar", begin, text)
        return Abnormality("mar", (), sign=sign, copies=copies)
    if re.fullmatch(r"\d*mar\d+", body):
        raise IscnError("numbered markers (mar1, mar2) are not read; write +mar or +2mar",
                        at, text)
    if body[0].isdigit() or body[0] in "XY":
        return _read_whole_chromosome(text, begin, at, end, sign)
    item, at = _read_rearrangement(text, at, end, sign)
    if at < end and (times := re.compile(r"x(\d+)").fullmatch(text, at, end)):
        if sign != "+" or int(times.group(1)) < 2:
            raise IscnError("copies (x2) are written after an extra abnormal chromosome, as in "
                            "+der(22)t(9;22)(q34;q11.2)x2", at, text)
        return Abnormality(item.kind, item.chromosomes, item.breakpoints, sign,
                           item.derivation, int(times.group(1)))
    if at < end:
        raise IscnError(f"cannot read '{text[at:end]}' after {text[begin:at]}", at, text)
    return item


def _read_whole_chromosome(text: str, begin: int, at: int, end: int, sign: str) -> Abnormality:
    name = re.compile(r"\d+|[XY]").match(text, at).group()
    rest_at = at + len(name)
    if rest_at < end and text[rest_at] == "x":
        raise IscnError(f"copies (x2) of a whole chromosome are not read; write {sign}{name} "
                        "once for each copy", rest_at, text)
    if rest_at < end:
        raise IscnError(f"cannot read '{text[rest_at:end]}' after {sign}{name}", rest_at, text)
    if not sign:
        raise IscnError(f"a whole chromosome gained or lost is written +{name} or -{name}",
                        begin, text)
    return Abnormality(sign, (_check_chromosome(text, at, rest_at),))


def _read_rearrangement(text: str, at: int, end: int, sign: str,
                        within_der: bool = False) -> tuple[Abnormality, int]:
    word = re.compile(r"[a-z]+").match(text, at, end)
    if word is None:
        raise IscnError(f"cannot read '{text[at:end]}' as an abnormality", at, text)
    kind = word.group()
    if kind not in REARRANGEMENTS or (within_der and kind == "der"):
        known = ", ".join(REARRANGEMENTS)
        raise IscnError(f"'{kind}' is not an abnormality karyo reads (+n, -n, +mar, {known})",
                        at, text)
    at = word.end()
    if at >= end or text[at] != "(":
        raise IscnError(f"{kind} is followed by its chromosomes in parentheses, as in "
                        f"{_EXAMPLES[kind]}", at, text)
    close = text.index(")", at)
    spans = _split(text, at + 1, close, ";")
    chromosomes = tuple(_check_chromosome(text, *span) for span in spans)
    _check_chromosome_number(kind, chromosomes, text, at)
    at = close + 1
    if kind == "der" and at < end and text[at].isalpha():
        derivation, after = _read_rearrangement(text, at, end, "", within_der=True)
        if chromosomes[0] not in derivation.involved:
            raise IscnError(f"der({chromosomes[0]}) derives from a rearrangement of chromosome "
                            f"{chromosomes[0]}", word.start(), text)
        if re.compile(r"[a-z]+\(").match(text, after, end):
            raise IscnError("only one rearrangement is read after der(...)", after, text)
        return Abnormality(kind, chromosomes, (), sign, derivation), after
    if at >= end or text[at] != "(":
        if kind == "r":
            return Abnormality(kind, chromosomes, (), sign), at
        raise IscnError(f"{text[word.start():at]} needs its breakpoints in parentheses, as in "
                        f"{_EXAMPLES[kind]}", at, text)
    close = text.index(")", at)
    groups = _split(text, at + 1, close, ";")
    expected = 1 if kind == "ins" and len(chromosomes) == 1 else len(chromosomes)
    if len(groups) != expected:
        raise IscnError(f"{text[word.start():at]} names {len(chromosomes)} chromosome"
                        f"{'s' * (len(chromosomes) > 1)} but gives {len(groups)} breakpoint "
                        f"group{'s' * (len(groups) > 1)}", at, text)
    breakpoints = tuple(
        _read_breakpoints(text, *span, kind, chromosomes, index)
        for index, span in enumerate(groups)
    )
    return Abnormality(kind, chromosomes, breakpoints, sign), close + 1


def _check_chromosome_number(kind: str, chromosomes: tuple[str, ...], text: str,
                             at: int) -> None:
    allowed = {"t": range(2, 6), "rob": (2,), "dic": (2,), "ins": (1, 2),
               "der": range(1, 6)}.get(kind, (1,))
    if len(chromosomes) not in allowed:
        wanted = {"t": "two or more", "rob": "two", "dic": "two", "ins": "one or two",
                  "der": "one or more"}.get(kind, "one")
        raise IscnError(f"{kind} names {wanted} chromosome{'s' * (wanted != 'one')}, as in "
                        f"{_EXAMPLES[kind]}", at, text)


def _bands_wanted(kind: str, chromosomes: tuple[str, ...], index: int) -> tuple[int, ...]:
    if kind == "ins":
        return (3,) if len(chromosomes) == 1 else ((1,) if index == 0 else (2,))
    return {"del": (1, 2), "dup": (1, 2), "inv": (2,), "r": (2,)}.get(kind, (1,))


def _read_breakpoints(text: str, begin: int, end: int, kind: str,
                      chromosomes: tuple[str, ...], index: int) -> str:
    chromosome = chromosomes[min(index, len(chromosomes) - 1)]
    bands, at = [], begin
    while at < end:
        token = _BAND_TOKEN.match(text, at, end)
        if token is None:
            raise IscnError(f"cannot read '{text[at:end]}' as a band of chromosome "
                            f"{chromosome}", at, text)
        if not is_band(chromosome, token.group()):
            raise IscnError(f"'{token.group()}' is not a band of chromosome {chromosome}",
                            at, text)
        bands.append(token.group())
        at = token.end()
    wanted = _bands_wanted(kind, chromosomes, index)
    if len(bands) not in wanted:
        how_many = " or ".join(("one", "two", "three")[n - 1] for n in wanted)
        raise IscnError(f"{kind} takes {how_many} band{'s' * (wanted != (1,))} in chromosome "
                        f"{chromosome} here, as in {_EXAMPLES[kind]}", begin, text)
    return "".join(bands)


# ----------------------------------------------------------------------- in words


def abnormality_in_words(item: Abnormality) -> str:
    """What an abnormality means, in a cytogeneticist's words."""
    if item.is_numerical:
        what = "gain" if item.kind == "+" else "loss"
        return f"{what} of chromosome {item.chromosomes[0]}"
    if item.kind == "mar":
        many = item.copies > 1
        what = f"{item.copies} marker chromosomes" if many else "a marker chromosome"
        return f"{'gain' if item.sign == '+' else 'loss'} of {what} (of unknown origin)"
    words = _rearrangement_in_words(item)
    several = item.copies > 1
    if item.sign == "+":
        return f"{item.copies} extra copies of a {words}" if several else f"an extra {words}"
    if item.sign == "-":
        return f"loss of {item.copies} copies of a {words}" if several else f"loss of a {words}"
    return words


def _rearrangement_in_words(item: Abnormality) -> str:
    chromosomes = item.chromosomes
    bands = [
        [f"{chromosomes[min(i, len(chromosomes) - 1)]}{band}"
         for band in _BAND_TOKEN.findall(group)]
        for i, group in enumerate(item.breakpoints)
    ]
    listed = _and(chromosomes)
    points = _and([band for group in bands for band in group])
    first = bands[0] if bands else []
    kind = item.kind
    if kind == "t":
        return f"translocation between chromosomes {listed}, breakpoints {points}"
    if kind == "del":
        if len(first) == 2:
            return f"interstitial deletion of {first[0]} to {first[1]}"
        return f"terminal deletion of {first[0]} to {chromosomes[0]}{item.breakpoints[0][0]}ter"
    if kind == "dup":
        return f"duplication of {first[0]} to {first[-1]}"
    if kind == "inv":
        arms = {band[len(chromosomes[0])] for band in first}
        span = "pericentric" if len(arms) == 2 else "paracentric"
        return f"{span} inversion of {first[0]} to {first[1]}"
    if kind == "i":
        arm = item.breakpoints[0][0]
        side = "long" if arm == "q" else "short"
        return f"isochromosome for the {side} arm of {chromosomes[0]} ({chromosomes[0]}{arm})"
    if kind == "r":
        ends = f", breakpoints {points}" if bands else ""
        return f"ring chromosome {chromosomes[0]}{ends}"
    if kind == "rob":
        return f"Robertsonian translocation of chromosomes {listed}, joined at {points}"
    if kind == "dic":
        return f"dicentric chromosome of chromosomes {listed}, breakpoints {points}"
    if kind == "add":
        return f"additional material of unknown origin attached at {first[0]}"
    if kind == "ins":
        into, segment = (first[0], first[1:]) if len(bands) == 1 else (first[0], bands[1])
        return f"insertion of {segment[0]} to {segment[1]} into {into}"
    if item.derivation is not None:  # der(9)t(9;22)
        return (f"derivative chromosome {chromosomes[0]} of a "
                f"{_rearrangement_in_words(item.derivation)}")
    return f"derivative chromosome of chromosomes {listed}, breakpoints {points}"


def _and(names: Iterable[str]) -> str:
    names = list(names)
    if len(names) < 2:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"
