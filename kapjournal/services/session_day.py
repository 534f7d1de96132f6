"""The day of a ketamine session (issue 15, items 1 and 2; DESIGN §11).

From 18:00 the evening before (in the patient's time zone) until the session starts, the
patient's home offers a checklist: the clinic's instructions, a ride home arranged (with which
supporter, if any), no driving until tomorrow, someone with them tonight, the intention re-read.
The ticks are a sealed item (per-version data key, wrapped to the patient only); the care team
sees only whether the list is all done. A supporter the patient names as ride or evening
companion sees the session time, what is asked of them and the patient's "I'm home" mark, and
gets two content-free reminders (the evening before; an hour before pick-up). Who may see which
day is decided in policy.py; this module builds, seals and schedules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import and_, update
from sqlmodel import Session, col, select

from .. import crypto, i18n
from ..i18n import gettext
from ..i18n import lazy_gettext as _l
from ..models import (
    Entry,
    ItemKey,
    PushSubscription,
    ReminderSent,
    SessionDay,
    TreatmentSession,
    User,
    aware,
    utcnow,
)
from . import sealed

KIND = "session_day"  # ItemKey.subject_kind
OPENS_AT = time(18, 0)  # the evening before, in the patient's zone
HOME_FOR = timedelta(hours=24)  # how long after the start "I'm home" is offered and shown


def _(text: str) -> str:
    """Marks a default instruction for the catalogue (pybabel extracts `_`) and keeps it as
    written: the constant stays English text, and `instructions()` translates it when shown
    (Python's "deferred translations"). A clinic's own instructions are shown as configured."""
    return text


DEFAULT_INSTRUCTIONS = (
    _("Nothing to eat for 4 hours before, and only clear fluids for the last 2."),
    _("Take or pause your usual medication as your clinic told you."),
    _("Wear comfortable, warm clothes; bring an eye mask if you like."),
    _("Arrive 15 minutes early."),
)
del _
# The checklist's own items, after the clinic's instructions ("clinic-0", "clinic-1", ...):
# the key is what is stored (sealed ticks), the label what is shown.
OWN_ITEMS = (
    ("ride", _l("My ride home is arranged")),
    ("no_driving", _l("No driving until tomorrow")),
    ("company", _l("Someone is with me tonight")),
    ("intention", _l("I re-read my intention")),
)


def _body_ad(day: SessionDay) -> dict:
    return {
        "p": "session-day/ticks",
        "day": str(day.id),
        "session": str(day.session_id),
        "version": day.version,
        "patient": str(day.patient_id),
    }


def _wrap_ad(day: SessionDay, reader_id) -> dict:
    return {
        "p": "session-day/dek",
        "day": str(day.id),
        "version": day.version,
        "reader": str(reader_id),
    }


SESSION_DAY = sealed.Kind(KIND, _body_ad, _wrap_ad)


# --- what the list holds, and when it is shown ---------------------------------------------------


def _configured() -> list[str]:
    """The clinic's instructions (KAPJOURNAL_SESSION_DAY_INSTRUCTIONS, one per line or
    separated by "|"), as written; none when it set none."""
    configured = current_app.config.get("SESSION_DAY_INSTRUCTIONS") or ""
    lines = [line.strip() for line in configured.replace("|", "\n").splitlines()]
    return [line for line in lines if line]


def instructions() -> list[str]:
    """The clinic's instructions as written, else the defaults in the request's language."""
    return _configured() or [gettext(text) for text in DEFAULT_INSTRUCTIONS]


def item_keys() -> list[str]:
    """Every tick the list has: done when all are ticked (no text needed: no language)."""
    count = len(_configured()) or len(DEFAULT_INSTRUCTIONS)
    return [f"clinic-{n}" for n in range(count)] + [k for k, _ in OWN_ITEMS]


def pickup_at(treatment_session: TreatmentSession) -> datetime:
    """When the ride home is asked to come (the clinic's setting after the start)."""
    minutes = current_app.config.get("SESSION_DAY_PICKUP_MINUTES", 150)
    return aware(treatment_session.scheduled_at) + timedelta(minutes=minutes)


def opens_at(scheduled_at: datetime, zone) -> datetime:
    """18:00 on the evening before the session, in `zone`."""
    local = aware(scheduled_at).astimezone(zone)
    evening = datetime.combine(local.date() - timedelta(days=1), OPENS_AT, tzinfo=zone)
    return evening.astimezone(UTC)


def zone_named(name: str):
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass
class Day:
    """One session day on the patient's home: before the start the checklist, after it the
    "I'm home" mark."""

    session: TreatmentSession
    day: SessionDay | None
    phase: str  # "before" or "after"
    ticked: set = field(default_factory=set)
    intention_id: object = None
    unreadable: bool = False

    @property
    def named(self) -> bool:
        return self.day is not None and bool(self.day.ride_id or self.day.companion_id)


def _window_statement(patient_id, now: datetime):
    intention = (
        select(Entry.id)
        .where(
            Entry.author_id == patient_id,
            Entry.session_id == TreatmentSession.id,
            Entry.kind == "intention",
        )
        .order_by(col(Entry.created_at).desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(TreatmentSession, SessionDay, ItemKey.wrapped_key, intention)
        .outerjoin(SessionDay, SessionDay.session_id == TreatmentSession.id)
        .outerjoin(
            ItemKey,
            and_(
                ItemKey.subject_kind == KIND,
                ItemKey.subject_id == SessionDay.id,
                ItemKey.reader_id == patient_id,
            ),
        )
        .where(
            TreatmentSession.patient_id == patient_id,
            TreatmentSession.kind == "ketamine",
            TreatmentSession.status != "cancelled",
            col(TreatmentSession.scheduled_at) > now - HOME_FOR,
            col(TreatmentSession.scheduled_at) <= now + timedelta(days=2),
        )
        .order_by(col(TreatmentSession.scheduled_at))
    )


def phase_of(treatment_session: TreatmentSession, day: SessionDay | None, zone, now) -> str | None:
    """ "before" while the checklist is shown (18:00 the evening before, until the start),
    "after" while "I'm home" is (a supporter named, up to a day after the start), else None."""
    start = aware(treatment_session.scheduled_at)
    if opens_at(start, zone) <= now < start:
        return "before"
    if start <= now < start + HOME_FOR and day is not None and (day.ride_id or day.companion_id):
        return "after"
    return None


def nearby(sessions, now: datetime | None = None) -> list[TreatmentSession]:
    """Of sessions already loaded, the ketamine ones (not cancelled) from a day ago to two
    days ahead: only those can have a session day shown (no query when there are none)."""
    now = now or utcnow()
    return [
        s
        for s in sessions
        if s.kind == "ketamine"
        and s.status != "cancelled"
        and now - HOME_FOR < aware(s.scheduled_at) <= now + timedelta(days=2)
    ]


def for_patient(
    *, session: Session, patient: User, private_key, zone, now: datetime | None = None
) -> list[Day]:
    """The patient's session days to show now (one statement; the ticks opened with their own
    key, never anyone else's)."""
    now = now or utcnow()
    found = []
    for ts, day, wrapped, intention_id in session.exec(_window_statement(patient.id, now)):
        phase = phase_of(ts, day, zone, now)
        if phase is None:
            continue
        shown = Day(session=ts, day=day, phase=phase, intention_id=intention_id)
        if day is not None and phase == "before":
            try:
                body, _ = SESSION_DAY.open_for(day, wrapped, patient.id, private_key)
                shown.ticked = set(body.get("ticked", []))
            except sealed.Unreadable:
                shown.unreadable = True
        found.append(shown)
    return found


def day_for(*, session: Session, patient: User, treatment_session, private_key, zone, now=None):
    """The one session day of `treatment_session`, if it is shown now (else None)."""
    return next(
        (
            d
            for d in for_patient(
                session=session, patient=patient, private_key=private_key, zone=zone, now=now
            )
            if d.session.id == treatment_session.id
        ),
        None,
    )


# --- the patient's actions ------------------------------------------------------------------------


def save(
    *,
    session: Session,
    patient: User,
    treatment_session: TreatmentSession,
    ticked,
    ride: User | None,
    companion: User | None,
    zone_name: str,
) -> SessionDay:
    """Keep the patient's ticks (sealed under a fresh data key, wrapped to them alone) and the
    supporters they named. The caller checked the checklist is open and the supporters are
    theirs, and commits (two first saves racing: one gets IntegrityError and tries again)."""
    known = set(item_keys())
    ticked = sorted(set(ticked) & known)
    # Locked: two saves of one list follow each other (each replaces the other's key).
    day = session.exec(
        select(SessionDay)
        .where(SessionDay.session_id == treatment_session.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if day is None:
        day = SessionDay(session_id=treatment_session.id, patient_id=patient.id, body_blob=b"")
    else:
        SESSION_DAY.take_back(session, day.id)
        day.version += 1
    dek = crypto.random_key()
    day.body_blob = SESSION_DAY.seal(day, dek, {"ticked": ticked})
    day.done = set(ticked) == known
    day.ride_id = ride.id if ride else None
    day.companion_id = companion.id if companion else None
    day.zone = zone_name[:64]
    day.updated_at = utcnow()
    session.add(day)
    session.flush()
    SESSION_DAY.give(session, day, dek, [patient])
    session.flush()
    return day


def mark_home(*, session: Session, day: SessionDay) -> bool:
    """The patient is home: set once (of two taps at the same time, one sets it). The caller
    commits."""
    statement = (
        update(SessionDay)
        .where(col(SessionDay.id) == day.id, col(SessionDay.home_at).is_(None))
        .values(home_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return session.exec(statement).rowcount == 1


# --- the care team: done or not, never which ticks ----------------------------------------------


def done_of(*, session: Session, sessions) -> tuple[TreatmentSession, bool] | None:
    """Of one patient's sessions already loaded, the nearest session day and whether its
    checklist is done; no statement at all when none is near (the patient page's budget)."""
    found = nearby(sessions)
    if not found:
        return None
    first = min(found, key=lambda s: aware(s.scheduled_at))
    done = session.exec(select(SessionDay.done).where(SessionDay.session_id == first.id)).first()
    return first, bool(done)


def done_for(*, session: Session, patient_ids, now: datetime | None = None) -> dict:
    """For each patient with a ketamine session from a day ago to two days ahead: that session
    and whether its checklist is all done (one statement). Nothing is decrypted."""
    now = now or utcnow()
    ids = list(patient_ids)
    if not ids:
        return {}
    rows = session.exec(
        select(TreatmentSession, SessionDay.done)
        .outerjoin(SessionDay, SessionDay.session_id == TreatmentSession.id)
        .where(
            col(TreatmentSession.patient_id).in_(ids),
            TreatmentSession.kind == "ketamine",
            TreatmentSession.status != "cancelled",
            col(TreatmentSession.scheduled_at) > now - HOME_FOR,
            col(TreatmentSession.scheduled_at) <= now + timedelta(days=2),
        )
        .order_by(col(TreatmentSession.scheduled_at))
    )
    found: dict = {}
    for ts, done in rows:
        found.setdefault(ts.patient_id, (ts, bool(done)))
    return found


# --- the supporters' reminders --------------------------------------------------------------------


@dataclass(frozen=True)
class SupporterRule:
    kind: str  # ReminderSent.kind
    title: str  # lazy: in the recipient's language when the message is built (message_for)
    body: str


EVENING = SupporterRule(
    "day_evening",
    _l("A reminder for tomorrow"),
    _l("Someone you support asked for your help tomorrow. The details are in kapjournal."),
)
PICKUP = SupporterRule(
    "day_pickup",
    _l("In about an hour"),
    _l("The pick-up you offered is in about an hour. The details are in kapjournal."),
)


@dataclass(frozen=True)
class SupporterReminder:
    """A reminder to a named supporter; shaped like reminders.Reminder for `send_due`."""

    rule: SupporterRule
    session: TreatmentSession
    due_at: datetime
    until: datetime


def supporter_reminders(day: SessionDay, ts: TreatmentSession, supporter_id) -> list:
    """The evening before (ride and companion), and an hour before pick-up (the ride)."""
    start = aware(ts.scheduled_at)
    found = []
    if supporter_id in (day.ride_id, day.companion_id):
        found.append(SupporterReminder(EVENING, ts, opens_at(start, zone_named(day.zone)), start))
    if supporter_id == day.ride_id:
        pickup = pickup_at(ts)
        found.append(SupporterReminder(PICKUP, ts, pickup - timedelta(hours=1), pickup))
    return found


def due_for_supporters(*, session: Session, named_days, now: datetime | None = None) -> list:
    """The (device, reminder) pairs due now for named supporters, not sent yet. `named_days`:
    (day, session, supporter id) from policy.named_supporters_due (who may be told)."""
    now = now or utcnow()
    rows = list(named_days)
    if not rows:
        return []
    people = {supporter_id for _, _, supporter_id in rows}
    devices: dict = {}
    for device in session.exec(
        select(PushSubscription).where(col(PushSubscription.user_id).in_(people))
    ):
        devices.setdefault(device.user_id, []).append(device)
    sent = set(
        session.exec(
            select(ReminderSent.subscription_id, ReminderSent.session_id, ReminderSent.kind).where(
                col(ReminderSent.session_id).in_({ts.id for _, ts, _ in rows})
            )
        ).all()
    )
    return [
        (device, reminder)
        for day, ts, supporter_id in rows
        for reminder in supporter_reminders(day, ts, supporter_id)
        if reminder.due_at <= now < reminder.until
        for device in devices.get(supporter_id, [])
        if (device.id, ts.id, reminder.rule.kind) not in sent
    ]


def message_for(reminder: SupporterReminder, *, locale: str | None = None) -> dict:
    """Fixed text, no name, no session kind: it may show on a locked screen. In `locale`, the
    supporter's own language (their account's choice; English when they made none)."""
    with i18n.force_locale(locale or "en"):
        title, body = str(reminder.rule.title), str(reminder.rule.body)
    return {
        "title": title,
        "body": body,
        "url": "/home",
        "tag": f"{reminder.rule.kind}-{reminder.session.id}",
    }
