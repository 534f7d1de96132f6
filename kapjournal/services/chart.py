"""A server-rendered SVG trend chart for questionnaire scores (PHQ-9, GAD-7).

No JavaScript and no inline styles (the CSP forbids them): every colour comes from a `chart-*`
class in static/css/app.css. The same points come back as rows for a screen-reader table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from babel.dates import get_month_names
from markupsafe import Markup

from .. import i18n
from ..i18n import gettext as _
from ..i18n import ngettext

WIDTH, HEIGHT = 400, 250  # the viewBox; the SVG scales to its container's width
X0, X1, Y0, Y1 = 30, 394, 8, 226  # the plot area: left, right, top, bottom
# The labels' size in viewBox units (set on the <svg>; the text inherits it): at least
# MIN_TEXT_PX CSS pixels on a phone, where the figure is FIGURE_PX wide (a 360 px screen less
# the page's margins and its card's: 360 - 2 x 16 - 2 x 18 - 2 x 1) and so shrinks the picture
# by FIGURE_PX / WIDTH.
MIN_TEXT_PX, FIGURE_PX = 12, 290
FONT = math.ceil(MIN_TEXT_PX * WIDTH / FIGURE_PX)  # 17
TICK_GAP = FONT + 2  # the least vertical room between two y-axis labels
LABEL_CHAR = FONT * 0.58  # a generous width of one character of a label
DAY_STEPS = (1, 2, 3, 7, 14, 28, 56, 91, 182, 364)
# English month abbreviations, as day_text writes them in English (pages use day_text, which
# speaks the page's language; tests build the expected English labels from these).
MONTHS = tuple(get_month_names("abbreviated", locale="en")[m] for m in range(1, 13))
Row = tuple[str, int, str]


@dataclass(frozen=True)
class Band:
    low: int  # inclusive
    high: int  # inclusive
    label: str


@dataclass(frozen=True)
class Point:
    at: datetime  # UTC; a naive time (SQLite hands them back so) is taken as UTC
    score: int


@dataclass(frozen=True)
class Marker:
    at: datetime  # a treatment session, UTC; naive is taken as UTC
    label: str


@dataclass(frozen=True)
class Chart:
    svg: Markup  # the <svg> element, or "" when there are no points
    rows: list[Row]  # (date text, score, band label), oldest first, in the circles' order


@dataclass(frozen=True)
class _Scale:
    start: datetime
    end: datetime
    max_score: int
    zone: tzinfo

    def x(self, at: datetime) -> float:
        return X0 + (at - self.start) / (self.end - self.start) * (X1 - X0)

    def y(self, score: float) -> float:
        return Y1 - score / self.max_score * (Y1 - Y0)

    def day(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()


def band_of(score: int, bands: Sequence[Band]) -> Band:
    """The band whose inclusive bounds hold `score`; ValueError if none does."""
    for band in bands:
        if band.low <= score <= band.high:
            return band
    raise ValueError(f"score {score} is outside every band")


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def day_text(day: date, *, year: bool = True) -> str:
    """A day as the chart and its table say it, in the page's language: "18 Nov 2026", "18 nov
    2026" (English outside a request)."""
    return i18n.format_day(day, year=year)


def _el(tag: str, cls: str, *children: str, **attrs: object) -> Markup:
    """One SVG element with its class, attributes and text escaped (Markup children pass as
    they are). A keyword's underscores become hyphens: data_score is data-score."""
    attributes = Markup(' class="{}"').format(cls) if cls else Markup()
    for name, value in attrs.items():
        text = f"{value:.1f}".removesuffix(".0") if isinstance(value, float) else value
        attributes += Markup(' {}="{}"').format(name.replace("_", "-"), text)
    if not children:
        return Markup("<{}{}/>").format(tag, attributes)
    return Markup("<{0}{1}>{2}</{0}>").format(tag, attributes, Markup("").join(children))


