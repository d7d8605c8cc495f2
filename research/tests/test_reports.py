"""The committed reports against the code that writes them: one spread, links that resolve, an index that is the
rendering of the verdicts, text that fits each suite's data, prose numbers that match the reports."""

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from research import report, search, verdicts
from research.context import ELONGATED, POOR_BY_SCALE, SQUARE, curves_section
from research.index import NOT_RUN, VERDICTS, render_index
from research.tests.helpers import MICRO, fake_ctx

REPORTS = Path(__file__).resolve().parents[2] / "reports"
SOURCES = Path(__file__).resolve().parents[1]


def committed_markdown() -> list[Path]:
    return [f for f in sorted(REPORTS.rglob("*.md")) if ".cache" not in f.parts]


# ------------------------------------------------------------------------------------------------ the one spread
def test_seed_spread_is_half_the_range():
    assert report.seed_spread([0.50, 0.53, 0.51]) == pytest.approx(0.015)
    assert report.seed_spread([0.4]) == 0.0
    assert math.isnan(report.seed_spread([])) and math.isnan(report.seed_spread([None, float("nan")]))
    assert report.seed_spread([0.2, None, 0.3]) == pytest.approx(0.05)  # undefined values left out
    assert report.mean_spread([0.50, 0.53, 0.51]) == pytest.approx((0.5133333, 0.015))
    assert report.fmt([0.50, 0.53, 0.51]) == "0.513 ± 0.015"
    # the verdicts' noise is built from the same spread: the sum of both sides', or that of the differences
    a, b = [0.50, 0.53, 0.51], [0.40, 0.44, 0.41]
    assert verdicts.noise(a, b) == pytest.approx(report.seed_spread(a) + report.seed_spread(b))
    assert verdicts.noise(a, b, paired=True) == pytest.approx(
        max(verdicts.TIE, report.seed_spread([x - y for x, y in zip(a, b)])))


