"""The session report's charts read right (host_tools/report.py) and session.png names
its phases (host_tools/sim_tool.py): judged on the matplotlib Figures they build."""

import random
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from host_cli import run  # noqa: E402
from host_tools import logs, report, sim_tool  # noqa: E402
from injcore import codes as C  # noqa: E402
from injcore import machine as M  # noqa: E402
from injcore import tlog  # noqa: E402
from injcore.fsio import DirFS  # noqa: E402
from injcore.settings import Limits  # noqa: E402
from sim import demo  # noqa: E402

SESSION = 3


def write_log(folder, punctures, syringes=(), zones=None, delivered_nl=None):
    """A treatment log of one session: its start (a 1 mL syringe), calibration,
    `punctures` (dicts of PUNCTURE fields), SYRINGE records {after puncture n: model},
    a protocol with `zones` [(name, planned, dose_nl)] and its end. The Decoded log."""
    log = tlog.Log(DirFS(str(folder)), "")

    def add(kind, values):
        assert log.add(tlog.encode(kind, dict(values, session=SESSION)))
        if log.pending() >= tlog.FLUSH_AT:
            assert log.flush()

    add(tlog.K_SESSION_START, {"syringe_model": 1, "time_s": 1_700_000_000, "lot": "L1"})
    add(tlog.K_CALIBRATION, {"line_tau_us": 4000, "dose_factor_ppm": M.DOSE_FACTOR_ONE_PPM})
    if zones:
        add(tlog.K_PROTOCOL, {"version": 1, "zones": len(zones), "name": "Test"})
    for i, p in enumerate(punctures):
        if i in syringes:
            add(tlog.K_SYRINGE, {"syringe_model": syringes[i], "punctures": i})
        if zones and i == 0:
            name, planned, dose = zones[0]
            add(
                tlog.K_ZONE,
                {"event": tlog.Z_ENTER, "index": 0, "planned": planned, "name": name}
                | {"cap_nl": 10 * planned * dose, "dose_set_nl": dose},
            )
        add(tlog.K_PUNCTURE, p)
    total = sum(p["dose_nl"] for p in punctures)
    add(
        tlog.K_SESSION_END,
        {
            "punctures": sum(1 for p in punctures if not p.get("alarm")),
            "delivered_nl": total if delivered_nl is None else delivered_nl,
            "primed_nl": 14_912,
        },
    )
    assert log.flush()
    decoded = logs.read_dir(folder)
    assert not decoded.problems
    return decoded


def punctures(n, seed=1, cut=(), bad_force=(), zone=tlog.ZONE_NONE):
    """n punctures of 2 uL at 0.6 mm with a noisy peak force; `cut` ones cut by a fault
    (half a dose, partial), `bad_force` ones with the load cell invalid."""
    rnd = random.Random(seed)
    out = []
    number = 0
    for i in range(n):
        alarm = i in cut
        number += 0 if alarm else 1
        out.append(
            {
                "mode": 1,
                "zone": zone,
                "number": number + (1 if alarm else 0),
                "t_ms": 200 * i,
                "depth_set_um": 600,
                "depth_um": 600,
                "dose_set_nl": 2000,
                "dose_nl": 1000 if alarm else 2000 + rnd.randint(-20, 20),
                "force_mn": tlog.FORCE_BAD if i in bad_force else 500 + rnd.randint(0, 300),
                "alarm": int(alarm),
                "partial": int(alarm),
                "fault": C.F_ESTOP if alarm else 0,
            }
        )
    return out


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


def session_of(decoded):
    return decoded.sessions[SESSION]


def labels(ax):
    return [line.get_label() for line in ax.lines]


def line(ax, prefix):
    (found,) = [x for x in ax.lines if x.get_label().startswith(prefix)]
    return found


def is_axhline(ln):
    return list(ln.get_xdata()) == [0, 1] and ln.get_transform() == ln.axes.get_yaxis_transform()


# ---- axes and lines ---------------------------------------------------------------