def _window(points: list[Point], markers: list[Marker]) -> tuple[datetime, datetime]:
    """A day either side of all the points and markers; one point sits mid two-week window."""
    if len(points) == 1:
        return points[0].at - timedelta(days=7), points[0].at + timedelta(days=7)
    times = [p.at for p in points] + [m.at for m in markers]
    return min(times) - timedelta(days=1), max(times) + timedelta(days=1)


def _bands_svg(scale: _Scale, bands: Sequence[Band], dots: list[tuple[float, float]]) -> Markup:
    """Shaded rectangles from each band's low bound to the next one's (the last to the top),
    each named at its top right, or top left when a point sits on the right-hand spot."""
    svg = Markup()
    ordered = sorted(bands, key=lambda b: b.low)
    for index, band in enumerate(ordered):
        top = min(band.high + 1, scale.max_score) if index < len(ordered) - 1 else scale.max_score
        y, bottom = round(scale.y(top), 1), round(scale.y(band.low), 1)  # no seams between
        label = str(band.label)  # a translated label
        reach = LABEL_CHAR * len(label) + 10  # the label's rough width, and a point
        hidden = any(dx > X1 - reach and y < dy < y + FONT + 8 for dx, dy in dots)
        x, anchor = (X0 + 4, "start") if hidden else (X1 - 4, "end")
        cls = f"chart-band chart-band-{index}"
        svg += _el("rect", cls, x=X0, y=y, width=X1 - X0, height=bottom - y, data_low=band.low)
        svg += _el("text", "chart-band-label", label, x=x, y=y + FONT, text_anchor=anchor)
    return svg


def _y_axis_svg(scale: _Scale, bands: Sequence[Band]) -> Markup:
    """Labels at 0, each band boundary and the maximum, none crowding the one above."""
    values = sorted({0, scale.max_score, *(b.low for b in bands if b.low <= scale.max_score)})
    kept: list[int] = []
    for value in reversed(values):
        if not kept or scale.y(value) - scale.y(kept[-1]) >= TICK_GAP:
            kept.append(value)
    svg = _el("line", "chart-axis", x1=X0, y1=Y0, x2=X0, y2=Y1)
    for value in kept:
        y = scale.y(value) + FONT / 3  # the label's middle on its value
        svg += _el("text", "chart-label", str(value), x=X0 - 5, y=y, text_anchor="end")
    return svg


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


def _x_axis_svg(scale: _Scale) -> Markup:
    """Dates at up to five local midnights a whole number of days apart, each label kept inside
    the picture and dropped if it would touch the one before (a year shows where it changes)."""
    span = (scale.end - scale.start) / timedelta(days=1)
    step = next((s for s in DAY_STEPS if s >= span / 4), math.ceil(span / 4))
    first = scale.day(scale.start) + timedelta(days=1)
    ticks = [first + timedelta(days=step * k) for k in range(5)]
    ticks = [d for d in ticks if _midnight(d, scale.zone) <= scale.end]
    many_years = ticks[0].year != ticks[-1].year
    svg = _el("line", "chart-axis", x1=X0, y1=Y1, x2=X1, y2=Y1)
    right_edge = -math.inf
    for index, day in enumerate(ticks):
        text = day_text(day, year=many_years and (index == 0 or day.year != ticks[index - 1].year))
        half = LABEL_CHAR * len(text) / 2
        x = min(max(scale.x(_midnight(day, scale.zone)), half + 2), WIDTH - half - 2)
        if x - half > right_edge + 8:
            svg += _el(
                "text",
                "chart-label",
                text,
                x=x,
                y=Y1 + FONT + 1,
                text_anchor="middle",
                data_date=day,
            )
            right_edge = x + half
    return svg


