"""Hazard traceability: every listed hazard has a test, and docs/hazards.md is current.

The map hazard -> tests comes from collecting the whole of tests/ in a child
pytest (host_tools.hazards.collect_map), so these checks see every test's
@pytest.mark.hazard whichever subset or xdist worker runs them. The second
half checks the check: on synthetic lists and maps, and on a throwaway test
folder collected with the plugin, it must fail where it should.
"""

import json
import subprocess
import sys
import warnings

import pytest

from host_tools import hazards as H


@pytest.fixture(scope="module")
def hazard_list():
    return H.load()


@pytest.fixture(scope="module")
def suite_map():
    return H.collect_map()


# ---- the project's own list, code and docs ------------------------------------------------


def test_the_list_covers_H1_to_H12_with_mitigation_and_target(hazard_list):  # noqa: N802  (hazard ids)
    assert set(H.REQUIRED) <= {h.id for h in hazard_list}
    for h in hazard_list:
        assert h.title and h.harm and h.mitigation and h.target, h.id
        assert h.code or h.planned, "%s: a built mitigation names its code" % h.id


def test_mitigations_name_code_that_exists(hazard_list):
    problems = H.code_problems(hazard_list)
    assert not problems, "docs/hazards.toml names code that is not there:\n  " + "\n  ".join(
        problems
    )


def test_every_listed_hazard_has_a_test(hazard_list, suite_map):
    problems, notes = H.coverage(hazard_list, suite_map)
    for note in notes:
        warnings.warn(H.HazardWarning(note), stacklevel=1)
    assert not problems, (
        "hazard traceability (docs/hazards.toml, @pytest.mark.hazard):\n  " + "\n  ".join(problems)
    )


def test_docs_hazards_md_is_up_to_date(hazard_list, suite_map):
    diff = H.stale_diff(H.HAZARDS_MD, H.render(hazard_list, suite_map))
    assert not diff, "docs/hazards.md is out of date: run `make hazards`\n" + diff


# ---- the check can fail --------------------------------------------------------------------

CODE = '[{ file = "f.py", name = "g", does = "checks" }]'


def entry(hid, **fields):
    """One [[hazard]] entry in TOML; a field given as None is left out, others are raw TOML."""
    values = {
        "id": '"%s"' % hid,
        "title": '"hazard %s"' % hid[1:],
        "harm": '"harm"',
        "mitigation": '"mitigation"',
        "target": '"target"',
        "code": CODE,
    }
    values.update(fields)
    return "\n[[hazard]]\n" + "".join(
        "%s = %s\n" % (k, v) for k, v in values.items() if v is not None
    )


def synthetic(*extra, drop=(), **entries):
    """A TOML list H1..H12 with entries replaced (H4="...") or dropped, and `extra` appended."""
    ids = ["H%d" % n for n in range(1, 13)]
    return "".join([entries.get(i, entry(i)) for i in ids if i not in drop] + list(extra))


PLANNED_H9 = entry(
    "H9", title='"storage"', code=None, planned='{ issue = 6, what = "storage on flash" }'
)
PENDING_H11 = entry("H11", title='"limits"', pending='[{ issue = 5, what = "service code" }]')


def all_covered(hazards, **override):
    found = {h.id: ["tests/test_x.py::test_%s" % h.id.lower()] for h in hazards}
    found.update(override)
    return found


def test_synthetic_list_fully_covered_passes():
    hs = H.parse(synthetic())
    assert [h.id for h in hs] == ["H%d" % n for n in range(1, 13)]
    assert H.coverage(hs, all_covered(hs)) == ([], [])


def test_a_hazard_without_a_test_fails_and_says_what_to_do():
    hs = H.parse(synthetic())
    problems, notes = H.coverage(hs, all_covered(hs, H4=[]))
    assert len(problems) == 1 and not notes
    assert problems[0].startswith("H4 (hazard 4) has no test")
    assert '@pytest.mark.hazard("H4")' in problems[0] and "(f.py g)" in problems[0]
    found = all_covered(hs)
    del found["H5"]  # not in the map at all: the same
    assert H.coverage(hs, found)[0][0].startswith("H5 (hazard 5) has no test")