def test_charts_start_at_zero_with_the_set_depth_and_the_limits(tmp_path, close_figures, sim):
    s = session_of(write_log(tmp_path, punctures(20)))
    figs = report.figures(s)
    for name in ("dose.png", "depth.png", "force.png"):
        assert figs[name].axes[0].get_ylim()[0] == 0, name
    dose, depth, force = (figs[n].axes[0] for n in ("dose.png", "depth.png", "force.png"))
    assert dose.get_ylim()[1] > 2.0 and depth.get_ylim()[1] > 4.0
    assert labels(depth) == [
        "depth set",
        "reached (counted needle steps)",
        "usable needle length 4.0 mm (limit)",
    ]
    assert list(line(depth, "depth set").get_ydata()) == [0.6, 0.6]  # one step, not 20 points
    limit = line(depth, "usable needle length")
    assert is_axhline(limit) and limit.get_ydata()[0] == M.NEEDLE_LENGTH_UM / 1000
    # The occlusion limit is the core's own figure for that syringe and those limits.
    assert sim.core.settings.syringe_model == 1
    occ = line(force, "occlusion limit")
    assert is_axhline(occ) and occ.get_ydata()[0] == sim.core.occlusion_mn / 1000
    assert occ.get_label() == "occlusion limit %.1f N (400 kPa, 1 mL)" % (
        sim.core.occlusion_mn / 1000
    )
    assert force.get_ylim()[1] > sim.core.occlusion_mn / 1000
    assert "reached (counted needle steps)" in [t.get_text() for t in depth.get_legend().texts]
    assert figs["depth.png"].get_supxlabel() == report.DEPTH_NOTE
    # Other limits: the engineer's, as given (the log does not hold them).
    sim.core.set_limits(occlusion_kpa=200, needle_length_um=3000)
    figs = report.figures(s, Limits(occlusion_kpa=200, needle_length_um=3000))
    occ = line(figs["force.png"].axes[0], "occlusion limit")
    assert occ.get_ydata()[0] == sim.core.occlusion_mn / 1000 and "200 kPa" in occ.get_label()
    limit = line(figs["depth.png"].axes[0], "usable needle length")
    assert limit.get_ydata()[0] == 3.0


def test_the_occlusion_limit_follows_a_syringe_changed_mid_session(tmp_path, close_figures, sim):
    s = session_of(write_log(tmp_path, punctures(10), syringes={4: 3}))
    force = report.figures(s)["force.png"].axes[0]
    occ = line(force, "occlusion limit")
    assert not is_axhline(occ) and occ.get_label() == (
        "occlusion limit (400 kPa on each syringe's barrel)"
    )
    want = []
    for model in (1, 3):
        sim.core.configure(syringe_model=model)
        want.append(sim.core.occlusion_mn / 1000)
    assert list(occ.get_ydata()) == [want[0]] * 4 + [want[1]] * 6
    assert force.get_ylim()[0] == 0 and force.get_ylim()[1] > want[1]


def test_a_value_below_zero_is_not_cut_off(tmp_path, close_figures):
    ps = punctures(5, cut={2})
    ps[2]["depth_um"] = -300  # cut before the tip reached the skin
    depth = report.figures(session_of(write_log(tmp_path, ps)))["depth.png"].axes[0]
    assert depth.get_ylim()[0] < -0.3
    assert list(line(depth, "cut by a fault").get_ydata()) == [-0.3]


def test_no_punctures_still_draws_axes_from_zero(tmp_path, close_figures):
    figs = report.figures(session_of(write_log(tmp_path, [])))
    for name in ("dose.png", "depth.png", "force.png"):
        ax = figs[name].axes[0]
        assert ax.get_ylim()[0] == 0 and not ax.lines
        assert "no punctures" in [t.get_text() for t in ax.texts]


# ---- a thousand punctures -----------------------------------------------------------


