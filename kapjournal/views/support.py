"""Support members: a patient's "My supporters" pages (invite, share, revoke, remove), the
invitation link a supporter opens, and the supporter's read-only view of what was granted."""

from __future__ import annotations

import uuid

import segno
from flask import Blueprint, current_app, redirect, request, url_for
from flask_login import current_user

from .. import db, joining, pages, policy, web
from ..extensions import limiter
from ..i18n import gettext as _
from ..i18n import ngettext
from ..login import login_limits
from ..models import Entry, User, utcnow
from ..services import accounts, care, crisis, entry_forms, journal, mail, reading, support
from ..services import timeline as course_pages
from ..services.accounts import ValidationError
from . import form_text, render, see_other, ticked

bp = Blueprint("support", __name__)


def _me() -> User:
    return web.me()


# --- for templates: the card's parts and the crisis lines ----------------------------------------


@bp.app_template_global()
def support_card_fields() -> list[tuple[str, str, str]]:
    return entry_forms.SUPPORT_CARD_FIELDS


@bp.app_template_global()
def crisis_lines() -> dict:
    return crisis.all_lines()


# --- the patient: "My supporters" ----------------------------------------------------------------


def _my_items(entries: list[Entry] | None = None) -> list[reading.Item]:
    """The patient's support card and newest entries (or `entries`), opened for them to label
    the choices (their own words: no read). Older entries are shared from their own page."""
    if entries is None:
        entries = pages.latest_entries(_me())
        found = support.card_of(session=db.session(), patient=_me())
        if found is not None and found.id not in {e.id for e in entries}:
            entries = [found, *entries]
    items = reading.open_entries(
        session=db.session(), reader=web.reader(), rows=[(e, True) for e in entries]
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
        next_session_shown=support.shows_next_session(_me()),
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


@bp.post("/supporters/next-session")
@policy.allow("patient")
def next_session():
    """Whether the patient's supporters see when their next ketamine session is."""
    dbs = db.session()
    support.show_next_session(session=dbs, patient=_me(), shown=ticked("shown"))
    dbs.commit()
    return redirect(url_for("support.supporters", _anchor="next-session-h"), code=303)


def _chosen_entries() -> list[Entry]:
    """The patient's own entries ticked in the form; 404 for any other id."""
    return policy.get_entries_to_share_for(
        session=db.session(),
        user=_me(),
        entry_ids=request.form.getlist("entry_id"),
        with_supporter=True,
    )


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
    link = web.absolute_url(url_for("support.join", token=token))
    label = care.label_of(invitation)
    emailed = None
    if email and mail.enabled():
        emailed = mail.send(
            to=email,
            subject=_("%(name)s invites you to support them", name=current_user.name),
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
    """In the sender's language (the request's): the invitee has no account yet; the page the
    link opens offers the other language."""
    days = current_app.config["INVITATION_DAYS"]
    name, clinic = current_user.name, current_app.config["CLINIC_NAME"]
    return (
        _("Hello,")
        + "\n\n"
        + _(
            "%(name)s would like you to be one of their support people and has invited you to "
            "%(clinic)s. You will be able to read what they choose to share with you, and "
            "nothing else.",
            name=name,
            clinic=clinic,
        )
        + "\n\n"
        + ngettext(
            "Open this link to accept (it works once and expires in %(num)d day):",
            "Open this link to accept (it works once and expires in %(num)d days):",
            days,
        )
        + f"\n\n{link}\n\n"
        + _("If you were not expecting this, you can ignore this email.")
        + "\n"
    )


def _my_open_invitation(invitation_id: uuid.UUID):
    return policy.get_invitation_for(
        session=db.session(),
        user=_me(),
        invitation_id=invitation_id,
        kind=support.KIND,
        unused=True,
    )


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
    """What the patient shares with one supporter (a page at a time, newest first) and their
    newest entries to add."""
    dbs = db.session()
    before = course_pages.Cursor.parse(request.args.get("before"))
    rows, earlier = course_pages.entries_page(
        session=dbs, patient_id=_me().id, reader_id=supporter.id, before=before
    )
    granted = {item.entry.id: item for item in _my_items([row.entry for row in rows])}
    shared_ids = set(support.granted_ids(session=dbs, patient=_me(), supporter=supporter))
    return render(
        "support/supporter.html",
        supporter=supporter,
        name=accounts.name_of(supporter),
        granted=[(granted.get(row.entry.id), row.entry, not row.live) for row in rows],
        earlier=earlier,
        addable=[i for i in _my_items() if i.entry.id not in shared_ids],
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
        errors = {"entry_id": _("Tick the entries to share first.")}
        return _supporter_page(reader, errors=errors, status=422)
    support.share(
        session=dbs,
        patient=_me(),
        private_key=web.reader().private_key,
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
    chosen = request.form.getlist("entry_id")[:1]  # one entry a button
    entries = policy.get_entries_to_share_for(
        session=dbs, user=_me(), entry_ids=chosen, with_supporter=True
    )
    if not entries:
        return see_other("support.supporter", supporter_id=reader.id)
    journal.revoke(
        session=dbs,
        entry=entries[0],
        author=_me(),
        private_key=web.reader().private_key,
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
        private_key=web.reader().private_key,
        supporter=_my_supporter(supporter_id),
    )
    dbs.commit()
    return see_other("support.supporters")


# --- the invitation link -------------------------------------------------------------------------


@bp.route("/invite/support/<token>", methods=["GET", "POST"])
@policy.allow(policy.PUBLIC)
@limiter.limit(login_limits, methods=["POST"])
def join(token: str):
    """Register from the link, or accept it with the support account one is logged in to.
    A forged, used or expired link gets a calm page that names no one."""
    dbs = db.session()
    try:
        invitation = support.find_usable(session=dbs, token=token)
    except care.InvitationError as exc:
        return joining.invalid_link(exc.problem, support.KIND)
    patient_name = accounts.name_of(dbs.get(User, invitation.inviter_id))
    if current_user.is_authenticated:
        return _join_as_logged_in(invitation, patient_name)
    context = {"token": token, "patient_name": patient_name}
    if request.method == "GET":
        return render("support/join.html", form={}, errors={}, **context)
    return joining.register_from_link(invitation, "support/join.html", context)


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
        return joining.invalid_link(exc.problem, support.KIND)
    dbs.commit()
    return see_other("support.patient", patient_id=invitation.inviter_id)


# --- the supporter: what one patient shared with them --------------------------------------------


@bp.get("/supporting/<uuid:patient_id>")
@policy.allow("support")
def patient(patient_id: uuid.UUID):
    """What one patient shares with the supporter: their support card in full on the first
    page (opened, so a read in the patient's access log), then the other entries, a page at a
    time, as links (each is read, and logged, when opened)."""
    dbs = db.session()
    found = policy.get_supported_patient_for(session=dbs, user=_me(), patient_id=patient_id)
    before = course_pages.Cursor.parse(request.args.get("before"))
    rows, earlier = course_pages.entries_page(
        session=dbs, patient_id=found.id, reader_id=_me().id, before=before
    )
    card = support.card_of(session=dbs, patient=found) if before is None else None
    grant = journal.grant_of(session=dbs, entry_id=card.id, reader_id=_me().id) if card else None
    first = before is None
    return render(
        "support/patient.html",
        block="page" if not first else None,
        patient=found,
        name=accounts.name_of(found),
        cards=_opened_card(card, grant.wrapped_key) if grant and grant.wrapped_key else [],
        # Shared, but not wrapped for this supporter yet: it opens on the patient's next visit.
        card_waiting=grant is not None and grant.wrapped_key is None,
        next_session=support.next_session_for_supporters(session=dbs, patient=found)
        if first
        else None,
        entries=[row.entry for row in rows if row.live and row.entry.kind != "support_card"],
        waiting=sum(1 for row in rows if not row.live and row.entry.kind != "support_card"),
        earlier=earlier,
        labels=entry_forms.KIND_LABELS,
        **(pages.supporter_days(_me(), patient_id=found.id) if first else {"days": []}),
    )


def _opened_card(card: Entry, wrapped: bytes) -> list[tuple[Entry, dict | None]]:
    """The support card and its body for the supporter (None: it did not open): a read in
    the patient's access log."""
    try:
        body = reading.open_entry(
            session=db.session(), reader=web.reader(), entry=card, wrapped=wrapped
        )
    except journal.EntryUnreadable:
        body = None
    return [(card, body)]


@bp.post("/supporting/<uuid:patient_id>/leave")
@policy.allow("support")
def leave(patient_id: uuid.UUID):
    dbs = db.session()
    found = policy.get_supported_patient_for(session=dbs, user=_me(), patient_id=patient_id)
    support.leave(session=dbs, supporter=_me(), patient=found)
    dbs.commit()
    return see_other("home.index")
