"""Support members: a patient's "My supporters" pages (invite, share, revoke, remove), the
invitation link a supporter opens, and the supporter's read-only view of what was granted."""

from __future__ import annotations

import uuid

import segno
from flask import Blueprint, abort, current_app, redirect, request, url_for
from flask_login import current_user

from .. import db, policy
from ..extensions import limiter
from ..models import Entry, User, utcnow
from ..services import accounts, audit, care, entry_forms, journal, mail, support
from ..services.accounts import ValidationError
from . import auth as auth_views
from . import care as care_views
from . import form_text, pwa, render, see_other
from .care import absolute_url

bp = Blueprint("support", __name__)


def _me() -> User:
    return current_user.user


# --- work that waits for the patient's key (DESIGN §3 flows 5 and 10) ----------------------------


@bp.before_app_request
def finish_waiting_work():
    """On each request of a logged-in patient: wrap keys for supporters who joined since, and
    re-encrypt entries a supporter left. Two indexed queries when there is nothing to do."""
    endpoint = request.endpoint or ""
    if not endpoint or endpoint == "static" or endpoint.startswith("pwa."):
        return
    if not current_user.is_authenticated or current_user.role != "patient":
        return
    if current_user.unlocked.device.mfa_pending:  # not until the second factor is given
        return
    dbs = db.session()
    if support.finish_waiting_work(session=dbs, patient=_me(), unlock=current_user.private_key):
        dbs.commit()


# --- for templates: the card's parts and the crisis lines ----------------------------------------


@bp.app_template_global()
def support_card_fields() -> list[tuple[str, str, str]]:
    return entry_forms.SUPPORT_CARD_FIELDS


@bp.app_template_global()
def crisis_lines() -> dict:
    return {"clinic": pwa.clinic_lines(), "default": pwa.DEFAULT_CRISIS_LINES}


# --- the patient: "My supporters" ----------------------------------------------------------------


def _my_items() -> list[journal.Item]:
    """The patient's entries, decrypted for this request (to label the choices)."""
    _, items = journal.timeline(
        session=db.session(),
        patient=_me(),
        viewer_id=_me().id,
        private_key=current_user.private_key(),
    )
    cards = [i for i in items if i.entry.kind == "support_card"]
    return cards + [i for i in items if i.entry.kind != "support_card"]


def _supporters_page(*, form=None, errors=None, status=200):
    dbs = db.session()
    items = _my_items()
    people = [
        (user, name, len(support.granted(session=dbs, patient=_me(), supporter=user)))
        for user, name in support.names(support.supporters_of(session=dbs, patient=_me()))
    ]
    now = utcnow()
    invitations = [
        (
            inv,
            care.label_of(inv),
            len(support.chosen_for(session=dbs, invitation=inv)),
            inv.expires_at <= now,
        )
        for inv in support.open_invitations(session=dbs, patient=_me())
    ]
    card = next((i for i in items if i.entry.kind == "support_card"), None)
    if form is not None:  # a refused form: tick again exactly what was ticked
        chosen = set(form.getlist("entry_id"))
    else:  # a new invitation offers the support card, ticked
        chosen = {str(card.entry.id)} if card else set()
    return render(
        "support/supporters.html",
        people=people,
        invitations=invitations,
        items=items,
        card=card,
        chosen=chosen,
        form=form or {},
        errors=errors or {},
        smtp=mail.enabled(),
        labels=entry_forms.KIND_LABELS,
        status=status,
    )


@bp.get("/supporters")
@policy.allow("patient")
def supporters():
    return _supporters_page()


def _chosen_entries() -> list[Entry]:
    """The patient's own entries ticked in the form; 404 for any other id."""
    entries = []
    for value in dict.fromkeys(request.form.getlist("entry_id")):
        try:
            entry_id = uuid.UUID(value)
        except ValueError:
            abort(404)
        entry = policy.get_entry_for(
            session=db.session(), user=_me(), entry_id=entry_id, need="share"
        )
        if not policy.may_share_kind_with_supporters(entry.kind):
            abort(404)
        entries.append(entry)
    return entries


