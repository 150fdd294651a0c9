"""The ISCN grammar: karyotypes as reports write them, read and written back unchanged."""

from __future__ import annotations

import subprocess
import sys

import pytest

from karyo_gui.cli import main
from karyo_gui.core.iscn import (
    REARRANGEMENTS,
    Abnormality,
    CaseKaryotype,
    IscnError,
    Karyotype,
    abnormality_in_words,
    karyotype_text,
    order_abnormalities,
    parse_abnormality,
    parse_cell_line,
    parse_iscn,
)

# canonical ISCN strings of real-world karyotypes: each must read and be written back as is
CANONICAL = [
    # numerical, constitutional
    "46,XX",
    "46,XY",
    "47,XY,+21",
    "47,XX,+21",
    "47,XY,+18",
    "47,XX,+13",
    "45,X",
    "47,XXY",
    "47,XXX",
    "47,XYY",
    "48,XXYY",
    "48,XXXY",
    "49,XXXXY",
    "45,XX,-20",
    "46,XY,-4,-4,+8,+8",
    "47,XX,+mar",
    "48,XY,+2mar",
    "69,XXY",
    "69,XXX",
    "92,XXYY",
    "36,-13,-13,-20,-20,-21,-21,-22,-22",
    # structural, constitutional
    "46,XX,del(5)(q13q33)",
    "46,XX,del(5)(p15.2)",
    "46,XY,del(4)(p16.1)",
    "46,XY,del(22)(q11.21q11.23)",
    "46,XY,dup(1)(q21q32)",
    "46,XY,inv(9)(p12q13)",
    "46,XX,inv(3)(q21q26.2)",
    "45,XX,der(13;14)(q10;q10)",
    "45,XY,rob(13;14)(q10;q10)",
    "46,XX,rob(14;21)(q10;q10),+21",
    "46,XX,i(17)(q10)",
    "46,X,i(X)(q10)",
    "46,X,r(X)(p22.1q27)",
    "46,XX,r(18)(p11.3q23)",
    "46,XY,r(13)",
    "46,XY,ins(2;5)(p13;q31q33)",
    "46,XX,ins(5)(p13q31q33)",
    "46,XY,add(7)(q32)",
    "46,XY,t(11;22)(q23;q11.2)",
    "46,XX,t(1;3;5)(p36.1;q21;q31)",
    "46,XY,t(X;18)(p11.2;q11.2)",
    "46,XY,der(9)t(9;22)(q34;q11.2)",
    "47,XX,+der(22)t(11;22)(q23;q11.2)",
    "47,XY,+i(12)(p10)",
    "45,XX,dic(9;12)(p11;p12)",
    # acquired (neoplasia), with cell counts
    "46,XY,t(9;22)(q34.1;q11.2)[20]",
    "47,XY,+8,t(9;22)(q34.1;q11.2)[15]",
    "48,XY,+der(22)t(9;22)(q34.1;q11.2)x2,t(9;22)(q34.1;q11.2)[10]",
    "46,XY,del(7)(q22),t(9;22)(q34;q11.2)[12]",
    "46,XX,t(15;17)(q24.1;q21.2)[20]",
    "46,XY,t(8;21)(q22;q22.1)[18]",
    "46,XX,inv(16)(p13.1q22)[20]",
    "46,XY,t(4;11)(q21;q23)[16]",
    "46,XX,del(20)(q11.2q13.3)[8]",
    "46,XY,+1,der(1;7)(q10;p10)[20]",
    "45,X,-Y[20]",
    "45,X,-X[12]",
    "47,XX,+X[10]",
    "47,XY,+8[12]/46,XY[8]",
    "46,XX,del(5)(q13q33)[14]/46,XX[6]",
    "47,XY,+11,del(5)(q31)[9]/46,XY[11]",
    "45,XY,-7[17]/46,XY[3]",
    "46,XY,t(9;22)(q34.1;q11.2)[16]/47,XY,+8,t(9;22)(q34.1;q11.2)[4]",
    # mosaics and chimeras
    "mos 45,X[12]/46,XX[8]",
    "mos 47,XY,+21[18]/46,XY[2]",
    "mos 45,X[15]/46,X,i(X)(q10)[10]",
    "mos 47,XXY[20]/46,XY[10]",
    "mos 45,X[10]/47,XXX[5]/46,XX[35]",
    "chi 46,XX[10]/46,XY[10]",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_karyotypes_are_written_back_exactly(text):
    case = parse_iscn(text)
    assert case.text == text
    for line in case.clones:  # each line also reads on its own
        assert parse_cell_line(line.text) == line


def test_the_table_is_large_and_covers_every_kind():
    assert len(CANONICAL) >= 45
    kinds = {a.kind for text in CANONICAL for line in parse_iscn(text).clones
             for a in line.abnormalities}
    assert set(REARRANGEMENTS) | {"+", "-", "mar"} <= kinds


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        (" 47, XY, +21 ", "47,XY,+21"),
        ("46 ,XX , del(5)(q13q33)", "46,XX,del(5)(q13q33)"),
        ("mos   45,X[12] / 46,XX[8]", "mos 45,X[12]/46,XX[8]"),
        ("mos45,X[12]/46,XX[8]", "mos 45,X[12]/46,XX[8]"),
        ("47,XY,+8[ 12 ]/46,XY[8]", "47,XY,+8[12]/46,XY[8]"),
        ("48,XX,+mar,+mar", "48,XX,+mar,+mar"),
    ],
)
def test_spaces_are_tolerated_and_not_written(written, canonical):
    assert parse_iscn(written).text == canonical