def test_a_thousand_punctures_are_drawn_as_bins_not_a_hairball(tmp_path, close_figures):
    n = 1000
    ps = punctures(n, cut={100, 500, 900}, bad_force={10, 11, 12})
    s = session_of(write_log(tmp_path, ps))
    assert len(s.punctures) == n
    figs = report.figures(s)
    k = -(-n // report.BINS)
    for name in ("dose.png", "depth.png", "force.png"):
        ax = figs[name].axes[0]
        assert len(ax.lines) <= 4, (name, labels(ax))
        assert max(len(ln.get_xdata()) for ln in ax.lines) <= report.BINS, name
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert [c.get_label() for c in bands] == [
            "min-max of each bin",
            "5-95 % of each bin",
        ], name
        assert ax.get_ylim()[0] == 0, name
        assert "bins of %d punctures" % k in ax.get_title()
        assert list(line(ax, "cut by a fault").get_xdata()) == [101, 501, 901], name
    force = figs["force.png"].axes[0]
    median = line(force, "peak, median")
    forces = [np.nan if p["force_mn"] == tlog.FORCE_BAD else p["force_mn"] / 1000 for p in ps]
    assert len(median.get_ydata()) == report.BINS
    for b in range(report.BINS):
        chunk = np.array(forces[b * k : (b + 1) * k])
        assert median.get_ydata()[b] == pytest.approx(np.median(chunk[np.isfinite(chunk)]))
        assert median.get_xdata()[b] == (b * k + 1 + min((b + 1) * k, n)) / 2
    assert figs["force.png"].get_supxlabel() == (
        "3 puncture(s) with the load cell invalid, not drawn"
    )
    assert is_axhline(line(force, "occlusion limit"))
    out = tmp_path / "report"
    report.write_report(logs.read_dir(tmp_path), SESSION, out)
    assert (out / "force.png").stat().st_size > 5000


def test_up_to_a_hundred_punctures_are_drawn_one_by_one(tmp_path, close_figures):
    s = session_of(write_log(tmp_path, punctures(report.DENSE_PUNCTURES)))
    force = report.figures(s)["force.png"].axes[0]
    assert len(line(force, "peak").get_ydata()) == report.DENSE_PUNCTURES
    assert not force.collections


# ---- zones, volumes, the two "delivered" -----------------------------------------------


def test_no_zone_chart_when_no_protocol_ran(tmp_path, close_figures):
    decoded = write_log(tmp_path / "plain", punctures(5))
    assert "zones.png" not in report.figures(session_of(decoded))
    written = report.write_report(decoded, SESSION, tmp_path / "r1")
    assert not (tmp_path / "r1" / "zones.png").exists()
    assert not any(p.name in ("zones.png", "plan.png") for p in written)
    decoded = write_log(tmp_path / "proto", punctures(5, zone=0), zones=[("Forehead", 5, 2000)])
    figs = report.figures(session_of(decoded))
    assert "zones.png" in figs and "plan.png" in figs
    assert figs["zones.png"].axes[0].get_ylim()[0] == 0
    report.write_report(decoded, SESSION, tmp_path / "r2")
    assert (tmp_path / "r2" / "zones.png").exists()


def test_volumes_are_given_to_a_tenth_of_a_microlitre(tmp_path, close_figures):
    ps = punctures(7, zone=0)
    decoded = write_log(tmp_path, ps, zones=[("Cheek", 8, 2000)], delivered_nl=14_049)
    s = session_of(decoded)
    rows = dict(report.summary(s)[1])
    assert rows["Volume delivered"] == "14.0 uL"
    assert rows["Volume in the records"] == "%.1f uL" % (sum(p["dose_nl"] for p in ps) / 1000)
    assert rows["Primed"] == "14.9 uL"
    report.write_report(decoded, SESSION, tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text()
    volumes = re.findall(r"([\d.]+) uL", md)  # the summary's
    for row in re.findall(r"^\| \d+ \| Cheek .*$|^\| \| \*\*Total.*$", md, re.M):
        volumes += re.findall(r"([\d.]+) / ([\d.]+)", row)[1]  # uL delivered / planned
    assert len(volumes) == 3 + 4
    assert all(re.fullmatch(r"\d+\.\d", v) for v in volumes), volumes
    (zone_line,) = [ln for ln in report.zone_table(report.zone_rows(s)) if "Cheek" in ln]
    assert "| 7 / 8 | %.1f / 16.0 | 160.0 |" % (sum(p["dose_nl"] for p in ps) / 1000) in (zone_line)


def test_the_two_delivered_figures_are_explained(tmp_path, close_figures):
    decoded = write_log(tmp_path, punctures(4, cut={2}))
    figs = report.figures(session_of(decoded))
    assert figs["dose.png"].get_supxlabel() == report.DOSE_NOTE
    assert "counted" in report.DOSE_NOTE and "not measured" in report.DOSE_NOTE
    texts = [t.get_text() for t in figs["summary.png"].texts]
    assert "\n".join([report.DELIVERED_NOTE, report.LIMITS_NOTE]) in texts
    assert labels(figs["dose.png"].axes[0]) == [
        "dose set",
        "delivered (counted plunger steps)",
        "cut by a fault",
    ]
    report.write_report(decoded, SESSION, tmp_path / "r")
    md = (tmp_path / "r" / "summary.md").read_text().splitlines()
    i = md.index(report.DELIVERED_NOTE)
    assert md[i - 1] == "" and md[i - 2].startswith("- **Limits drawn**")
    assert "Volume delivered" in report.DELIVERED_NOTE
    assert "Volume in the records" in report.DELIVERED_NOTE


def test_report_cli_takes_the_engineers_limits(tmp_path, capsys, close_figures):
    write_log(tmp_path, punctures(3))
    out = tmp_path / "r"
    code, _, err = run(capsys, "report", SESSION, "--log", tmp_path, "--out", out)
    assert code == 0, err
    md = (out / "summary.md").read_text()
    assert "occlusion 400 kPa, usable needle length 4.0 mm (defaults)\n" in md
    assert report.LIMITS_NOTE in md
    code, _, err = run(
        capsys, "report", SESSION, "--log", tmp_path, "--out", out, "--occlusion-kpa", 250
    )
    assert code == 0, err
    md = (out / "summary.md").read_text()
    assert "occlusion 250 kPa, usable needle length 4.0 mm\n" in md
    assert report.LIMITS_NOTE not in md
    code, _, err = run(capsys, "report", SESSION, "--log", tmp_path, "--occlusion-kpa", 5)
    assert code == 2 and "occlusion_kpa" in err and "Traceback" not in err


# ---- session.png --------------------------------------------------------------------------


def test_session_png_shades_and_names_the_phases(tmp_path, close_figures):
    done = demo.run_demo(2, 600)
    spans = sim_tool.phase_spans(done.trace)
    assert [st for st, _, _ in spans][:2] == [C.ST_HOMING, C.ST_READY]
    assert all(a <= b for _, a, b in spans) and spans[-1][2] == done.trace.t_ms[-1] / 1000
    assert all(spans[i][2] == spans[i + 1][1] for i in range(len(spans) - 1))
    fig = sim_tool.trace_figure(done)
    phases = {"homing", "load", "prime", "advance", "inject", "suck-back", "retract", "wait"}
    (legend,) = fig.legends
    assert {t.get_text() for t in legend.texts} == phases
    session_axes = fig.axes[:3]
    for ax in session_axes:
        shaded = {c.get_label() for c in ax.collections}
        assert shaded == phases
    zooms = [ax for ax in fig.axes if "close up" in ax.get_title()]
    modes = {p.number: p.mode for p in done.punctures}
    titles = [re.match(r"puncture (\d+) \((\w+)\) at", z.get_title()) for z in zooms]
    assert [t[2] for t in titles] == ["single", "nappage"]
    assert all(modes[int(t[1])] == t[2] for t in titles)
    single, nappage = ({t.get_text() for t in z.texts} for z in zooms)
    assert {"advance", "inject", "suck-back", "retract"} <= single
    assert {"advance", "inject", "suck-back", "retract", "wait"} <= nappage
    path = tmp_path / "session.png"
    sim_tool.plot_trace(done, path)
    assert path.stat().st_size > 20_000
