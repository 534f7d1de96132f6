"""Every authorization decision of kapjournal (DESIGN §4). The default is deny.

Each view declares its audience with `@policy.allow(...)`; a request to an endpoint without
one is refused. Objects are fetched only through the `get_*_for` functions, which raise 404
for anything the user may not see, exactly as for an object that does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import cache

from flask import abort, current_app, request
from flask_login import current_user
from sqlalchemy import and_, bindparam, false, or_
from sqlmodel import Session, col, select

from .models import (
    MEASURE_KINDS,
    Annotation,
    CareTeam,
    CoolingOff,
    DeviceSession,
    Entry,
    Grant,
    Invitation,
    ItemKey,
    Practice,
    PushSubscription,
    SafetyCheck,
    SessionDay,
    SupportLink,
    TreatmentSession,
    User,
    aware,
    utcnow,
)
from .services import care, session_day, support, workspace

PUBLIC = "public"
AUTHENTICATED = "authenticated"
AUDIENCES = {PUBLIC, AUTHENTICATED, "patient", "therapist", "support", "owner"}
# Served by Flask itself, not by our views; public by nature.
_BUILTIN_PUBLIC = {"static"}


def allow(*audiences: str) -> Callable:
    """Declare who may call a view: `public`, `authenticated`, or one or more roles."""
    unknown = set(audiences) - AUDIENCES
    if not audiences or unknown:
        raise ValueError(f"unknown audience {unknown or audiences}")

    def mark(view: Callable) -> Callable:
        view.policy_audiences = frozenset(audiences)
        return view

    return mark


def audiences_of(endpoint: str | None) -> frozenset[str] | None:
    if endpoint in _BUILTIN_PUBLIC:
        return frozenset({PUBLIC})
    view = current_app.view_functions.get(endpoint or "")
    return getattr(view, "policy_audiences", None)


def may_enter(user, audiences: frozenset[str]) -> bool:
    """Whether `user` (possibly anonymous) belongs to one of `audiences`."""
    if PUBLIC in audiences:
        return True
    if not user.is_authenticated:
        return False
    if AUTHENTICATED in audiences or user.role in audiences:
        return True
    return "owner" in audiences and user.user.is_owner


def authorize_request():
    """before_request: refuse any endpoint without a declared audience, or not for this user.

    Anonymous users asking for a page that needs a login are sent to log in, unless the URL
    names an object: then, like everyone who may not see it, they get 404."""
    if request.endpoint is None:  # no route matched: Flask answers 404/405 itself
        return
    audiences = audiences_of(request.endpoint)
    if audiences is None:
        abort(404)
    if may_enter(current_user, audiences):
        return
    if not current_user.is_authenticated and not _names_an_object():
        return current_app.login_manager.unauthorized()
    abort(404)


def _names_an_object() -> bool:
    """URLs that carry an object id answer 404 to anonymous users too: never a hint."""
    return any(isinstance(v, uuid.UUID) for v in (request.view_args or {}).values())


# --- objects -------------------------------------------------------------------------------


def get_device_session_for(*, session: Session, user, device_id: uuid.UUID) -> DeviceSession:
    """One of the user's own device sessions."""
    device = session.get(DeviceSession, device_id)
    if device is None or device.user_id != user.id:
        abort(404)
    return device


def get_push_subscription_for(
    *, session: Session, user, subscription_id: uuid.UUID
) -> PushSubscription:
    """One of the user's own devices that get reminders."""
    found = session.get(PushSubscription, subscription_id)
    if found is None or found.user_id != user.id:
        abort(404)
    return found


def get_invitation_for(
    *,
    session: Session,
    user,
    invitation_id: uuid.UUID,
    kind: str | None = None,
    unused: bool = False,
) -> Invitation:
    """An invitation (of `kind`, and not used yet with `unused`), for the person who made it."""
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.inviter_id != user.id:
        abort(404)
    if kind is not None and invitation.kind != kind:
        abort(404)
    if unused and invitation.used_at is not None:
        abort(404)
    return invitation