def test_the_data_model_of_a_structural_line():
    line = parse_cell_line("47,XX,+der(22)t(9;22)(q34;q11.2),ins(2;5)(p13;q31q33)[20]")
    assert (line.count, line.sex, line.cells) == (47, "XX", 20)
    extra, insertion = line.abnormalities
    assert extra == Abnormality(
        "der", ("22",), (), "+", Abnormality("t", ("9", "22"), ("q34", "q11.2")))
    assert extra.involved == ("22", "9") and extra.is_structural
    assert insertion.breakpoints == ("p13", "q31q33")
    assert parse_abnormality("t(9;22)(q34.1;q11.2)").breakpoints == ("q34.1", "q11.2")
    assert parse_abnormality("del(5)(q13q33)").breakpoints == ("q13q33",)
    marker = parse_abnormality("+2mar")
    assert (marker.kind, marker.chromosomes, marker.sign, marker.copies) == ("mar", (), "+", 2)
    assert not marker.is_structural


def test_a_case_of_several_lines():
    case = parse_iscn("mos 45,X[12]/46,XX[8]")
    assert case.prefix == "mos"
    assert case.clones == (Karyotype(45, "X", (), 12), Karyotype(46, "XX", (), 8))
    assert not case.clones[0].is_normal and case.clones[1].is_normal
    assert CaseKaryotype(case.clones, "mos").text == "mos 45,X[12]/46,XX[8]"
    assert parse_iscn("47,XY,+8[12]/46,XY[8]").prefix == ""


@pytest.mark.parametrize(
    ("item", "change"),
    [
        ("+21", 1), ("-20", -1), ("+mar", 1), ("+2mar", 2), ("+der(22)t(9;22)(q34;q11.2)", 1),
        ("+der(22)t(9;22)(q34;q11.2)x2", 2), ("+i(12)(p10)", 1), ("der(13;14)(q10;q10)", -1),
        ("rob(13;14)(q10;q10)", -1), ("dic(9;12)(p11;p12)", -1),
        ("der(9)t(9;22)(q34;q11.2)", 0), ("t(9;22)(q34;q11.2)", 0), ("del(5)(q13q33)", 0),
        ("inv(9)(p12q13)", 0), ("i(17)(q10)", 0), ("r(18)(p11.3q23)", 0),
        ("ins(2;5)(p13;q31q33)", 0), ("add(7)(q32)", 0), ("dup(1)(q21q32)", 0),
    ],
)  # fmt: skip
def test_count_change(item, change):
    assert parse_abnormality(item).count_change == change
    assert Abnormality("+", ("8",), copies=2).count_change == 2