def test_a_planned_hazard_is_accepted_without_tests_but_warned_about():
    hs = H.parse(synthetic(H9=PLANNED_H9))
    problems, notes = H.coverage(hs, all_covered(hs, H9=[]))
    assert problems == []
    assert notes == [
        "H9 (storage) has NO TEST: accepted only because it is planned for "
        "issue 6 (storage on flash)"
    ]


def test_a_planned_hazard_that_has_tests_must_drop_planned():
    hs = H.parse(synthetic(H9=PLANNED_H9))
    problems, notes = H.coverage(hs, all_covered(hs))
    assert len(problems) == 1 and notes == []
    assert problems[0].startswith("H9 (storage) is declared planned for issue 6, but 1 test(s)")
    assert "remove `planned`" in problems[0]


def test_pending_parts_need_tests_for_what_is_built_and_are_warned_about():
    hs = H.parse(synthetic(H11=PENDING_H11))
    problems, notes = H.coverage(hs, all_covered(hs))
    assert problems == []
    assert notes == ["H11 (limits): part still planned for issue 5: service code"]
    problems, _ = H.coverage(hs, all_covered(hs, H11=[]))
    assert len(problems) == 1 and problems[0].startswith("H11 (limits) has no test")


def test_tests_carrying_an_unlisted_hazard_fail():
    hs = H.parse(synthetic())
    problems, _ = H.coverage(hs, all_covered(hs, H13=["tests/test_x.py::test_new"]))
    assert problems == [
        "tests carry hazard H13, which docs/hazards.toml does not list: tests/test_x.py::test_new"
    ]


def test_rendered_table_shows_tests_planned_and_uncovered():
    hs = H.parse(synthetic(H9=PLANNED_H9, H11=PENDING_H11))
    md = H.render(hs, all_covered(hs, H4=[], H9=[]))
    rows = {line.split("**")[1]: line for line in md.splitlines() if line.startswith("| **H")}
    assert list(rows) == ["H%d" % n for n in range(1, 13)]
    assert "`tests/test_x.py::test_h1`" in rows["H1"] and "`f.py` `g`: checks" in rows["H1"]
    assert rows["H4"].endswith("| **none: not covered** |")
    assert rows["H9"].endswith("| none yet (planned, issue 6) |")
    assert "**Planned, issue 6:** storage on flash" in rows["H9"]
    assert "**Still to come, issue 5:** service code" in rows["H11"]
    assert "| planned, no test yet | H9 (issue 6) |" in md
    assert "| not covered (fails `make test`) | H4 |" in md
    assert "## Open problems" in md and "- H4 (hazard 4) has no test" in md


def test_table_cells_cannot_break_the_table():
    hs = H.parse(synthetic(H1=entry("H1", harm='"a | b *c*"')))
    md = H.render(hs, all_covered(hs))
    assert "a \\| b \\*c\\*" in md


@pytest.mark.parametrize(
    "text, message",
    [
        (synthetic(drop=("H7",)), "H7 missing"),
        (synthetic(entry("H3")), "H3 listed twice"),
        (synthetic(H3=entry("X3")), "id must be H followed by a number"),
        (synthetic(H2=entry("H2", target=None)), "hazard H2: `target` is missing or empty"),
        (synthetic(H2=entry("H2", harm='"  "')), "`harm` is missing or empty"),
        (synthetic(H2=entry("H2", colour='"red"')), "unknown key(s) colour"),
        (
            synthetic(H9=entry("H9", code=None, planned='{ what = "x" }')),
            "needs exactly issue, what",
        ),
        (
            synthetic(H9=entry("H9", code=None, planned='{ issue = "six", what = "x" }')),
            "is not an issue number",
        ),
        (
            synthetic(H9=entry("H9", code=None, planned='{ issue = 6, what = "" }')),
            "must say what is still to be built",
        ),
        (
            synthetic(
                H9=entry(
                    "H9",
                    code=None,
                    planned='{ issue = 6, what = "x" }',
                    pending='[{ issue = 5, what = "y" }]',
                )
            ),
            "not both",
        ),
        (synthetic(H9=entry("H9", code=None)), "a built mitigation must name its code"),
        (
            synthetic(H1=entry("H1", code='[{ file = "f.py", name = "g" }]')),
            "code[0] needs file, name and does",
        ),
        ("hazard = [1, 2]\n", "expected only [[hazard]] tables"),
        ("[[hazard]\n", "docs/hazards.toml:"),
    ],
)
def test_malformed_lists_are_refused(text, message):
    with pytest.raises(H.HazardListError) as e:
        H.parse(text)
    assert message in str(e.value)