def get_patient_for(*, session: Session, user, patient_id: uuid.UUID) -> User:
    """A patient, for a therapist on their care team (or the patient themself). One query."""
    on_team = (
        select(CareTeam.id)
        .where(CareTeam.therapist_id == user.id, CareTeam.patient_id == User.id)
        .exists()
    )
    found = session.exec(select(User, on_team).where(User.id == patient_id)).first()
    if found is None or found[0].role != "patient":
        abort(404)
    patient, linked = found
    if patient.id == user.id or (user.role == "therapist" and linked):
        return patient
    abort(404)


def get_entry_for(
    *, session: Session, user, entry_id: uuid.UUID, need: str = "read", kinds=None
) -> Entry:
    """An entry, if `user` may `need` it (and, with `kinds`, if it is of one of them): the
    author may do anything with their own words but annotate them (and never edit a
    questionnaire: it is answered again); anyone else may only read (and a therapist
    annotate), and only with a live (not pending) grant. No one edits, shares, or deletes
    another person's words. One query."""
    return get_entry_to_read_for(
        session=session, user=user, entry_id=entry_id, need=need, kinds=kinds
    )[0]


def get_entry_to_read_for(
    *, session: Session, user, entry_id: uuid.UUID, need: str = "read", kinds=None
) -> tuple[Entry, bytes | None]:
    """`get_entry_for`, with the user's wrapped data key of it (their grant's), to open it
    without a second query."""
    if need not in ENTRY_NEEDS:
        raise ValueError(f"unknown need {need!r}")
    found = session.exec(
        _entry_statement(user.role), params={"user": user.id, "entry": entry_id}
    ).first()
    if found is None:
        abort(404)
    entry, wrapped, linked = found
    if kinds is not None and entry.kind not in kinds:
        abort(404)
    if entry.author_id == user.id and need != "annotate":
        if need == "edit" and entry.kind in MEASURE_KINDS:
            abort(404)
        return entry, wrapped
    # Therapists read and annotate what is shared with them; supporters only read, and never
    # a questionnaire, whatever grants exist.
    readers = {"read": ("therapist", "support"), "annotate": ("therapist",)}.get(need, ())
    if entry.kind in MEASURE_KINDS:
        readers = ("therapist",) if need == "read" else ()
    # A live grant, and still on the patient's care team (a therapist) or among their
    # support people (a supporter), whatever grants remain.
    if user.role in readers and wrapped is not None and linked:
        return entry, wrapped
    abort(404)


@cache
def _entry_statement(role: str):
    """The entry, the user's wrapped key of it and whether they are linked to its author, as
    one statement per role (built once: every entry page runs it)."""
    return (
        select(Entry, Grant.wrapped_key, _linked_to(role, bindparam("user"), Entry.author_id))
        .outerjoin(Grant, and_(Grant.entry_id == Entry.id, Grant.reader_id == bindparam("user")))
        .where(Entry.id == bindparam("entry"))
    )


def _linked_to(role: str, user_id, patient_id):
    """SQL: whether the user is on the care team (a therapist) or among the support people (a
    supporter) of `patient_id`."""
    if role == "therapist":
        return (
            select(CareTeam.id)
            .where(CareTeam.therapist_id == user_id, CareTeam.patient_id == patient_id)
            .exists()
        )
    if role == "support":
        return (
            select(SupportLink.id)
            .where(SupportLink.supporter_id == user_id, SupportLink.patient_id == patient_id)
            .exists()
        )
    return false()


ENTRY_NEEDS = {"read", "edit", "share", "delete", "annotate"}


def _linked(session: Session, user, *, patient_id) -> bool:
    if user.role == "therapist":
        return care.is_linked(session=session, therapist_id=user.id, patient_id=patient_id)
    if user.role == "support":
        return support.is_supporter(session=session, supporter_id=user.id, patient_id=patient_id)
    return False


