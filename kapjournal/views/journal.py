"""The patient's journal: timeline, writing, reading, editing, sharing, the access log."""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, request
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from .. import db, policy
from ..models import User
from ..services import (
    accounts,
    audit,
    care,
    course,
    entry_forms,
    instruments,
    journal,
    measures,
    sharing,
    support,
)
from ..services.accounts import ValidationError
from . import form_text, render, see_other, timeline_for, viewer_zone
from . import workspace as workspace_views
from .auth import limit_password_checks

bp = Blueprint("journal", __name__)


def _me() -> User:
    return current_user.user


def _timeline(kinds=None):
    return timeline_for(_me(), kinds)


@bp.get("/journal")
@policy.allow("patient")
def timeline():
    return timeline_page(*_timeline())


def timeline_page(groups, items):
    """The patient's home from their decrypted timeline (bench/timeline.py feeds it plaintext
    to measure what encryption costs)."""
    return render(
        "journal/timeline.html",
        therapists=[name for _, name in _possible_readers()],
        care_team=_possible_readers(),
        groups=groups,
        count=len(items),
        labels=entry_forms.KIND_LABELS,
        session_labels=course.KIND_LABELS,
        due=measures.due(session=db.session(), patient=_me()),
        **workspace_views.patient_home(items),
        shared_with=_shared_with(items),
    )


def _shared_with(items) -> dict:
    ids = [item.entry.id for item in items]
    return sharing.in_words_by_entry(session=db.session(), author=_me(), entry_ids=ids)


@bp.route("/journal/search", methods=["GET", "POST"])
@policy.allow("patient")
def search():
    """The search form, and (POST) what it finds. The words searched for are decrypted journal
    vocabulary: they travel only in a POST body, never in a URL, so no request log, browser
    history, Referer or cache holds them. A `q` in a URL is ignored, not searched."""
    if request.method == "GET":
        return render("journal/search.html", query="", results=[])
    query = form_text("q", 200)
    results = journal.search(_timeline()[1], query) if query.strip() else []
    return render(
        "journal/search.html",
        block="results",
        query=query,
        results=results,
        labels=entry_forms.KIND_LABELS,
        shared_with=_shared_with(results),
    )


@bp.get("/journal/log")
@policy.allow("patient")
def access_log():
    return render("journal/log.html", events=_events(), entry=None)


def _events(entry_id=None):
    """Access-log rows with the actor's and target's names, for the patient's page."""
    dbs = db.session()
    events = audit.for_patient(session=dbs, patient_id=_me().id, entry_id=entry_id)
    people = {e.actor_id for e in events} | {e.target_id for e in events}
    names = accounts.names_of(session=dbs, user_ids=people)
    return [(e, names.get(e.actor_id, "Someone"), names.get(e.target_id, "")) for e in events]


# --- writing -------------------------------------------------------------------------------------


def _possible_readers() -> list[tuple[User, str]]:
    therapists = care.therapists_of(session=db.session(), patient=_me())
    return [(t, accounts.name_of(t)) for t in therapists]


def _share_choices() -> list[tuple[User, str]]:
    """Whom the patient may share an entry with: their therapists, then their supporters."""
    supporters = support.supporters_of(session=db.session(), patient=_me())
    return _possible_readers() + support.names(supporters)


def _form_context(
    kind: str, *, entry=None, values=None, errors=None, share_default=None, answers=None
):
    sessions = course.sessions_of(session=db.session(), patient=_me())
    return {
        "kind": kind,
        "label": entry_forms.KIND_LABELS[kind],
        "entry": entry,
        "values": values or {},
        "errors": errors or {},
        "prompts": entry_forms.prompts_for(kind),
        "answers": answers or [],
        "intention_fields": entry_forms.INTENTION_FIELDS,
        "card_fields": entry_forms.FIELDS_OF.get(kind, []),
        "moods": entry_forms.MOODS,
        "sessions": sessions,
        "session_labels": course.KIND_LABELS,
        "readers": _share_choices() if entry is None else [],
        "share_checked": set(values.getlist("share")) if hasattr(values, "getlist") else set(),
        "share_default": share_default
        if share_default is not None
        else measures.shares_by_default(_me(), kind),
    }