def _markers_svg(scale: _Scale, markers: list[Marker]) -> list[Markup]:
    """A dashed vertical line for each treatment session inside the time window."""
    drawn = []
    for marker in sorted(markers, key=lambda m: m.at):
        if scale.start <= marker.at <= scale.end:
            x, day = scale.x(marker.at), scale.day(marker.at)
            title = _el("title", "", f"{marker.label}, {day_text(day)}")
            line = _el("line", "chart-marker", title, x1=x, y1=Y0, x2=x, y2=Y1, data_date=day)
            drawn.append(line)
    return drawn


def _points_svg(scale: _Scale, points: list[Point], rows: list[Row]) -> Markup:
    """The line through the scores and a titled circle on each."""
    dots = [(scale.x(p.at), scale.y(p.score)) for p in points]
    svg = Markup()
    if len(points) > 1:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in dots)
        svg += _el("polyline", "chart-line", points=line)
    for point, (x, y), (text, score, label) in zip(points, dots, rows, strict=True):
        title = _el("title", "", f"{text}: {score} ({label})")
        day = scale.day(point.at)
        svg += _el(
            "circle", "chart-point", title, cx=x, cy=y, r=4.5, data_score=score, data_date=day
        )
    return svg


def _summary(rows: list[Row], max_score: int, markers: int) -> str:
    """The chart's text alternative, in the page's language."""
    (first, first_score, first_band), (last, last_score, last_band) = rows[0], rows[-1]
    count = len(rows)
    text = ngettext(
        "%(num)d result, scored 0 to %(max)d; higher means more symptoms.",
        "%(num)d results, scored 0 to %(max)d; higher means more symptoms.",
        count,
        max=max_score,
    )
    if count == 1:
        text += " " + _(
            "%(day)s: %(score)d (%(band)s).", day=first, score=first_score, band=first_band
        )
    else:
        text += " " + _(
            "First %(first)d (%(first_band)s) on %(first_day)s; latest %(last)d (%(last_band)s) "
            "on %(last_day)s.",
            first=first_score,
            first_band=first_band,
            first_day=first,
            last=last_score,
            last_band=last_band,
            last_day=last,
        )
    if markers:
        text += " " + ngettext(
            "%(num)d treatment session marked.", "%(num)d treatment sessions marked.", markers
        )
    return text


def trend_chart(
    *,
    title: str,
    max_score: int,
    bands: Sequence[Band],
    points: list[Point],
    markers: list[Marker],
    zone: tzinfo,
    chart_id: str,
) -> Chart:
    """The scores over time as an accessible SVG over shaded severity bands, with treatment
    sessions as dashed lines, and the same points as table rows. No points: an empty chart.
    ValueError when a score is outside every band."""
    if not points:
        return Chart(svg=Markup(""), rows=[])
    points = sorted((Point(at=_utc(p.at), score=p.score) for p in points), key=lambda p: p.at)
    markers = [Marker(at=_utc(m.at), label=m.label) for m in markers]
    scale = _Scale(*_window(points, markers), max_score=max_score, zone=zone)
    rows = [
        (day_text(scale.day(p.at)), p.score, str(band_of(p.score, bands).label)) for p in points
    ]
    dots = [(scale.x(p.at), scale.y(p.score)) for p in points]
    drawn_markers = _markers_svg(scale, markers)
    summary = _summary(rows, max_score, len(drawn_markers))
    svg = _el(
        "svg",
        "chart",
        _el("title", "", title, id=f"{chart_id}-title"),
        _el("desc", "", summary, id=f"{chart_id}-desc"),
        _bands_svg(scale, bands, dots) + _y_axis_svg(scale, bands) + _x_axis_svg(scale),
        *drawn_markers,
        _points_svg(scale, points, rows),
        xmlns="http://www.w3.org/2000/svg",
        width="100%",
        viewBox=f"0 0 {WIDTH} {HEIGHT}",
        font_size=FONT,
        role="img",
        aria_labelledby=f"{chart_id}-title {chart_id}-desc",
    )
    return Chart(svg=svg, rows=rows)