def get_supported_patient_for(*, session: Session, user, patient_id: uuid.UUID) -> User:
    """A patient, for one of their support members (and no one else)."""
    patient = session.get(User, patient_id)
    if (
        patient is None
        or patient.role != "patient"
        or user.role != "support"
        or not support.is_supporter(session=session, supporter_id=user.id, patient_id=patient.id)
    ):
        abort(404)
    return patient


def get_supporter_for(*, session: Session, user, supporter_id: uuid.UUID) -> User:
    """One of a patient's support members, for that patient (and no one else)."""
    supporter = session.get(User, supporter_id)
    if (
        supporter is None
        or supporter.role != "support"
        or user.role != "patient"
        or not support.is_supporter(session=session, supporter_id=supporter.id, patient_id=user.id)
    ):
        abort(404)
    return supporter


def get_treatment_session_for(
    *, session: Session, user, session_id: uuid.UUID, need: str = "read"
) -> TreatmentSession:
    """A treatment session: its patient may read it and edit the ones they added; therapists
    on the patient's care team may read and edit it."""
    found = session.get(TreatmentSession, session_id)
    if found is None:
        abort(404)
    if found.patient_id == user.id and (need == "read" or found.created_by_id == user.id):
        return found
    if user.role == "therapist" and care.is_linked(
        session=session, therapist_id=user.id, patient_id=found.patient_id
    ):
        return found
    abort(404)


def may_share_with(*, session: Session, patient, reader, kind: str | None = None) -> bool:
    """A patient may share with the therapists on their care team and their support members;
    questionnaires (`kind` in MEASURE_KINDS) only with the therapists."""
    roles = ("therapist", "support") if may_share_kind_with_supporters(kind) else ("therapist",)
    return reader.role in roles and _linked(session, reader, patient_id=patient.id)


def may_share_kind_with_supporters(kind: str) -> bool:
    """Questionnaires go to the care team only; everything else a patient may share."""
    return kind not in MEASURE_KINDS


# --- the therapist workspace: notes, practices, care teams ---------------------------------------

ANNOTATION_NEEDS = {"read", "mark", "edit", "reply"}
PRACTICE_NEEDS = {"read", "edit", "tick"}


def holds_key(session: Session, *, kind: str, subject_id, reader_id) -> bool:
    """Whether `reader_id` has a wrapped data key for this annotation or practice."""
    query = select(ItemKey.id).where(
        ItemKey.subject_kind == kind,
        ItemKey.subject_id == subject_id,
        ItemKey.reader_id == reader_id,
    )
    return session.exec(query).first() is not None


def get_annotation_for(
    *, session: Session, user, annotation_id: uuid.UUID, need: str = "read"
) -> Annotation:
    """A therapist's note. Therapists on the patient's care team who hold its key read it and
    `mark` it (bring to session, discussed); only its author may `edit` (change, resolve,
    delete) it. The patient reads and replies to a shared note, never a private one.
    Supporters never see notes. A note on an entry goes with the entry: a therapist who may
    no longer read the entry may no longer read the note (it quotes the patient's words)."""
    if need not in ANNOTATION_NEEDS:
        raise ValueError(f"unknown need {need!r}")
    note = session.get(Annotation, annotation_id)
    if note is None or not holds_key(
        session, kind="annotation", subject_id=note.id, reader_id=user.id
    ):
        abort(404)
    if user.role == "therapist" and need != "reply":
        if not care.is_linked(session=session, therapist_id=user.id, patient_id=note.patient_id):
            abort(404)
        if need == "edit" and note.author_id != user.id:
            abort(404)
        if note.entry_id is not None:
            get_entry_for(session=session, user=user, entry_id=note.entry_id, need="annotate")
        return note
    shared_with_patient = note.patient_id == user.id and note.visibility == "shared"
    if user.role == "patient" and shared_with_patient and need in ("read", "reply"):
        return note
    abort(404)