@bp.post("/supporters/invite")
@policy.allow("patient")
def invite():
    dbs = db.session()
    email = form_text("email", 300).strip()
    try:
        if email and accounts.email_problem(email):
            raise ValidationError({"email": accounts.email_problem(email)})
        issued = support.invite(
            session=dbs, patient=_me(), name=form_text("name", 200), entries=_chosen_entries()
        )
    except ValidationError as exc:
        dbs.rollback()
        return _supporters_page(form=request.form, errors=exc.errors, status=422)
    dbs.commit()
    return _link_page(issued.invitation, issued.token, email=email)


def _link_page(invitation, token: str, *, email: str = ""):
    """The invitation link, shown once: copy, share (Web Share), QR code, and email."""
    link = absolute_url(url_for("support.join", token=token))
    label = care.label_of(invitation)
    emailed = None
    if email and mail.enabled():
        emailed = mail.send(
            to=email,
            subject=f"{current_user.name} invites you to support them",
            body=_invitation_email(link),
        )
    return render(
        "support/invitation_created.html",
        invitation=invitation,
        label=label,
        link=link,
        qr=segno.make(link, error="m").svg_data_uri(scale=5, border=2),
        emailed=emailed,
        chosen=len(support.chosen_for(session=db.session(), invitation=invitation)),
        status=201,
    )


def _invitation_email(link: str) -> str:
    days = current_app.config["INVITATION_DAYS"]
    return (
        f"Hello,\n\n{current_user.name} would like you to be one of their support people "
        f"and has invited you to {current_app.config['CLINIC_NAME']}. You will be able to read "
        "what they choose to share with you, and nothing else.\n\n"
        f"Open this link to accept (it works once and expires in {days} days):\n\n{link}\n\n"
        "If you were not expecting this, you can ignore this email.\n"
    )


def _my_open_invitation(invitation_id: uuid.UUID):
    invitation = policy.get_invitation_for(
        session=db.session(), user=_me(), invitation_id=invitation_id, kind=support.KIND
    )
    if invitation.used_at is not None:
        abort(404)
    return invitation


@bp.post("/supporters/invitations/<uuid:invitation_id>/cancel")
@policy.allow("patient")
def cancel_invitation(invitation_id: uuid.UUID):
    dbs = db.session()
    support.cancel(session=dbs, invitation=_my_open_invitation(invitation_id))
    dbs.commit()
    return see_other("support.supporters")


@bp.post("/supporters/invitations/<uuid:invitation_id>/reissue")
@policy.allow("patient")
def reissue_invitation(invitation_id: uuid.UUID):
    dbs = db.session()
    invitation = _my_open_invitation(invitation_id)
    token = support.reissue(session=dbs, invitation=invitation)
    dbs.commit()
    return _link_page(invitation, token)


@bp.get("/supporters/card")
@policy.allow("patient")
def card():
    """The patient's support card: to edit if written, else a new one."""
    found = support.card_of(session=db.session(), patient=_me())
    if found is None:
        return redirect(url_for("journal.new_entry", kind="support_card"))
    return redirect(url_for("journal.edit_entry", entry_id=found.id))


# --- the patient: one supporter ------------------------------------------------------------------


def _supporter_page(supporter: User, *, errors=None, status=200):
    dbs = db.session()
    items = {i.entry.id: i for i in _my_items()}
    granted = support.granted(session=dbs, patient=_me(), supporter=supporter)
    shared_ids = {entry.id for entry, _ in granted}
    return render(
        "support/supporter.html",
        supporter=supporter,
        name=accounts.name_of(supporter),
        granted=[(items.get(entry.id), entry, pending) for entry, pending in granted],
        addable=[i for i in items.values() if i.entry.id not in shared_ids],
        labels=entry_forms.KIND_LABELS,
        errors=errors or {},
        status=status,
    )


def _my_supporter(supporter_id: uuid.UUID) -> User:
    return policy.get_supporter_for(session=db.session(), user=_me(), supporter_id=supporter_id)


@bp.get("/supporters/<uuid:supporter_id>")
@policy.allow("patient")
def supporter(supporter_id: uuid.UUID):
    return _supporter_page(_my_supporter(supporter_id))


@bp.post("/supporters/<uuid:supporter_id>/share")
@policy.allow("patient")
def share(supporter_id: uuid.UUID):
    dbs = db.session()
    reader = _my_supporter(supporter_id)
    entries = _chosen_entries()
    if not entries:
        errors = {"entry_id": "Tick the entries to share first."}
        return _supporter_page(reader, errors=errors, status=422)
    support.share(
        session=dbs,
        patient=_me(),
        private_key=current_user.private_key(),
        supporter=reader,
        entries=entries,
    )
    dbs.commit()
    return see_other("support.supporter", supporter_id=reader.id)