def test_order_abnormalities_follows_iscn():
    # by chromosome whatever the aberration, sex chromosomes first, markers last
    items = [parse_abnormality(text) for text in
             ["+mar", "+21", "t(9;22)(q34;q11.2)", "i(8)(q10)", "+8", "-X", "del(5)(q31)"]]
    assert [item.text for item in order_abnormalities(items)] == [
        "-X", "del(5)(q31)", "+8", "i(8)(q10)", "t(9;22)(q34;q11.2)", "+21", "+mar"]
    structural_first = [parse_abnormality("del(7)(q22)"), parse_abnormality("-7")]
    assert [i.text for i in order_abnormalities(structural_first)] == ["-7", "del(7)(q22)"]
    assert [i.text for i in order_abnormalities(
        [parse_abnormality("+Y"), parse_abnormality("+X")])] == ["+X", "+Y"]


def test_karyotype_text_writes_a_line_in_iscn_order():
    assert karyotype_text(47, "XY", [Abnormality("+", ("21",)),
                                     Abnormality("t", ("9", "22"), ("q34.1", "q11.2"))]) == (
        "47,XY,t(9;22)(q34.1;q11.2),+21")
    assert karyotype_text(48, "XXY", [Abnormality("mar", (), sign="+"), Abnormality("+", ("21",)),
                                      Abnormality("-", ("5",))]) == "48,XXY,-5,+21,+mar"
    assert karyotype_text(46, "XX", []) == "46,XX"


# malformed: (text, position of the offending part, words the message must hold)
MALFORMED = [
    ("", 0, "empty"),
    ("   ", 0, "empty"),
    ("XY,46", 0, "count"),
    ("46;XY", 2, "46;XY"),
    ("1234,XX", 0, "3 digits"),
    ("47,XY,+23", 7, "'23' is not a chromosome"),
    ("46,XX,del(25)(q13)", 10, "'25' is not a chromosome"),
    ("46,XX,del(5)(q99)", 13, "'q99' is not a band of chromosome 5"),
    ("46,XY,t(9;22)(q34.1;q11.2),del(7)(q37)", 34, "'q37' is not a band of chromosome 7"),
    ("46,XY,t(9;22)(q34)", 13, "1 breakpoint group"),
    ("46,XY,inv(9)(p12)", 13, "two bands"),
    ("46,XY,t(9;22(q34;q11.2)", 12, "'('"),
    ("46,XY,t(9;22)(q34;q11.2", 13, "never closed"),
    ("46,XY,t(9;22))", 13, "')' closes nothing"),
    ("46,XX[0]", 6, "[0]"),
    ("46,XX[a]", 6, "[a]"),
    ("mos 45,X[12]", 0, "at least two cell lines"),
    ("mos", 0, "'mos' is not followed by any cell line"),
    ("chi ", 0, "'chi' is not followed by any cell line"),
    ("46,XY,+21", 0, "add up to 47"),
    ("45,XX", 0, "add up to 46"),
    ("45,XX,der(9)t(9;22)(q34;q11.2)", 0, "add up to 46"),
    ("46,XZ", 4, "'Z' is not a sex chromosome"),
    ("46,xy", 3, "'x' is not a sex chromosome"),
    ("47,XY,+21,", 9, "trailing comma"),
    ("46,XX,,+21", 5, "empty field"),
    ("46,XY,banana", 6, "'banana'"),
    ("46,XY,XX", 6, "sex chromosomes"),
    ("47,XX,+21/46,XX", 9, "cell count"),
    ("46,XY,t(9)(q34)", 7, "two or more chromosomes"),
    ("46,XX[10],+21", 9, "nothing may follow the cell count"),
    ("46,XY,der(9)t(11;22)(q23;q11.2)", 6, "der(9)"),
]