def get_practice_for(
    *, session: Session, user, practice_id: uuid.UUID, need: str = "read"
) -> Practice:
    """A practice: therapists on the patient's care team who hold its key read and `edit`
    (end) it; the patient reads it and ticks the days they did it. No one else."""
    if need not in PRACTICE_NEEDS:
        raise ValueError(f"unknown need {need!r}")
    practice = session.get(Practice, practice_id)
    if practice is None or not holds_key(
        session, kind="practice", subject_id=practice.id, reader_id=user.id
    ):
        abort(404)
    if (
        user.role == "therapist"
        and need in ("read", "edit")
        and care.is_linked(session=session, therapist_id=user.id, patient_id=practice.patient_id)
    ):
        return practice
    if user.role == "patient" and practice.patient_id == user.id and need in ("read", "tick"):
        return practice
    abort(404)


def get_safety_check_for(*, session: Session, user, check_id: uuid.UUID) -> SafetyCheck:
    """A PHQ-9 safety check, for a therapist on the patient's care team who holds its key."""
    check = session.get(SafetyCheck, check_id)
    if (
        check is None
        or user.role != "therapist"
        or not holds_key(session, kind="safety_check", subject_id=check.id, reader_id=user.id)
        or not care.is_linked(session=session, therapist_id=user.id, patient_id=check.patient_id)
    ):
        abort(404)
    return check


def get_care_team_therapist_for(*, session: Session, user, therapist_id: uuid.UUID) -> User:
    """A therapist on the patient's own care team, for that patient (and no one else)."""
    therapist = session.get(User, therapist_id)
    if (
        therapist is None
        or user.role != "patient"
        or not care.is_linked(session=session, therapist_id=therapist.id, patient_id=user.id)
    ):
        abort(404)
    return therapist


# --- whom a patient may share with, and what -----------------------------------------------


def get_share_reader_for(*, session: Session, patient, reader_id, kind: str) -> User:
    """Someone the patient may share an entry of `kind` with (see `may_share_with`)."""
    reader = session.get(User, reader_id) if reader_id else None
    if reader is None or not may_share_with(
        session=session, patient=patient, reader=reader, kind=kind
    ):
        abort(404)
    return reader


def get_reader_to_revoke_for(*, patient, reader_id):
    """A reader the patient may take an entry back from: anyone but themself."""
    if reader_id is None or reader_id == patient.id:
        abort(404)
    return reader_id


def get_entries_to_share_for(*, session: Session, user, entry_ids, with_supporter: bool):
    """The patient's own entries named in a form (ids as text), each one they may share; with
    a supporter, never a questionnaire. 404 for any other id."""
    entries = []
    for value in dict.fromkeys(entry_ids):
        try:
            entry_id = uuid.UUID(value)
        except ValueError:
            abort(404)
        entry = get_entry_for(session=session, user=user, entry_id=entry_id, need="share")
        if with_supporter and not may_share_kind_with_supporters(entry.kind):
            abort(404)
        entries.append(entry)
    return entries


# --- the agenda of an integration session -------------------------------------------------------


def get_agenda_entry_for(*, session: Session, user, patient, entry_id):
    """An entry of `patient` the therapist flagged for a session, with the flag."""
    entry = get_entry_for(session=session, user=user, entry_id=entry_id, need="annotate")
    flag = workspace.flag_of(session=session, entry=entry, therapist=user)
    if flag is None or entry.author_id != patient.id:
        abort(404)
    return entry, flag


def get_agenda_note_for(*, session: Session, user, patient, note_id) -> Annotation:
    """A note about `patient` the therapist may mark for (or as talked through in) a session."""
    note = get_annotation_for(session=session, user=user, annotation_id=note_id, need="mark")
    if note.patient_id != patient.id:
        abort(404)
    return note


# --- after the session: capture and seal (helper CAPTURE) ----------------------------------------


