"""The reminder schedule (opt-in, per device) and sending what is due.

After each ketamine session: a check-in the day after, three days after and a week after.
Before each preparation or ketamine session: a nudge to revisit the intention. Two days
before each ketamine session: the PHQ-9 and GAD-7, unless both were answered since the
questionnaire window before that session opened (services.measures). `send_due`
is meant for cron (`flask --app app reminders send`, every few minutes): each reminder goes
to each of the patient's subscribed devices at most once (a ReminderSent row, written before
sending, so two overlapping runs cannot both send it), and one missed by more than its window
(a server that was down) is skipped rather than sent late.

The text never holds anything the patient wrote, nor the word "ketamine": a notification
can show on a locked screen. It is in the recipient's language (their account's choice; English
when they made none), whoever or whatever sends it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from .. import i18n
from ..i18n import lazy_gettext as _l
from ..models import Entry, PushSubscription, ReminderSent, TreatmentSession, User, utcnow
from . import measures, push, session_day

log = logging.getLogger(__name__)

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Rule:
    kind: str  # stored in ReminderSent.kind
    session_kinds: tuple[str, ...]
    offset: timedelta  # from the session's start
    window: timedelta  # how long after it is due it may still be sent
    title: str  # lazy: in the recipient's language when the message is built (message_for)
    body: str


CHECK_IN_TITLE = _l("A gentle check-in")
RULES = (
    Rule(
        "intention",
        ("preparation", "ketamine"),
        -DAY,
        DAY,
        _l("Your session is coming up"),
        _l("You might like to revisit your intention before it."),
    ),
    Rule(
        "questionnaires",
        ("ketamine",),
        -2 * DAY,
        DAY,
        _l("Two short questionnaires"),
        _l("Before your next session: two short questionnaires, a minute or two each."),
    ),
    Rule(
        "check_in_1",
        ("ketamine",),
        DAY,
        DAY,
        CHECK_IN_TITLE,
        _l("How are you today? A quick check-in takes a minute."),
    ),
    Rule(
        "check_in_3",
        ("ketamine",),
        3 * DAY,
        DAY,
        CHECK_IN_TITLE,
        _l("A few days on: how are you? A quick check-in takes a minute."),
    ),
    Rule(
        "check_in_7",
        ("ketamine",),
        7 * DAY,
        DAY,
        CHECK_IN_TITLE,
        _l("A week on: how are you feeling? A quick check-in takes a minute."),
    ),
)
# How far around now a session can be for one of its reminders to be due.
_EARLIEST = max(r.offset + r.window for r in RULES)
_LATEST = max(-r.offset for r in RULES)


@dataclass(frozen=True)
class Reminder:
    rule: Rule
    session: TreatmentSession

    @property
    def due_at(self) -> datetime:
        return self.session.scheduled_at + self.rule.offset

    @property
    def until(self) -> datetime:
        """The end of the window; an intention reminder never comes after the session."""
        end = self.due_at + self.rule.window
        return min(end, self.session.scheduled_at) if self.rule.offset < timedelta(0) else end


def schedule_for(treatment_session: TreatmentSession) -> list[Reminder]:
    """Every reminder a session brings, in time order (none for a cancelled session)."""
    if treatment_session.status == "cancelled":
        return []
    reminders = [
        Reminder(rule, treatment_session)
        for rule in RULES
        if treatment_session.kind in rule.session_kinds
    ]
    return sorted(reminders, key=lambda r: r.due_at)


def is_due(reminder: Reminder, now: datetime) -> bool:
    return reminder.due_at <= now < reminder.until


def due(
    *, session: Session, now: datetime | None = None
) -> list[tuple[PushSubscription, Reminder]]:
    """The (device, reminder) pairs to send now that were not sent yet."""
    now = now or utcnow()
    rows = session.exec(
        select(PushSubscription, TreatmentSession)
        .join(TreatmentSession, TreatmentSession.patient_id == PushSubscription.user_id)
        .where(
            col(TreatmentSession.scheduled_at) > now - _EARLIEST,
            col(TreatmentSession.scheduled_at) <= now + _LATEST,
            TreatmentSession.status != "cancelled",
        )
        .order_by(col(TreatmentSession.scheduled_at))
    ).all()
    if not rows:
        return []
    sent = set(
        session.exec(
            select(ReminderSent.subscription_id, ReminderSent.session_id, ReminderSent.kind).where(
                col(ReminderSent.session_id).in_({ts.id for _, ts in rows})
            )
        ).all()
    )
    return [
        (device, reminder)
        for device, ts in rows
        for reminder in schedule_for(ts)
        if is_due(reminder, now)
        and (device.id, ts.id, reminder.rule.kind) not in sent
        and not _answered_already(session, reminder)
    ]


def _answered_already(session: Session, reminder: Reminder) -> bool:
    """A questionnaire reminder for a patient who answered both for this session already."""
    if reminder.rule.kind != "questionnaires":
        return False
    return measures.answered_before(session=session, treatment_session=reminder.session)


def language_of(session: Session, user_id) -> str:
    """The language a person's notifications are written in: their account's choice, else
    English (a notification is not sent in answer to any request of theirs)."""
    user = session.get(User, user_id)
    return (i18n.supported(user.locale) if user is not None else None) or i18n.DEFAULT


def message_for(*, session: Session, reminder: Reminder) -> dict:
    """The notification: fixed text in the patient's language and where a tap leads (the
    check-in form, or the session's intention, or the form to write one)."""
    ts = reminder.session
    if reminder.rule.kind == "intention":
        intention = session.exec(
            select(Entry.id).where(
                Entry.author_id == ts.patient_id,
                Entry.session_id == ts.id,
                Entry.kind == "intention",
            )
        ).first()
        url = (
            f"/entries/{intention}" if intention else f"/entries/new?kind=intention&session={ts.id}"
        )
    elif reminder.rule.kind == "questionnaires":
        url = "/measures"
    else:
        url = f"/entries/new?kind=check_in&session={ts.id}"
    with i18n.force_locale(language_of(session, ts.patient_id)):
        title, body = str(reminder.rule.title), str(reminder.rule.body)
    return {"title": title, "body": body, "url": url, "tag": f"{reminder.rule.kind}-{ts.id}"}