@pytest.mark.parametrize(("text", "position", "words"), MALFORMED)
def test_malformed_karyotypes_say_what_is_wrong_and_where(text, position, words):
    with pytest.raises(IscnError) as raised:
        parse_iscn(text)
    error = raised.value
    assert error.position == position, str(error)
    assert words in error.message and error.text == text
    assert str(error) == f"at {position}: {error.message}"
    assert isinstance(error, ValueError)


def test_far_from_diploid_lines_are_not_count_checked():
    assert parse_iscn("69,XXY").clones[0].count == 69  # would be 47 by the diploid sum
    assert parse_iscn("70,XXY,+8[10]/46,XY[10]").text == "70,XXY,+8[10]/46,XY[10]"
    with pytest.raises(IscnError):
        parse_iscn("57,XY")  # near-diploid range: checked


def test_one_line_and_one_abnormality_readers_refuse_more():
    with pytest.raises(IscnError, match="one cell line"):
        parse_cell_line("47,XY,+8[12]/46,XY[8]")
    with pytest.raises(IscnError, match="mos/chi"):
        parse_cell_line("mos 45,X")
    with pytest.raises(IscnError, match="not a list"):
        parse_abnormality("+8,+8")


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("t(9;22)(q34.1;q11.2)",
         "translocation between chromosomes 9 and 22, breakpoints 9q34.1 and 22q11.2"),
        ("+21", "gain of chromosome 21"),
        ("-7", "loss of chromosome 7"),
        ("del(5)(q13q33)", "interstitial deletion of 5q13 to 5q33"),
        ("del(5)(q31)", "terminal deletion of 5q31 to 5qter"),
        ("inv(9)(p12q13)", "pericentric inversion of 9p12 to 9q13"),
        ("inv(3)(q21q26.2)", "paracentric inversion of 3q21 to 3q26.2"),
        ("i(17)(q10)", "isochromosome for the long arm of 17 (17q)"),
        ("ins(2;5)(p13;q31q33)", "insertion of 5q31 to 5q33 into 2p13"),
        ("+der(22)t(9;22)(q34;q11.2)", "an extra derivative chromosome 22 of a translocation "
                                       "between chromosomes 9 and 22"),
        ("+2mar", "gain of 2 marker chromosomes"),
    ],
)  # fmt: skip
def test_abnormalities_in_words(item, words):
    assert abnormality_in_words(parse_abnormality(item)).startswith(words)


# ----------------------------------------------------------------------- karyo iscn


def test_karyo_iscn_prints_each_line_and_abnormality_in_words(capsys):
    assert main(["iscn", "47,XY,+21,t(9;22)(q34.1;q11.2)"]) == 0
    out = capsys.readouterr().out
    assert "cell line 1: 47 chromosomes, sex chromosomes XY" in out
    assert ("t(9;22)(q34.1;q11.2)  translocation between chromosomes 9 and 22, breakpoints "
            "9q34.1 and 22q11.2") in out
    assert "+21                   gain of chromosome 21" in out
    assert "canonical: 47,XY,t(9;22)(q34.1;q11.2),+21  (abnormalities put in ISCN order)" in out


def test_karyo_iscn_shows_the_cell_lines_of_a_mosaic(capsys):
    assert main(["iscn", "mos 45,X[12]/46,XX[8]"]) == 0
    out = capsys.readouterr().out
    assert "a mosaic of 2 cell lines" in out
    assert "cell line 1: 45 chromosomes, sex chromosomes X, 12 cells" in out
    assert "cell line 2: 46 chromosomes, sex chromosomes XX, 8 cells" in out
    assert out.rstrip().endswith("canonical: mos 45,X[12]/46,XX[8]")


def test_karyo_iscn_points_at_the_error_and_exits_2(capsys):
    assert main(["iscn", "46,XX,del(5)(q99)"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    text, caret, message = captured.err.splitlines()
    assert text == "  46,XX,del(5)(q99)"
    assert caret.index("^") == text.index("q99")
    assert message == "karyo: at 13: 'q99' is not a band of chromosome 5"


def test_karyo_iscn_does_not_load_torch():
    probe = ("import sys, contextlib, io; from karyo_gui.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()): main(['iscn', '46,XX'])\n"
             "print('torch' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