def get_held_entry_for(*, session: Session, user, entry_id: uuid.UUID):
    """One of the patient's own entries held by the cooling-off seal, once the seal has ended
    (the next day): (entry, hold). Only its author decides what becomes of it; for anyone
    else, or before the seal ends, there is nothing here."""
    found = session.exec(
        select(Entry, CoolingOff)
        .join(CoolingOff, CoolingOff.entry_id == Entry.id)
        .where(Entry.id == entry_id)
    ).first()
    if found is None or found[0].author_id != user.id or user.role != "patient":
        abort(404)
    entry, hold = found
    if aware(hold.until) > utcnow():
        abort(404)
    return entry, hold


def get_held_readers_for(*, session: Session, patient, reader_ids, kind: str) -> list[User]:
    """The people named in a form (ids as text) whom the patient may share an entry of `kind`
    with; 404 for anyone else."""
    readers = []
    for value in dict.fromkeys(reader_ids):
        try:
            reader_id = uuid.UUID(value)
        except ValueError:
            abort(404)
        readers.append(
            get_share_reader_for(session=session, patient=patient, reader_id=reader_id, kind=kind)
        )
    return readers


# --- session day: checklist and ride (helper DAY) -------------------------------------------------


def get_checklist_session_for(*, session: Session, user, session_id: uuid.UUID) -> TreatmentSession:
    """One of the patient's own ketamine sessions (not cancelled), for its session-day
    checklist and "I'm home" mark. No one else: not the care team, not a supporter."""
    found = session.get(TreatmentSession, session_id)
    if (
        found is None
        or user.role != "patient"
        or found.patient_id != user.id
        or found.kind != "ketamine"
        or found.status == "cancelled"
    ):
        abort(404)
    return found


def _named_supporter(supporter_id):
    """SQL: `supporter_id` is named on the session day (ride or companion) and still one of
    the patient's support members (a removed supporter loses it at once)."""
    linked = (
        select(SupportLink.id)
        .where(
            SupportLink.supporter_id == supporter_id,
            SupportLink.patient_id == SessionDay.patient_id,
        )
        .exists()
    )
    return and_(
        or_(SessionDay.ride_id == supporter_id, SessionDay.companion_id == supporter_id), linked
    )


def session_days_for_supporter(
    *, session: Session, user, patient_id: uuid.UUID | None = None
) -> list[tuple[TreatmentSession, SessionDay]]:
    """The session days a supporter was named for (ride home or evening companion) by a patient
    they still support, from now until a day after each start (of one patient, with
    `patient_id`). A supporter not named sees none: neither the time nor the "I'm home" mark."""
    if user.role != "support":
        return []
    query = (
        select(TreatmentSession, SessionDay)
        .join(SessionDay, SessionDay.session_id == TreatmentSession.id)
        .where(
            _named_supporter(user.id),
            TreatmentSession.status != "cancelled",
            col(TreatmentSession.scheduled_at) > utcnow() - session_day.HOME_FOR,
        )
        .order_by(col(TreatmentSession.scheduled_at))
    )
    if patient_id is not None:
        query = query.where(SessionDay.patient_id == patient_id)
    return list(session.exec(query))


def named_supporters_due(*, session: Session, now) -> list:
    """(day, session, supporter id) for every supporter who may be reminded of a session day
    starting within the next two days: named by the patient, and still their supporter."""
    found = []
    rows = session.exec(
        select(SessionDay, TreatmentSession)
        .join(TreatmentSession, TreatmentSession.id == SessionDay.session_id)
        .where(
            TreatmentSession.status != "cancelled",
            col(TreatmentSession.scheduled_at) > now - session_day.HOME_FOR,
            col(TreatmentSession.scheduled_at) <= now + timedelta(days=2),
            or_(col(SessionDay.ride_id).is_not(None), col(SessionDay.companion_id).is_not(None)),
        )
    )
    for day, ts in rows:
        for supporter_id in {day.ride_id, day.companion_id} - {None}:
            if support.is_supporter(
                session=session, supporter_id=supporter_id, patient_id=day.patient_id
            ):
                found.append((day, ts, supporter_id))
    return found
