"""The patient's journal: the timeline, writing, reading, editing, sharing, search and the
access log. Everything shown is opened through the read path (pages.py, services/reading.py)."""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, request
from sqlalchemy.exc import IntegrityError

from .. import db, pages, policy, web
from ..i18n import gettext as _
from ..login import limit_password_checks
from ..models import User
from ..services import accounts, capture, course, entry_forms, instruments, journal, measures
from ..services import timeline as course_pages
from ..services.accounts import ValidationError
from . import form_text, form_uuid, render, see_other, ticked, viewer_zone

bp = Blueprint("journal", __name__)


def _me() -> User:
    return web.me()


def _cursor():
    return course_pages.Cursor.parse(request.values.get("before"))


@bp.get("/journal")
@policy.allow("patient")
def timeline():
    """The patient's home: their course of treatment, a page at a time."""
    return pages.journal_home(before=_cursor())


@bp.route("/journal/search", methods=["GET", "POST"])
@policy.allow("patient")
def search():
    """The search form, and (POST) what it finds. The words searched for are decrypted journal
    vocabulary: they travel only in a POST body, never in a URL, so no request log, browser
    history, Referer or cache holds them. A `q` in a URL is ignored, not searched. A search
    opens at most a few hundred entries, newest first, then offers to search earlier ones."""
    if request.method == "GET":
        return render("journal/search.html", query="", found=None, results=[])
    query = form_text("q", 200)
    found = course_pages.search(
        session=db.session(), reader=web.reader(), patient=_me(), words=query, before=_cursor()
    )
    return render(
        "journal/search.html",
        block="results",
        query=query,
        found=found,
        results=found.results,
        labels=entry_forms.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        shared_with=pages.shared_with(_me(), found.results),
    )


@bp.get("/journal/log")
@policy.allow("patient")
def access_log():
    try:
        before = int(request.args.get("before", ""))
    except ValueError:
        before = None
    context = pages.access_log(_me(), before=before)
    return render("journal/log.html", block="events" if before else None, entry=None, **context)


# --- writing -------------------------------------------------------------------------------------


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
        "readers": pages.share_choices(_me(), kind) if entry is None else [],
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
        client_id = form_uuid("client_id") or uuid.uuid4()
        session_id = _session_field()
        chosen = request.form.getlist("share")
        readers = [r for r, _name in pages.share_choices(_me(), kind) if str(r.id) in chosen]
        if request.form.get("share_default") == "1":
            # Written on the offline page, which names no one: the standing default applies.
            readers = pages.default_readers(_me(), kind)
        new = {"kind": kind, "body": body, "client_id": client_id, "session_id": session_id}
        # Written in the hours after a ketamine session, it is held for the author alone (the
        # cooling-off seal, services/capture.py); otherwise a plain journal.create.
        try:
            entry, _created = capture.create(session=dbs, author=_me(), readers=readers, **new)
        except IntegrityError:
            # The same client_id twice at once (two tabs, a retry): the first one made it.
            dbs.rollback()
            entry, _created = capture.create(session=dbs, author=_me(), readers=readers, **new)
    except ValidationError as exc:
        dbs.rollback()
        # Tick again exactly the readers that were ticked, not every one of them.
        context = _form_context(kind, values=request.form, errors=exc.errors, share_default=False)
        return render("journal/edit.html", status=422, **context)
    dbs.commit()
    return see_other("journal.show_entry", entry_id=entry.id)


def _session_field() -> uuid.UUID | None:
    session_id = form_uuid("session_id")
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
    entry, wrapped = policy.get_entry_to_read_for(
        session=db.session(), user=_me(), entry_id=entry_id, need="read"
    )
    if entry.kind in instruments.INSTRUMENTS:  # a questionnaire has its own page
        return see_other("measures.result", entry_id=entry.id)
    reader = web.reader()
    body = pages.entry_body(reader, entry, wrapped)
    mine = entry.author_id == _me().id
    return render(
        "journal/entry.html",
        entry=entry,
        body=body,
        mine=mine,
        **(pages.sharing_panel(_me(), entry) if mine else {}),
        labels=entry_forms.KIND_LABELS,
        moods=dict(entry_forms.MOODS),
        author_name=None if mine else accounts.name_of(db.session().get(User, entry.author_id)),
        **pages.own_entry_notes(reader, entry, body),
    )


