"""The PHQ-9 / GAD-7 trend chart: well-formed, labelled SVG with no inline styles, whose circles
are exactly the rows of the screen-reader table. Pure functions: no app, no database."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from kapjournal.services import chart
from kapjournal.services.chart import Band, Marker, Point, band_of, trend_chart

NS = {"svg": "http://www.w3.org/2000/svg"}
PHQ9 = [
    Band(0, 4, "Minimal"),
    Band(5, 9, "Mild"),
    Band(10, 14, "Moderate"),
    Band(15, 19, "Moderately severe"),
    Band(20, 27, "Severe"),
]
GAD7 = [Band(0, 4, "Minimal"), Band(5, 9, "Mild"), Band(10, 14, "Moderate"), Band(15, 21, "Severe")]
UTC_ZONE = ZoneInfo("UTC")
PROPERTY = settings(max_examples=40, deadline=None, database=None)


def at(day: int, hour: int = 9, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def draw(points, *, markers=(), bands=PHQ9, max_score=27, zone=UTC_ZONE, chart_id="chart-phq9"):
    return trend_chart(
        title="PHQ-9 scores over time",
        max_score=max_score,
        bands=list(bands),
        points=list(points),
        markers=list(markers),
        zone=zone,
        chart_id=chart_id,
    )


def parse(drawn: chart.Chart) -> ET.Element:
    return ET.fromstring(str(drawn.svg))  # noqa: S314  (our own output, not untrusted input)


def find(root: ET.Element, tag: str, cls: str | None = None) -> list[ET.Element]:
    found = root.findall(f".//svg:{tag}", NS)
    return [e for e in found if cls is None or cls in e.get("class", "").split()]


def x_labels(root: ET.Element) -> list[ET.Element]:
    return [e for e in find(root, "text", "chart-label") if e.get("data-date")]


def y_labels(root: ET.Element) -> list[int]:
    return [int(e.text) for e in find(root, "text", "chart-label") if not e.get("data-date")]


COURSE = [Point(at(3), 19), Point(at(10), 14), Point(at(17), 12), Point(at(24), 8)]
SESSIONS = [Marker(at(5, 15), "Ketamine session"), Marker(at(12, 15), "Ketamine session")]


def test_svg_is_well_formed_and_labelled():
    drawn = draw(COURSE, markers=SESSIONS)
    root = parse(drawn)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == f"0 0 {chart.WIDTH} {chart.HEIGHT}"
    assert root.get("width") == "100%"
    assert root.get("height") is None
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "chart-phq9-title chart-phq9-desc"
    title = root.find("svg:title[@id='chart-phq9-title']", NS)
    desc = root.find("svg:desc[@id='chart-phq9-desc']", NS)
    assert title.text == "PHQ-9 scores over time"
    assert "4 results" in desc.text
    assert "First 19 (Moderately severe) on 3 Nov 2026" in desc.text
    assert "latest 8 (Mild) on 24 Nov 2026" in desc.text
    assert "2 treatment sessions" in desc.text


def test_circles_match_rows_oldest_first():
    drawn = draw(reversed(COURSE))
    circles = find(parse(drawn), "circle", "chart-point")
    assert drawn.rows == [
        ("3 Nov 2026", 19, "Moderately severe"),
        ("10 Nov 2026", 14, "Moderate"),
        ("17 Nov 2026", 12, "Moderate"),
        ("24 Nov 2026", 8, "Mild"),
    ]
    assert [(c.get("data-date"), int(c.get("data-score"))) for c in circles] == [
        ("2026-11-03", 19),
        ("2026-11-10", 14),
        ("2026-11-17", 12),
        ("2026-11-24", 8),
    ]
    assert [c.find("svg:title", NS).text for c in circles][1] == "10 Nov 2026: 14 (Moderate)"
    assert [float(c.get("cx")) for c in circles] == sorted(float(c.get("cx")) for c in circles)


def test_line_joins_the_points_in_time_order():
    root = parse(draw(reversed(COURSE)))
    (line,) = find(root, "polyline", "chart-line")
    circles = find(root, "circle", "chart-point")
    joined = [tuple(map(float, pair.split(","))) for pair in line.get("points").split()]
    assert joined == [(float(c.get("cx")), float(c.get("cy"))) for c in circles]


@pytest.mark.parametrize(("bands", "max_score"), [(PHQ9, 27), (GAD7, 21)])
def test_band_rects_cover_zero_to_max_without_gaps(bands, max_score):
    root = parse(draw([Point(at(3), 3)], bands=bands, max_score=max_score))
    rects = find(root, "rect", "chart-band")
    assert len(rects) == len(bands)
    assert [int(r.get("data-low")) for r in rects] == [b.low for b in bands]
    assert [r.get("class").split()[1] for r in rects] == [
        f"chart-band-{i}" for i in range(len(bands))
    ]
    spans = [(float(r.get("y")) + float(r.get("height")), float(r.get("y"))) for r in rects]
    assert spans[0][0] == chart.Y1  # score 0 at the bottom of the plot
    assert spans[-1][1] == chart.Y0  # the maximum at its top
    assert all(low == pytest.approx(top) for (_, top), (low, _) in itertools.pairwise(spans))
    labels = [t.text for t in find(root, "text", "chart-band-label")]
    assert labels == [b.label for b in bands]


@pytest.mark.parametrize(
    ("bands", "max_score", "ticks"),
    [(PHQ9, 27, [0, 5, 10, 15, 20, 27]), (GAD7, 21, [0, 5, 10, 15, 21])],
)
def test_y_axis_is_labelled_at_band_boundaries(bands, max_score, ticks):
    root = parse(draw(COURSE[-1:], bands=bands, max_score=max_score))
    assert sorted(y_labels(root)) == ticks


def test_markers_are_dashed_lines_with_dates():
    root = parse(draw(COURSE, markers=SESSIONS))
    markers = find(root, "line", "chart-marker")
    assert [m.get("data-date") for m in markers] == ["2026-11-05", "2026-11-12"]
    assert markers[0].find("svg:title", NS).text == "Ketamine session, 5 Nov 2026"
    assert markers[0].get("x1") == markers[0].get("x2")


def test_x_range_stretches_to_take_in_markers():
    early = Marker(at(20, month=10), "Ketamine session")
    root = parse(draw(COURSE, markers=[early]))
    (marker,) = find(root, "line", "chart-marker")
    assert (
        chart.X0
        < float(marker.get("x1"))
        < min(float(c.get("cx")) for c in find(root, "circle", "chart-point"))
    )


def test_no_style_attribute_or_element_anywhere():
    drawn = draw(COURSE, markers=SESSIONS)
    root = parse(drawn)
    assert find(root, "style") == []
    for element in root.iter():
        assert "style" not in element.attrib
        assert not any(name.startswith("on") for name in element.attrib)
    assert "style" not in str(drawn.svg)


def test_single_point_sits_mid_two_week_window():
    far = Marker(at(20), "Ketamine session")  # outside the ±7 days: left out
    near = Marker(at(6), "Ketamine session")
    drawn = draw([Point(at(3), 12)], markers=[far, near])
    root = parse(drawn)
    (circle,) = find(root, "circle", "chart-point")
    assert float(circle.get("cx")) == pytest.approx((chart.X0 + chart.X1) / 2, abs=0.1)
    assert find(root, "polyline") == []
    assert [m.get("data-date") for m in find(root, "line", "chart-marker")] == ["2026-11-06"]
    assert drawn.rows == [("3 Nov 2026", 12, "Moderate")]
    assert "1 result," in root.find("svg:desc", NS).text


def test_no_points_gives_an_empty_chart():
    drawn = draw([], markers=SESSIONS)
    assert drawn.svg == "" and isinstance(drawn.svg, Markup)
    assert drawn.rows == []


def test_two_charts_on_one_page_share_no_ids():
    first = parse(draw(COURSE, chart_id="chart-phq9"))
    second = parse(draw(COURSE, bands=GAD7, max_score=21, chart_id="chart-gad7"))
    ids = [[e.get("id") for e in root.iter() if e.get("id")] for root in (first, second)]
    assert ids[0] and ids[1]
    assert not set(ids[0]) & set(ids[1])
    for root, own in zip((first, second), ids, strict=True):
        assert set(root.get("aria-labelledby").split()) <= set(own)


def test_text_is_escaped():
    odd = '<b>&"x'
    drawn = trend_chart(
        title=f"Scores {odd}",
        max_score=27,
        bands=[Band(0, 27, f"Band {odd}")],
        points=[Point(at(3), 12), Point(at(9), 11)],
        markers=[Marker(at(5), f"Session {odd}")],
        zone=UTC_ZONE,
        chart_id="c",
    )
    assert "<b>" not in str(drawn.svg)
    root = parse(drawn)
    assert root.find("svg:title", NS).text == f"Scores {odd}"
    assert find(root, "text", "chart-band-label")[0].text == f"Band {odd}"
    assert (
        find(root, "line", "chart-marker")[0]
        .find("svg:title", NS)
        .text.startswith(f"Session {odd}, ")
    )
    assert find(root, "b") == [] and root.find(".//b") is None


PHQ9_EDGES = {0: "Minimal", 4: "Minimal", 5: "Mild", 9: "Mild", 10: "Moderate", 14: "Moderate"}
PHQ9_EDGES |= {15: "Moderately severe", 19: "Moderately severe", 20: "Severe", 27: "Severe"}
GAD7_EDGES = {0: "Minimal", 4: "Minimal", 5: "Mild", 9: "Mild", 10: "Moderate", 14: "Moderate"}
GAD7_EDGES |= {15: "Severe", 21: "Severe"}


@pytest.mark.parametrize(("score", "label"), PHQ9_EDGES.items())
def test_band_of_phq9_boundaries(score, label):
    assert band_of(score, PHQ9).label == label


@pytest.mark.parametrize(("score", "label"), GAD7_EDGES.items())
def test_band_of_gad7_boundaries(score, label):
    assert band_of(score, GAD7).label == label


@pytest.mark.parametrize(("bands", "score"), [(PHQ9, -1), (PHQ9, 28), (GAD7, 22)])
def test_band_of_refuses_a_score_outside_every_band(bands, score):
    with pytest.raises(ValueError, match="outside"):
        band_of(score, bands)


@pytest.mark.parametrize(
    ("zone", "when", "local"),
    [
        ("Pacific/Auckland", at(3, hour=22), ("4 Nov 2026", "2026-11-04")),
        ("America/Los_Angeles", at(3, hour=3), ("2 Nov 2026", "2026-11-02")),
    ],
)
def test_dates_are_local_to_the_viewer(zone, when, local):
    drawn = draw([Point(when, 7)], markers=[Marker(when, "Ketamine session")], zone=ZoneInfo(zone))
    root = parse(drawn)
    assert drawn.rows == [(local[0], 7, "Mild")]
    assert find(root, "circle", "chart-point")[0].get("data-date") == local[1]
    assert find(root, "line", "chart-marker")[0].get("data-date") == local[1]


def test_naive_times_are_taken_as_utc():
    naive = datetime(2026, 11, 3, 23, 30)
    drawn = draw([Point(naive, 7)], zone=ZoneInfo("Europe/Berlin"))
    assert drawn.rows == [("4 Nov 2026", 7, "Mild")]


@PROPERTY
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=800 * 24), min_size=1, max_size=30),
    scores=st.data(),
    hours=st.integers(min_value=-11, max_value=13),
)
def test_any_course_keeps_table_and_axis_honest(offsets, scores, hours):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [Point(start + timedelta(hours=h), scores.draw(st.integers(0, 27))) for h in offsets]
    drawn = draw(points, zone=ZoneInfo(f"Etc/GMT{-hours:+d}"))
    root = parse(drawn)
    circles = find(root, "circle", "chart-point")
    assert [int(c.get("data-score")) for c in circles] == [score for _, score, _ in drawn.rows]
    assert sorted(p.score for p in points) == sorted(score for _, score, _ in drawn.rows)
    labels = x_labels(root)
    assert 1 <= len(labels) <= 5
    halves = [(float(e.get("x")), chart.LABEL_CHAR * len(e.text) / 2) for e in labels]
    boxes = [(x - half, x + half) for x, half in halves]
    assert all(left >= 0 and right <= chart.WIDTH for left, right in boxes)
    assert all(b[0] > a[1] for a, b in itertools.pairwise(boxes))
