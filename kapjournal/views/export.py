"""Taking the words out and bringing them in (DESIGN §11): a patient downloads their journal
(after their password) and imports one from another kapjournal server; a therapist downloads
the clinical record of a patient on their care team. The ZIPs are built in memory by
services/export.py and sent from there: nothing is written to the server's disk."""

from __future__ import annotations

import io
import uuid
from datetime import datetime

from flask import Blueprint, Response, request
from sqlalchemy.exc import IntegrityError

from .. import db, policy, web
from ..i18n import gettext as _
from ..login import NOT_YOUR_PASSWORD, limit_password_checks, password_ok
from ..services import export, importing
from . import form_text, render, viewer_zone

bp = Blueprint("export", __name__)

_CHUNK = 64 * 1024


def too_large() -> str:
    """Why a file over the limit is refused, in the page's language."""
    return _(
        "This file is larger than %(mb)d MB, more than a journal.json from kapjournal can be. "
        "Choose the journal.json from your download.",
        mb=importing.MAX_BYTES // (1024 * 1024),
    )


def _zip(archive: io.BytesIO, name: str) -> Response:
    """The ZIP as a download, sent from memory in chunks, stored by no browser or proxy."""
    size = archive.getbuffer().nbytes
    response = Response(iter(lambda: archive.read(_CHUNK), b""), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Content-Length"] = str(size)
    response.headers["Cache-Control"] = "no-store"
    return response


def _today() -> str:
    return datetime.now(viewer_zone()).date().isoformat()


@bp.route("/account/export", methods=["GET", "POST"])
@policy.allow("patient")
@limit_password_checks
def download():
    """The patient's whole journal as a ZIP, after their password (it holds everything)."""
    if request.method == "GET":
        return render("export/download.html", errors={})
    if not password_ok(form_text("password", 1000)):
        return render("export/download.html", errors={"password": NOT_YOUR_PASSWORD}, status=422)
    dbs = db.session()
    archive = export.journal_archive(session=dbs, reader=web.reader(), zone=viewer_zone())
    dbs.commit()
    return _zip(archive, f"journal-{_today()}.zip")


@bp.post("/patients/<uuid:patient_id>/export")
@policy.allow("therapist")
def clinical_record(patient_id: uuid.UUID):
    """For a therapist on the patient's care team: the clinical record as a ZIP."""
    dbs = db.session()
    patient = policy.get_patient_for(session=dbs, user=web.me(), patient_id=patient_id)
    archive = export.clinical_record(
        session=dbs, reader=web.reader(), patient=patient, zone=viewer_zone()
    )
    dbs.commit()
    return _zip(archive, f"clinical-record-{_today()}.zip")


@bp.route("/account/import", methods=["GET", "POST"])
@policy.allow("patient")
def import_journal():
    """A journal.json from a kapjournal download, into this account. The upload is read in
    memory only (web.InMemoryUploads), up to web.UPLOAD_LIMITS."""
    if request.method == "GET":
        return _import_page()
    upload = request.files.get("journal")
    if upload is None or not upload.filename:
        return _refused(_("Choose the journal.json file from your download."), 422)
    raw = upload.read(importing.MAX_BYTES + 1)
    if len(raw) > importing.MAX_BYTES:
        return _refused(too_large(), 413)
    try:
        journal_in = importing.parse(raw)
    except importing.Refused as exc:
        return _refused(str(exc), 422)
    dbs = db.session()
    try:
        done = importing.import_journal(session=dbs, patient=web.me(), journal_in=journal_in)
    except IntegrityError:
        # The same file imported at the same moment (two taps, a retry): the other one made
        # the entries; this run now finds them there.
        dbs.rollback()
        done = importing.import_journal(session=dbs, patient=web.me(), journal_in=journal_in)
    dbs.commit()
    return _import_page(done=done)


def _refused(message: str, status: int) -> Response:
    return _import_page(errors={"journal": message}, status=status)


def _import_page(*, errors=None, done=None, status: int = 200) -> Response:
    return render(
        "export/import.html",
        errors=errors or {},
        done=done,
        max_mb=importing.MAX_BYTES // (1024 * 1024),
        status=status,
    )