@bp.get("/entries/<uuid:entry_id>/log")
@policy.allow("patient")
def entry_log(entry_id: uuid.UUID):
    """What happened to one of the patient's entries: who read, shared, stopped sharing."""
    entry = policy.get_entry_for(session=db.session(), user=_me(), entry_id=entry_id, need="edit")
    context = pages.access_log(_me(), entry_id=entry.id)
    return render("journal/log.html", entry=entry, labels=entry_forms.KIND_LABELS, **context)


def _own_body(entry) -> dict:
    """The patient's own entry, opened to edit it (their own words: no read is recorded)."""
    return pages.entry_body(web.reader(), entry, None)


@bp.route("/entries/<uuid:entry_id>/edit", methods=["GET", "POST"])
@policy.allow("patient")
def edit_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(
        session=dbs, user=_me(), entry_id=entry_id, need="edit", kinds=entry_forms.WRITABLE_KINDS
    )
    if request.method == "GET":
        body = _own_body(entry)
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
            private_key=web.reader().private_key,
            body=body,
            base_digest=form_text("base_digest", 100),
            session_id=_session_field(),
        )
    except ValidationError as exc:
        dbs.rollback()
        context = _form_context(entry.kind, entry=entry, values=request.form, errors=exc.errors)
        return render("journal/edit.html", status=422, **context)
    except journal.EditConflict:
        dbs.rollback()
        saved = _own_body(entry)
        return render(
            "journal/conflict.html",
            status=409,
            entry=entry,
            mine=request.form,
            saved=saved,
            base_digest=journal.body_digest(saved),
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


def _readers_block(entry):
    """After a share or a revoke: htmx gets the entry's "who can read this" block, a plain
    form post the entry page."""
    if request.htmx and not request.htmx.boosted:
        return render(
            "journal/entry.html",
            block="readers",
            entry=entry,
            mine=True,
            labels=entry_forms.KIND_LABELS,
            **pages.sharing_panel(_me(), entry),
        )
    return see_other("journal.show_entry", entry_id=entry.id)


@bp.post("/entries/<uuid:entry_id>/share")
@policy.allow("patient")
def share_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="share")
    reader = policy.get_share_reader_for(
        session=dbs, patient=_me(), reader_id=form_uuid("reader_id"), kind=entry.kind
    )
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
        session=dbs, entry=entry, author=_me(), private_key=web.reader().private_key, reader=reader
    )
    dbs.commit()
    return _readers_block(entry)


@bp.post("/entries/<uuid:entry_id>/revoke")
@policy.allow("patient")
def revoke_entry(entry_id: uuid.UUID):
    dbs = db.session()
    entry = policy.get_entry_for(session=dbs, user=_me(), entry_id=entry_id, need="share")
    reader_id = policy.get_reader_to_revoke_for(patient=_me(), reader_id=form_uuid("reader_id"))
    journal.revoke(
        session=dbs,
        entry=entry,
        author=_me(),
        private_key=web.reader().private_key,
        reader_id=reader_id,
    )
    dbs.commit()
    return _readers_block(entry)


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
    kinds += [("capture", _("What I capture after a session"))]  # helper CAPTURE
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
            errors={"password": _("That is not your password.")},
        )
    _me().share_defaults = {k: k in request.form.getlist("kinds") for k, _label in kinds} | {
        capture.SEAL_SETTING: ticked(capture.SEAL_SETTING)  # after the session: helper CAPTURE
    }
    dbs.add(_me())
    dbs.commit()
    return render("journal/sharing.html", kinds=kinds, errors={}, done=True)