def test_code_references_are_checked(tmp_path):
    (tmp_path / "f.py").write_text(
        "X = 1\n\n\ndef g():\n    pass\n\n\nclass C:\n    K = 2\n\n    def m(self):\n        pass\n"
    )
    refs = ", ".join(
        '{ file = "%s", name = "%s", does = "d" }' % ref
        for ref in (
            ("f.py", "X"),
            ("f.py", "g"),
            ("f.py", "C"),
            ("f.py", "C.K"),
            ("f.py", "C.m"),
            ("f.py", "C.gone"),
            ("nope.py", "g"),
        )
    )
    hs = H.parse(synthetic(H2=entry("H2", code="[%s]" % refs)))
    assert H.code_problems(hs, root=tmp_path) == [
        "H2: its mitigation names C.gone in f.py, which is not defined there",
        "H2: its mitigation names nope.py, which does not exist",
    ]


# ---- the pytest plugin on a throwaway folder ---------------------------------------------------


def run_pytest(folder, *args):
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "host_tools.hazards",
        "-p",
        "no:cacheprovider",
        *args,
        str(folder),
    ]
    return subprocess.run(
        cmd, cwd=folder, env=H.child_env(), capture_output=True, text=True, timeout=120
    )


def test_the_map_sees_function_class_module_and_parametrized_marks(tmp_path):
    (tmp_path / "test_a.py").write_text("""
import pytest

pytestmark = pytest.mark.hazard("H3")


@pytest.mark.hazard("H2", "H6")
@pytest.mark.parametrize("n", [1, 2])
def test_p(n):
    pass


@pytest.mark.hazard("H12")
class TestK:
    @pytest.mark.hazard("H2")
    def test_m(self):
        pass


def test_plain():
    pass
""")
    (tmp_path / "test_b.py").write_text("def test_unmarked():\n    pass\n")
    out = tmp_path / "map.json"
    proc = run_pytest(tmp_path, "--collect-only", "-q", H.MAP_OPTION, str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["tests"] == 5
    assert list(data["hazards"]) == [h.id for h in H.load()]
    assert {k: v for k, v in data["hazards"].items() if v} == {
        "H2": ["test_a.py::test_p", "test_a.py::TestK::test_m"],
        "H3": ["test_a.py::test_p", "test_a.py::TestK::test_m", "test_a.py::test_plain"],
        "H6": ["test_a.py::test_p"],
        "H12": ["test_a.py::TestK::test_m"],
    }


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_an_unknown_hazard_id_is_a_collection_error(tmp_path, xdist):
    (tmp_path / "test_bad.py").write_text("""
import pytest


@pytest.mark.hazard("H99")
def test_typo():
    pass


def test_fine():
    pass
""")
    (tmp_path / "test_empty.py").write_text("""
import pytest


class TestE:
    @pytest.mark.hazard()
    def test_no_ids(self):
        pass
""")
    proc = run_pytest(tmp_path, "-q", *xdist)
    out = proc.stdout + proc.stderr
    assert proc.returncode in (1, 2), out  # collection errors, not an internal error (3)
    assert "INTERNALERROR" not in out
    assert "ERROR test_bad.py" in out and "ERROR test_empty.py::TestE" in out
    assert "test_bad.py::test_typo: hazard 'H99' is not in docs/hazards.toml" in out
    assert (
        'test_empty.py::TestE::test_no_ids: write @pytest.mark.hazard("H1", ...) '
        "with one or more ids"
    ) in out