def test_no_other_spread_is_computed_in_research():
    """One definition: no standard deviation (or other spread) is computed anywhere else in research/."""
    pattern = re.compile(r"\b(np\.std|numpy\.std|\.std\(|stdev|pstdev|variance)\b")
    offenders = [f"{f.name}:{i}" for f in sorted(SOURCES.glob("*.py"))
                 for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders


def test_every_report_names_the_one_spread():
    for f in committed_markdown():
        text = f.read_text()
        assert "standard deviation" not in text and "+-" not in text, f
        if "±" in text and f.name == "README.md" and f.parent != REPORTS:
            assert report.SPREAD_DEF in text or "half the range" in text, f
    assert report.SPREAD_DEF in (REPORTS / "README.md").read_text()


def test_bccd_first_look_spreads_are_the_seed_spread_of_its_runs():
    rows = list(csv.DictReader((REPORTS / "bccd" / "runs.csv").open()))
    text = (REPORTS / "bccd" / "README.md").read_text()
    summary = (REPORTS / "summary.md").read_text()
    for head in ("metaanchor", "predefined"):
        for metric in ("test_AP", "test_AP50"):
            cell = report.fmt([float(r[metric]) for r in rows if r["head"] == head])
            assert cell in summary, (head, metric, cell)
        assert report.fmt([float(r["test_AP"]) for r in rows if r["head"] == head]) in text


# ------------------------------------------------------------------------------------------------------ links
def test_links_in_the_reports_resolve():
    broken = []
    for f in committed_markdown():
        for target in re.findall(r"\]\(([^)\s]+)\)", f.read_text()):
            path = target.split("#")[0]
            if path and not re.match(r"[a-z]+://", path) and not (f.parent / path).exists():
                broken.append(f"{f.relative_to(REPORTS)} -> {target}")
    assert not broken


def test_every_picture_in_the_reports_is_referenced():
    pictures = [p for p in REPORTS.rglob("*.png") if ".cache" not in p.parts]
    unreferenced = [p for p in pictures if p.name not in "".join(m.read_text() for m in p.parent.glob("*.md"))]
    assert pictures and not unreferenced


def test_convergence_section_links_the_schedule_report_only_where_it_exists(tmp_path):
    (tmp_path / "anchor-configs").mkdir()
    text = curves_section(tmp_path / "anchor-configs", {}, "t")
    assert "schedule/README.md" not in text and "no longer schedule was trained on this data" in text
    (tmp_path / "schedule").mkdir()
    (tmp_path / "schedule" / "README.md").write_text("# schedule\n")
    assert "[schedule](../schedule/README.md) trains the same models for longer" in curves_section(
        tmp_path / "anchor-configs", {}, "t")


# ------------------------------------------------------------------------------------------------------ index
@pytest.mark.parametrize("suite", ["", "bccd-suite"])
def test_committed_index_is_the_rendering_of_the_committed_verdicts(suite):
    folder = REPORTS / suite
    assert render_index(folder) == (folder / "README.md").read_text()


@pytest.mark.parametrize("suite", ["", "bccd-suite"])
def test_committed_verdicts_are_those_of_the_reports(suite):
    """Each claim of verdicts.json is stated with the same verdict and margin in its report."""
    folder = REPORTS / suite
    claims = json.loads((folder / VERDICTS).read_text())["claims"]
    assert claims
    for c in claims:
        if c["claim"] == NOT_RUN:
            continue
        text = (folder / c["experiment"] / "README.md").read_text()
        word = "held" if c["held"] else "did not hold" if c["tested"] else "untested"
        line = next(x for x in text.splitlines() if x.startswith(f"- **{c['claim']}**: "))
        assert line.startswith(f"- **{c['claim']}**: {word}."), line
        if c["experiment"] == "schedule":  # its margin is the allowed gain minus the gain
            assert f"gain {0.01 - c['margin']:+.3f} " in line, line
        else:
            assert f"Δ {c['margin']:+.3f}" in line or f"Δ {-c['margin']:+.3f}" in line, line


def test_the_index_calls_the_synthetic_scale_near_convergence():
    text = (REPORTS / "README.md").read_text()
    schedule = [c for c in json.loads((REPORTS / VERDICTS).read_text())["claims"] if c["experiment"] == "schedule"]
    gains = [g for c in schedule for g in c["per_seed"]]
    assert min(gains) > 0  # every seed still gained from 12000 to 24000 iterations
    assert f"near convergence, not converged: every seed still gained {min(gains):+.3f}..{max(gains):+.3f}" in text
    for f in [REPORTS / "README.md", REPORTS / "summary.md", *committed_markdown()]:
        assert "converged scale" not in f.read_text(), f


# ------------------------------------------------------------------------------------- text that fits its suite
def test_search_intro_follows_the_suite(tmp_path, synth_dirs, monkeypatch):
    shapes = np.array([[10.0, 10.0], [12.0, 10.0], [10.0, 12.0]])
    synthetic = fake_ctx(tmp_path / "a", synth_dirs)
    text = search.intro(synthetic, search.search_from(synthetic), shapes)
    assert synthetic.poor[0] == SQUARE
    assert "samples each of its ratios (1) ×2^±2 around it, i.e. ratios 0.25..4" in text
    monkeypatch.setitem(POOR_BY_SCALE, MICRO.name, (ELONGATED,))
    real = fake_ctx(tmp_path / "b", synth_dirs)
    text = search.intro(real, search.search_from(real), shapes)
    assert "elongated only (3x2)" in text and "square only" not in text and "1/4..4" not in text
    assert "samples each of its ratios (0.33, 3) ×2^±2 around it, i.e. ratios 0.083..1.3, 0.75..12" in text
    assert "the training boxes' h/w spans 0.85..1.2" in text


def test_committed_search_reports_describe_their_own_data():
    synthetic = (REPORTS / "search" / "README.md").read_text().splitlines()[2]
    bccd = (REPORTS / "bccd-suite" / "search" / "README.md").read_text().splitlines()[2]
    assert "square only (3x1)" in synthetic and "square only" not in bccd and "elongated only (3x2)" in bccd
    assert "whole h/w range" not in bccd


# ------------------------------------------------------------------------------------------------ prose numbers
def _runs(experiment: str) -> tuple[int, int]:
    m = re.search(r"(\d+) of (\d+) runs passed the plateau rule", (REPORTS / experiment / "README.md").read_text())
    return int(m.group(2)), int(m.group(1))


def test_run_counts_in_the_summary_are_the_reports():
    """The summary's runs table: each experiment's runs and how many passed the plateau rule, as its report says."""
    text = (REPORTS / "summary.md").read_text()
    rows = re.findall(r"^\| \[([a-z/-]+)\]\([^)]+\) \| (\d+) \| (\d+) \|", text, re.M)
    assert len(rows) >= 8
    for name, runs, passed in rows:
        assert _runs(name) == (int(runs), int(passed)), name
    assert "27 runs" not in text and "26 converged" not in text


def test_prose_has_no_history():
    for f in [REPORTS / "summary.md", *committed_markdown()]:
        text = f.read_text()
        for phrase in ("later lost", "since this sitting", "previous measurement", "this sitting", "issue "):
            assert phrase not in text, (f, phrase)