@bp.post("/supporters/<uuid:supporter_id>/revoke")
@policy.allow("patient")
def revoke(supporter_id: uuid.UUID):
    dbs = db.session()
    reader = _my_supporter(supporter_id)
    entries = _chosen_entries()
    if len(entries) != 1:
        abort(404)
    journal.revoke(
        session=dbs,
        entry=entries[0],
        author=_me(),
        private_key=current_user.private_key(),
        reader_id=reader.id,
    )
    dbs.commit()
    return see_other("support.supporter", supporter_id=reader.id)


@bp.post("/supporters/<uuid:supporter_id>/remove")
@policy.allow("patient")
def remove(supporter_id: uuid.UUID):
    dbs = db.session()
    support.remove(
        session=dbs,
        patient=_me(),
        private_key=current_user.private_key(),
        supporter=_my_supporter(supporter_id),
    )
    dbs.commit()
    return see_other("support.supporters")


# --- the invitation link -------------------------------------------------------------------------


@bp.route("/invite/support/<token>", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@limiter.limit(auth_views.login_limits, methods=["POST"])
def join(token: str):
    """Register from the link, or accept it with the support account one is logged in to.
    A forged, used or expired link gets a calm page that names no one."""
    dbs = db.session()
    try:
        invitation = support.find_usable(session=dbs, token=token)
    except care.InvitationError as exc:
        return care_views.invalid_link(exc.problem, support.KIND)
    patient_name = accounts.name_of(dbs.get(User, invitation.inviter_id))
    if current_user.is_authenticated:
        return _join_as_logged_in(invitation, patient_name)
    context = {"token": token, "patient_name": patient_name}
    if request.method == "GET":
        return render("support/join.html", form={}, errors={}, **context)
    return care_views.register_from_link(invitation, "support/join.html", context)


def _join_as_logged_in(invitation, patient_name: str):
    """Someone who already supports another patient accepts with the same account."""
    if current_user.role != "support":
        return render("support/wrong_account.html", status=409)
    if request.method == "GET":
        return render("support/accept.html", patient_name=patient_name)
    dbs = db.session()
    try:
        support.accept(session=dbs, invitation=invitation, supporter=_me())
    except care.InvitationError as exc:  # another request used the link first
        dbs.rollback()
        return care_views.invalid_link(exc.problem, support.KIND)
    dbs.commit()
    return see_other("support.patient", patient_id=invitation.inviter_id)


# --- the supporter: what one patient shared with them --------------------------------------------


@bp.get("/supporting/<uuid:patient_id>")
@policy.allow("support")
def patient(patient_id: uuid.UUID):
    dbs = db.session()
    found = policy.get_supported_patient_for(session=dbs, user=_me(), patient_id=patient_id)
    granted = support.granted(session=dbs, patient=found, supporter=_me())
    readable = [entry for entry, pending in granted if not pending]
    card_entries = [entry for entry in readable if entry.kind == "support_card"]
    key = current_user.private_key() if card_entries else None
    cards = []
    for entry in card_entries:  # shown in full, so read: in the patient's access log
        try:
            body = journal.read(session=dbs, entry=entry, reader_id=_me().id, private_key=key)
        except journal.EntryUnreadable:
            cards.append((entry, None))
            continue
        cards.append((entry, body))
        audit.record(
            session=dbs, actor_id=_me().id, action="read", patient_id=found.id, entry_id=entry.id
        )
    dbs.commit()
    return render(
        "support/patient.html",
        patient=found,
        name=accounts.name_of(found),
        cards=cards,
        entries=[e for e in readable if e.kind != "support_card"],
        waiting=len(granted) - len(readable),
        labels=entry_forms.KIND_LABELS,
    )


@bp.post("/supporting/<uuid:patient_id>/leave")
@policy.allow("support")
def leave(patient_id: uuid.UUID):
    dbs = db.session()
    found = policy.get_supported_patient_for(session=dbs, user=_me(), patient_id=patient_id)
    support.leave(session=dbs, supporter=_me(), patient=found)
    dbs.commit()
    return see_other("home.index")
