"""Every authorization decision of kapjournal (DESIGN §4). The default is deny.

Each view declares its audience with `@policy.allow(...)`; a request to an endpoint without
one is refused. Objects are fetched only through the `get_*_for` functions, which raise 404
for anything the user may not see, exactly as for an object that does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import abort, current_app, request
from flask_login import current_user
from sqlmodel import Session, select

from .models import DeviceSession, Entry, Grant, Invitation, TreatmentSession, User
from .services import care

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


def get_invitation_for(*, session: Session, user, invitation_id: uuid.UUID) -> Invitation:
    """An invitation, for the person who made it."""
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.inviter_id != user.id:
        abort(404)
    return invitation


def get_patient_for(*, session: Session, user, patient_id: uuid.UUID) -> User:
    """A patient, for a therapist on their care team (or the patient themself)."""
    patient = session.get(User, patient_id)
    if patient is None or patient.role != "patient":
        abort(404)
    if patient.id == user.id:
        return patient
    if user.role == "therapist" and care.is_linked(
        session=session, therapist_id=user.id, patient_id=patient.id
    ):
        return patient
    abort(404)


def get_entry_for(*, session: Session, user, entry_id: uuid.UUID, need: str = "read") -> Entry:
    """An entry, if `user` may `need` it: the author may do anything with their own words;
    anyone else may only read, and only with a live (not pending) grant. No one edits,
    shares, or deletes another person's words."""
    if need not in ENTRY_NEEDS:
        raise ValueError(f"unknown need {need!r}")
    entry = session.get(Entry, entry_id)
    if entry is None:
        abort(404)
    if entry.author_id == user.id:
        return entry
    if need == "read" and user.role in ("therapist", "support"):
        grant = session.exec(
            select(Grant).where(Grant.entry_id == entry.id, Grant.reader_id == user.id)
        ).first()
        live = grant is not None and grant.wrapped_key is not None
        # A therapist reads only while on the patient's care team, whatever grants remain.
        if live and (
            user.role == "support"
            or care.is_linked(session=session, therapist_id=user.id, patient_id=entry.author_id)
        ):
            return entry
    abort(404)


ENTRY_NEEDS = {"read", "edit", "share", "delete"}


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


def may_share_with(*, session: Session, patient, reader) -> bool:
    """A patient may share with the therapists on their care team (supporters come later)."""
    return reader.role == "therapist" and care.is_linked(
        session=session, therapist_id=reader.id, patient_id=patient.id
    )