@bp.route("/entries/new", methods=["GET", "POST"])
@policy.allow("patient")
def new_entry():
    kind = request.values.get("kind", "reflection")
    if kind not in entry_forms.WRITABLE_KINDS:
        abort(404)
    if request.method == "GET":
        values = {"session_id": request.args.get("session", ""), "client_id": str(uuid.uuid4())}
        return render("journal/edit.html", **_form_context(kind, values=values))
    dbs = db.session()
    try:
        body = entry_forms.parse(kind, request.form)
        client_id = _uuid_field("client_id") or uuid.uuid4()
        session_id = _session_field()
        readers = [r for r, _ in _share_choices() if str(r.id) in request.form.getlist("share")]
        if request.form.get("share_default") == "1" and measures.shares_by_default(_me(), kind):
            # Written on the offline page, which names no one: the standing default applies.
            readers = [r for r, _ in _possible_readers()]
        new = {"kind": kind, "body": body, "client_id": client_id, "session_id": session_id}
        try:
            entry, _created = journal.create(session=dbs, author=_me(), readers=readers, **new)
        except IntegrityError:
            # The same client_id twice at once (two tabs, a retry): the first one made it.
            dbs.rollback()
            entry, _created = journal.create(session=dbs, author=_me(), readers=readers, **new)
    except ValidationError as exc:
        dbs.rollback()
        # Tick again exactly the readers that were ticked, not every one of them.
        context = _form_context(kind, values=request.form, errors=exc.errors, share_default=False)
        return render("journal/edit.html", status=422, **context)
    dbs.commit()
    return see_other("journal.show_entry", entry_id=entry.id)


def _uuid_field(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.form.get(name, ""))
    except ValueError:
        return None


def _session_field() -> uuid.UUID | None:
    session_id = _uuid_field("session_id")
    if session_id is None:
        return None
    # Patients only reach this view, and policy gives a patient only their own sessions.
    found = policy.get_treatment_session_for(
        session=db.session(), user=_me(), session_id=session_id
    )
    return found.id


# --- one entry -----------------------------------------------------------------------------------


@bp.get("/entries/<uuid:entry_id>")
@policy.allow(policy.AUTHENTICATED)
def show_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="read")
    if entry.kind in instruments.INSTRUMENTS:  # a questionnaire has its own page
        return see_other("measures.result", entry_id=entry.id)
    body, mine = read_as_viewer(entry)
    return render(
        "journal/entry.html",
        entry=entry,
        body=body,
        mine=mine,
        **(sharing_of(entry) if mine else {}),
        labels=entry_forms.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        events=_events(entry.id) if mine else [],
        author_name=None if mine else accounts.name_of(dbs.get(User, entry.author_id)),
        **workspace_views.patient_entry_notes(entry, body),
    )


def read_as_viewer(entry) -> tuple[dict, bool]:
    """The entry's body for the current user, and whether it is their own; a read of someone
    else's words goes into that patient's access log."""
    body = _read(entry)
    mine = entry.author_id == _me().id
    if not mine:
        audit.record(
            session=db.session(),
            actor_id=_me().id,
            action="read",
            patient_id=entry.author_id,
            entry_id=entry.id,
        )
        db.session().commit()
    return body, mine


def sharing_of(entry) -> dict:
    """Who reads the author's entry (with pending invitees), and whom they may still add:
    their therapists and supporters, or only the therapists for a questionnaire."""
    readers = journal.readers_of(session=db.session(), entry=entry)
    taken = {u.id for u, _ in readers}
    if policy.may_share_kind_with_supporters(entry.kind):
        choices = _share_choices()
    else:
        choices = _possible_readers()
    return {
        "readers": [(u, accounts.name_of(u), pending) for u, pending in readers],
        "addable": [(u, n) for u, n in choices if u.id not in taken],
    }


def _read(entry) -> dict:
    try:
        return journal.read(
            session=db.session(),
            entry=entry,
            reader_id=_me().id,
            private_key=current_user.private_key(),
        )
    except journal.EntryUnreadable:
        abort(500)


@bp.route("/entries/<uuid:entry_id>/edit", methods=["GET", "POST"])
@policy.allow("patient")
def edit_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="edit")
    if entry.kind not in entry_forms.WRITABLE_KINDS:
        abort(404)  # a questionnaire is answered again, not edited
    if request.method == "GET":
        body = _read(entry)
        values = entry_forms.form_values(body) | {
            "base_digest": journal.body_digest(body),
            "session_id": str(entry.session_id or ""),
        }
        return render(
            "journal/edit.html",
            **_form_context(
                entry.kind, entry=entry, values=values, answers=body.get("answers", [])
            ),
        )
    try:
        body = entry_forms.parse(entry.kind, request.form)
        journal.update(
            session=dbs,
            entry=entry,
            author=_me(),
            private_key=current_user.private_key(),
            body=body,
            base_digest=form_text("base_digest", 100),
            session_id=_session_field(),
        )
    except ValidationError as exc:
        dbs.rollback()
        context = _form_context(entry.kind, entry=entry, values=request.form, errors=exc.errors)
        return render("journal/edit.html", status=422, **context)
    except journal.EditConflict as conflict:
        dbs.rollback()
        return render(
            "journal/conflict.html",
            status=409,
            entry=entry,
            mine=request.form,
            saved=conflict.saved_body,
            base_digest=journal.body_digest(conflict.saved_body),
            intention_fields=entry_forms.INTENTION_FIELDS,
        )
    dbs.commit()
    return see_other("journal.show_entry", entry_id=entry.id)