@dataclass
class Report:
    sent: int = 0
    failed: int = 0
    gone: int = 0


def send_due(*, session: Session, now: datetime | None = None) -> Report:
    """Send every due reminder once; commits as it goes. A failed push is tried again on the
    next run (while its window lasts); a device whose subscription ended is forgotten."""
    report = Report()
    forgotten = set()
    for device, reminder in due(session=session, now=now) + _supporters_due(session, now):
        if device.id in forgotten:
            continue
        marker = ReminderSent(
            subscription_id=device.id, session_id=reminder.session.id, kind=reminder.rule.kind
        )
        session.add(marker)
        try:
            session.commit()
        except IntegrityError:  # another run is sending this one
            session.rollback()
            continue
        if isinstance(reminder, session_day.SupporterReminder):
            locale = language_of(session, device.user_id)
            message = session_day.message_for(reminder, locale=locale)
        else:
            message = message_for(session=session, reminder=reminder)
        outcome = push.send(push.open_subscription(device), message)
        if outcome == push.SENT:
            report.sent += 1
        elif outcome == push.GONE_FOR_GOOD:
            report.gone += 1
            forgotten.add(device.id)
            push.remove(session=session, subscription=device)
        else:
            report.failed += 1
            session.delete(marker)
        session.commit()
    return report


def _supporters_due(session: Session, now: datetime | None) -> list:
    """The session-day reminders due to supporters a patient named (helper DAY)."""
    from .. import policy  # policy builds on the services; imported when sending only

    now = now or utcnow()
    named = policy.named_supporters_due(session=session, now=now)
    return session_day.due_for_supporters(session=session, named_days=named, now=now)