@bp.route("/entries/<uuid:entry_id>/delete", methods=["GET", "POST"])
@policy.allow("patient")
def delete_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="delete")
    if request.method == "GET":
        labels = entry_forms.KIND_LABELS | instruments.LABELS
        return render("journal/delete.html", entry=entry, labels=labels)
    journal.delete(session=dbs, entry=entry, author=_me())
    dbs.commit()
    if entry.kind in instruments.INSTRUMENTS:
        return see_other("measures.index")
    return see_other("journal.timeline")


@bp.post("/entries/<uuid:entry_id>/share")
@policy.allow("patient")
def share_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="share")
    reader_id = _uuid_field("reader_id")
    reader = dbs.get(User, reader_id) if reader_id else None
    if reader is None or not policy.may_share_with(
        session=dbs, patient=_me(), reader=reader, kind=entry.kind
    ):
        abort(404)
    if reader.role == "support" and request.form.get("confirm") != "1":
        # Family and friends are asked about once, naming them and what they will read; the
        # care team is the clinical relationship the patient joined: one tap.
        return render(
            "journal/share_confirm.html",
            block="confirm",
            entry=entry,
            reader=reader,
            name=accounts.name_of(reader),
            labels=entry_forms.KIND_LABELS,
        )
    journal.share(
        session=dbs,
        entry=entry,
        author=_me(),
        private_key=current_user.private_key(),
        reader=reader,
    )
    dbs.commit()
    return see_other("journal.show_entry", entry_id=entry.id)


@bp.post("/entries/<uuid:entry_id>/revoke")
@policy.allow("patient")
def revoke_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="share")
    reader_id = _uuid_field("reader_id")
    if reader_id is None or reader_id == _me().id:
        abort(404)
    journal.revoke(
        session=dbs,
        entry=entry,
        author=_me(),
        private_key=current_user.private_key(),
        reader_id=reader_id,
    )
    dbs.commit()
    return see_other("journal.show_entry", entry_id=entry.id)


# --- sessions the patient adds, and sharing defaults ---------------------------------------------


@bp.route("/sessions/new", methods=["GET", "POST"])
@policy.allow("patient")
def new_session():
    if request.method == "GET":
        return render("journal/session_new.html", errors={}, form={}, kinds=course.KIND_LABELS)
    dbs = db.session()
    try:
        course.schedule(
            session=dbs,
            patient=_me(),
            created_by=_me(),
            kind=form_text("kind", 20),
            when=form_text("scheduled_at", 40),
            zone=viewer_zone(),
        )
    except ValidationError as exc:
        dbs.rollback()
        return render(
            "journal/session_new.html",
            errors=exc.errors,
            form=request.form,
            kinds=course.KIND_LABELS,
            status=422,
        )
    dbs.commit()
    return see_other("journal.timeline")


@bp.route("/account/sharing", methods=["GET", "POST"])
@policy.allow("patient")
@limit_password_checks
def sharing_defaults():
    kinds = [(k, entry_forms.KIND_LABELS[k]) for k in entry_forms.WRITABLE_KINDS]
    kinds += [(i.key, i.name) for i in instruments.INSTRUMENTS.values()]
    if request.method == "GET":
        return render("journal/sharing.html", kinds=kinds, errors={}, done=False)
    dbs = db.session()
    # Changing who reads by default asks for the password again (DESIGN §5).
    if (
        accounts.authenticate(
            session=dbs, email=accounts.email_of(_me()), password=form_text("password", 1000)
        )
        is None
    ):
        return render(
            "journal/sharing.html",
            kinds=kinds,
            done=False,
            status=422,
            errors={"password": "That is not your password."},
        )
    _me().share_defaults = {k: k in request.form.getlist("kinds") for k, _ in kinds}
    dbs.add(_me())
    dbs.commit()
    return render("journal/sharing.html", kinds=kinds, errors={}, done=True)
