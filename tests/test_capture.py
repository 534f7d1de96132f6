"""After a ketamine session: soft capture (a voice memo, one tap for body and mood, a few words)
and the cooling-off seal, over HTTP against the real app, database and crypto.

The seal's edges are real times: a session scheduled (in the patient's own time zone, to the
second) 11 h 59 min or 12 h 01 min before the capture. "The next day" is the hold's end moved
into the past in the database, as the clock would."""

from __future__ import annotations

import io
import re
import secrets
import uuid
import zipfile
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import PASSWORD, WebClient, client_for, csrf_token, in_parallel, login, post, serving
from sqlalchemy import update
from sqlmodel import Session, select
from test_journal_security import capture_every_log, hits, logged_bytes, stored_bytes

from kapjournal import db
from kapjournal.models import AuditEvent, CoolingOff, Entry, EntryMemo, utcnow

ZONE = "Pacific/Auckland"  # far from UTC: a seal counted in UTC instead would show
SEALED = "waiting for Pat Quinn to decide"
FROM_YESTERDAY = "From yesterday\u2019s session"


def audio_with(marker: bytes, size: int = 4096) -> bytes:
    """Bytes that stand for a recording, with a recognisable pattern inside."""
    filler = secrets.token_bytes(size)
    return b"\x1aE\xdf\xa3" + filler[: size // 2] + marker + filler[size // 2 :]


def schedule_ketamine(client, ago: timedelta, zone: str = ZONE) -> None:
    """The patient adds a ketamine session that began `ago`, typed in their own zone."""
    client.set_cookie("tz", zone)
    began = (datetime.now(ZoneInfo(zone)) - ago).strftime("%Y-%m-%dT%H:%M:%S")
    response = post(
        client,
        "/sessions/new",
        {"kind": "ketamine", "scheduled_at": began},
        token_from="/sessions/new",
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:300]


def share_captures_by_default(client, *, seal: bool = True) -> None:
    data = {"kinds": ["capture", "reflection"], "password": PASSWORD}
    if seal:
        data["cooling_off"] = "1"
    response = post(client, "/account/sharing", data, token_from="/account/sharing")
    assert response.status_code == 200


def capture(client, *, text="", feelings=(), audio=None, kind="audio/webm", client_id=None):
    data = {
        "csrf_token": csrf_token(client, "/capture"),
        "client_id": str(client_id or uuid.uuid4()),
        "text": text,
        "feeling": list(feelings),
    }
    if audio is not None:
        data["memo"] = (io.BytesIO(audio), "memo.webm", kind)
    return client.post("/capture", data=data, content_type="multipart/form-data")


def captured(client, **kw) -> uuid.UUID:
    response = capture(client, **kw)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return uuid.UUID(re.search(r"/entries/([0-9a-f-]{36})$", response.headers["Location"])[1])


def next_day(app, entry_id) -> None:
    """The seal on `entry_id` ends (the clock moves on to the next day)."""
    with app.app_context(), Session(db.engine()) as session:
        session.exec(
            update(CoolingOff)
            .where(CoolingOff.entry_id == entry_id)
            .values(until=utcnow() - timedelta(minutes=1))
        )
        session.commit()


# --- the memo: sealed, played back in ranges, never stored in clear ----------------------------


def test_the_memo_words_and_feelings_are_ciphertext_only_in_the_database_and_logs(
    app, database, caplog, patient, therapist
):
    capture_every_log(caplog)
    words = f"kjc{secrets.token_hex(12)}"
    marker = f"kjm{secrets.token_hex(12)}"
    audio = audio_with(marker.encode(), size=200_000)
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)
    entry_id = captured(as_patient, text=words, feelings=["tearful", "open"], audio=audio)

    page = as_patient.get(f"/entries/{entry_id}").get_data(as_text=True)
    assert words in page and "Tearful" in page and f"/entries/{entry_id}/memo" in page
    played = as_patient.get(f"/entries/{entry_id}/memo")
    assert played.status_code == 200 and played.data == audio

    stored, logged = stored_bytes(database), logged_bytes(caplog)
    leaks = {
        (value, where): found
        for value in (words, marker)
        for where, haystack in (("database", stored), ("log", logged))
        if (found := hits(haystack, value))
    }
    assert leaks == {}
    assert audio[:64] not in stored and audio[-64:] not in stored
    with app.app_context(), Session(db.engine()) as session:
        memo = session.get(EntryMemo, entry_id)
        assert memo is not None and len(memo.audio_blob) >= len(audio)


def test_a_large_memo_never_touches_the_disk_in_clear(app, patient, tmp_path, monkeypatch):
    """Werkzeug spools uploads over 500 KB to a temporary file; ours stay in memory."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    marker = f"kjm{secrets.token_hex(12)}".encode()
    as_patient = client_for(app, patient)
    captured(as_patient, audio=audio_with(marker, size=3 * 1024 * 1024))
    assert list(tmp_path.iterdir()) == []


def test_the_memo_is_served_in_byte_ranges_and_never_stored_by_the_browser(app, patient):
    as_patient = client_for(app, patient)
    audio = audio_with(b"range-marker", size=10_000)
    entry_id = captured(as_patient, audio=audio, kind="audio/ogg")
    url = f"/entries/{entry_id}/memo"

    whole = as_patient.get(url)
    assert whole.status_code == 200
    assert whole.data == audio
    assert whole.mimetype == "audio/ogg"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert "no-store" in whole.headers["Cache-Control"]

    part = as_patient.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.data == audio[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(audio)}"
    assert "no-store" in part.headers["Cache-Control"]

    start = as_patient.get(url, headers={"Range": "bytes=0-"})  # what an <audio> asks first
    assert start.status_code == 206 and start.data == audio

    tail = as_patient.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.data == audio[-16:]

    outside = as_patient.get(url, headers={"Range": f"bytes={len(audio) + 5}-"})
    assert outside.status_code == 416
    assert outside.headers["Content-Range"] == f"bytes */{len(audio)}"


def test_the_therapist_plays_a_shared_memo_and_the_read_is_in_the_access_log(
    app, patient, therapist
):
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)  # no session today: nothing is held
    audio = audio_with(b"shared")
    entry_id = captured(as_patient, audio=audio, feelings=["calm"])

    as_therapist = client_for(app, therapist)
    played = as_therapist.get(f"/entries/{entry_id}/memo", headers={"Range": "bytes=0-9"})
    assert played.status_code == 206 and played.data == audio[:10]
    with app.app_context(), Session(db.engine()) as session:
        reads = session.exec(
            select(AuditEvent).where(
                AuditEvent.action == "read",
                AuditEvent.actor_id == therapist.id,
                AuditEvent.entry_id == entry_id,
            )
        ).all()
    assert len(reads) == 1
    log = as_patient.get(f"/entries/{entry_id}/log").get_data(as_text=True)
    assert "Dr. Tess Ward" in log


def test_the_memo_survives_a_revocation_under_the_new_data_key(app, patient, therapist):
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)
    audio = audio_with(b"revoked")
    entry_id = captured(as_patient, audio=audio)
    response = post(
        as_patient,
        f"/entries/{entry_id}/revoke",
        {"reader_id": str(therapist.id)},
        token_from=f"/entries/{entry_id}",
    )
    assert response.status_code == 303
    assert as_patient.get(f"/entries/{entry_id}/memo").data == audio
    assert client_for(app, therapist).get(f"/entries/{entry_id}/memo").status_code == 404
    with app.app_context(), Session(db.engine()) as session:
        assert session.get(EntryMemo, entry_id).version == session.get(Entry, entry_id).version


# --- the form -------------------------------------------------------------------------------------


def test_a_memo_over_the_limit_gets_a_clear_413_and_nothing_is_kept(make_app, patient):
    app = make_app(MEMO_MAX_BYTES=50_000)
    as_patient = client_for(app, patient)
    for size in (50_001, 2_000_000):  # just over; far over (past the request's own cap)
        response = capture(as_patient, text="kept?", audio=b"x" * size)
        assert response.status_code == 413
        page = response.get_data(as_text=True)
        assert "voice memo is too long" in page and "Nothing was saved" in page
        assert "Need help now?" in page
    with app.app_context(), Session(db.engine()) as session:
        assert session.exec(select(Entry)).all() == []


def test_the_default_limit_is_five_megabytes(app, patient):
    as_patient = client_for(app, patient)
    assert capture(as_patient, audio=b"x" * (5 * 1024 * 1024 + 1)).status_code == 413
    assert capture(as_patient, audio=b"x" * (5 * 1024 * 1024)).status_code == 303


def test_an_empty_capture_or_a_file_that_is_not_sound_is_422_with_the_words_kept(app, patient):
    as_patient = client_for(app, patient)
    empty = capture(as_patient)
    assert empty.status_code == 422
    assert "Tap how you feel" in empty.get_data(as_text=True)
    wrong = capture(as_patient, text="my words", audio=b"<html>", kind="text/html")
    assert wrong.status_code == 422
    page = wrong.get_data(as_text=True)
    assert "not a sound recording" in page and "my words" in page


def test_capturing_and_deciding_need_a_csrf_token(app, patient):
    as_patient = client_for(app, patient)
    bare = as_patient.post("/capture", data={"text": "no token", "client_id": str(uuid.uuid4())})
    assert bare.status_code == 400
    entry_id = captured(as_patient, text="mine")
    decide = as_patient.post(f"/capture/{entry_id}/decide", data={"choice": "delete"})
    assert decide.status_code == 400
    assert as_patient.get(f"/entries/{entry_id}").status_code == 200


def test_the_capture_page_works_without_javascript_and_may_use_the_microphone(app, patient):
    as_patient = client_for(app, patient)
    page = as_patient.get("/capture")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in html
    assert re.search(r'<input id="f-memo" name="memo" type="file" accept="audio/\*" capture>', html)
    assert html.count('name="feeling"') == 6
    assert "microphone=(self)" in page.headers["Permissions-Policy"]
    assert "microphone=()" in as_patient.get("/journal").headers["Permissions-Policy"]


def test_a_retried_capture_is_kept_once_even_sent_in_parallel(app, patient):
    client_id = uuid.uuid4()
    audio = audio_with(b"once")
    with serving(app) as url:
        web = WebClient(url)
        web.login(patient)
        token = web.token("/capture")

        def send(_):
            return web.post(
                "/capture",
                {"client_id": str(client_id), "text": "once", "feeling": ["light"]},
                token=token,
                files={"memo": ("memo.webm", audio, "audio/webm")},
            )

        responses = in_parallel(6, send)
    assert [getattr(r, "status_code", r) for r in responses] == [303] * 6
    assert len({r.headers["Location"] for r in responses}) == 1
    with app.app_context(), Session(db.engine()) as session:
        assert len(session.exec(select(Entry).where(Entry.author_id == patient.id)).all()) == 1
        assert len(session.exec(select(EntryMemo)).all()) == 1


# --- who may play, decide and capture -------------------------------------------------------------


@pytest.mark.parametrize(
    "who", ["therapist", "supporter", "stranger_patient", "other_therapist", "stranger_supporter"]
)
def test_whoever_was_not_given_the_entry_gets_404_for_its_memo_and_its_choice(
    app, request, patient, therapist, who
):
    as_patient = client_for(app, patient)
    schedule_ketamine(as_patient, timedelta(hours=2))
    entry_id = captured(as_patient, audio=audio_with(b"private"))
    next_day(app, entry_id)  # decidable now, by its author only
    client = client_for(app, request.getfixturevalue(who))
    token = csrf_token(client, "/account")
    missing = uuid.uuid4()
    for path in (f"/entries/{entry_id}/memo", f"/entries/{missing}/memo"):
        assert client.get(path, headers={"Range": "bytes=0-"}).status_code == 404
    for target in (entry_id, missing):
        response = client.post(
            f"/capture/{target}/decide", data={"csrf_token": token, "choice": "private"}
        )
        assert response.status_code == 404
    if who != "stranger_patient":
        assert client.get("/capture").status_code == 404  # capturing is for patients
    assert as_patient.get(f"/entries/{entry_id}/memo").status_code == 200


def test_anonymous_visitors_get_404_for_a_memo_and_the_login_page_for_capture(app, patient):
    as_patient = client_for(app, patient)
    entry_id = captured(as_patient, audio=audio_with(b"anon"))
    anonymous = app.test_client()
    assert anonymous.get(f"/entries/{entry_id}/memo").status_code == 404
    assert anonymous.get("/capture").status_code == 302
    token = csrf_token(anonymous, "/login")
    decide = anonymous.post(f"/capture/{entry_id}/decide", data={"csrf_token": token})
    assert decide.status_code == 404


def test_a_memo_without_a_recording_is_404_like_any_missing_thing(app, patient):
    as_patient = client_for(app, patient)
    entry_id = captured(as_patient, text="only words")
    assert as_patient.get(f"/entries/{entry_id}/memo").status_code == 404


# --- the cooling-off seal -----------------------------------------------------------------------


def test_a_capture_11h59_after_the_session_is_held_from_everyone(app, patient, therapist):
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)
    schedule_ketamine(as_patient, timedelta(hours=11, minutes=59))
    home = as_patient.get("/journal").get_data(as_text=True)
    assert "After your session" in home and "/capture" in home
    words = f"kjc{secrets.token_hex(8)}"
    entry_id = captured(as_patient, text=words, audio=audio_with(b"held"))

    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 404
    assert as_therapist.get(f"/entries/{entry_id}/memo").status_code == 404
    patient_page = as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)
    assert "1 item from after a ketamine session is " + SEALED in patient_page
    assert words not in patient_page
    # Not yet the next day: no choice offered, none accepted.
    assert "From yesterday" not in as_patient.get("/journal").get_data(as_text=True)
    early = post(
        as_patient, f"/capture/{entry_id}/decide", {"choice": "share"}, token_from="/journal"
    )
    assert early.status_code == 404


def test_a_capture_12h01_after_the_session_follows_the_usual_default(app, patient, therapist):
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)
    schedule_ketamine(as_patient, timedelta(hours=12, minutes=1))
    assert "After your session" not in as_patient.get("/journal").get_data(as_text=True)
    entry_id = captured(as_patient, text="shared at once", audio=audio_with(b"free"))
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 200
    assert as_therapist.get(f"/entries/{entry_id}/memo").status_code == 200
    assert SEALED not in as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)


def test_the_seal_counts_hours_from_the_start_in_the_patients_zone(app, patient, therapist):
    """The same wall-clock time typed in another zone is another instant: typed as 11 h 59
    ago in New York while the patient's zone is Auckland, the session lies outside."""
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)
    # Typed by someone whose browser says New York, the time means 11:59 ago there and now.
    schedule_ketamine(as_patient, timedelta(hours=11, minutes=59), zone="America/New_York")
    entry_id = captured(as_patient, text="held in New York too")
    assert client_for(app, therapist).get(f"/entries/{entry_id}").status_code == 404


def test_a_reflection_written_in_the_window_is_held_even_with_its_reader_ticked(
    app, patient, therapist
):
    as_patient = client_for(app, patient)
    schedule_ketamine(as_patient, timedelta(hours=1))
    response = post(
        as_patient,
        "/entries/new",
        {
            "kind": "reflection",
            "text": "raw",
            "client_id": str(uuid.uuid4()),
            "share": [str(therapist.id)],
        },
        token_from="/entries/new?kind=reflection",
    )
    assert response.status_code == 303
    entry_id = response.headers["Location"].rsplit("/", 1)[1]
    assert client_for(app, therapist).get(f"/entries/{entry_id}").status_code == 404
    next_day(app, uuid.UUID(entry_id))
    home = as_patient.get("/journal").get_data(as_text=True)
    assert FROM_YESTERDAY in home
    assert re.search(rf'name="share" value="{therapist.id}" checked', home)  # the one ticked


def test_the_patient_may_turn_the_seal_off(app, patient, therapist):
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient, seal=False)
    schedule_ketamine(as_patient, timedelta(hours=1))
    entry_id = captured(as_patient, text="share it now", feelings=["open"])
    assert client_for(app, therapist).get(f"/entries/{entry_id}").status_code == 200


def test_the_clinic_sets_the_hours(make_app, patient, therapist):
    app = make_app(COOLING_OFF_HOURS=2)
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)
    schedule_ketamine(as_patient, timedelta(hours=2, minutes=1))
    entry_id = captured(as_patient, text="after two hours")
    assert client_for(app, therapist).get(f"/entries/{entry_id}").status_code == 200


# --- the next day: share, keep private, delete --------------------------------------------------


def test_the_next_day_the_patient_shares_and_the_therapist_plays_it(app, patient, therapist):
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)
    schedule_ketamine(as_patient, timedelta(hours=3))
    audio = audio_with(b"tomorrow")
    entry_id = captured(as_patient, text="what came up", feelings=["heavy"], audio=audio)
    next_day(app, entry_id)

    home = as_patient.get("/journal").get_data(as_text=True)
    assert FROM_YESTERDAY in home and "what came up" in home and "Heavy" in home
    assert re.search(rf'name="share" value="{therapist.id}" checked', home)
    shared = post(
        as_patient,
        f"/capture/{entry_id}/decide",
        {"choice": "share", "share": [str(therapist.id)]},
        token_from="/journal",
    )
    assert shared.status_code == 303
    assert "From yesterday" not in as_patient.get("/journal").get_data(as_text=True)

    as_therapist = client_for(app, therapist)
    assert "what came up" in as_therapist.get(f"/entries/{entry_id}").get_data(as_text=True)
    assert as_therapist.get(f"/entries/{entry_id}/memo").data == audio
    assert SEALED not in as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)


def test_the_next_day_the_patient_keeps_it_private(app, patient, therapist):
    as_patient = client_for(app, patient)
    share_captures_by_default(as_patient)
    schedule_ketamine(as_patient, timedelta(hours=3))
    entry_id = captured(as_patient, text="just mine")
    next_day(app, entry_id)
    kept = post(
        as_patient, f"/capture/{entry_id}/decide", {"choice": "private"}, token_from="/journal"
    )
    assert kept.status_code == 303
    assert as_patient.get(f"/entries/{entry_id}").status_code == 200
    as_therapist = client_for(app, therapist)
    assert as_therapist.get(f"/entries/{entry_id}").status_code == 404
    assert SEALED not in as_therapist.get(f"/patients/{patient.id}").get_data(as_text=True)


def test_the_next_day_the_patient_deletes_it_with_its_memo(app, patient):
    as_patient = client_for(app, patient)
    schedule_ketamine(as_patient, timedelta(hours=3))
    entry_id = captured(as_patient, text="let it go", audio=audio_with(b"gone"))
    next_day(app, entry_id)
    gone = post(
        as_patient, f"/capture/{entry_id}/decide", {"choice": "delete"}, token_from="/journal"
    )
    assert gone.status_code == 303
    assert as_patient.get(f"/entries/{entry_id}").status_code == 404
    assert as_patient.get(f"/entries/{entry_id}/memo").status_code == 404
    with app.app_context(), Session(db.engine()) as session:
        assert session.get(EntryMemo, entry_id) is None
        assert session.get(CoolingOff, entry_id) is None


def test_the_offline_capture_page_is_public_and_holds_no_token_and_no_name(app, patient):
    anonymous = app.test_client().get("/capture-offline")
    assert anonymous.status_code == 200
    page = anonymous.get_data(as_text=True)
    assert 'action="/capture"' in page and "data-offline-form" in page
    assert "csrf_token" not in page and patient.name not in page
    assert 'name="memo"' in page and 'name="feeling"' in page
    logged_in = app.test_client()
    login(logged_in, patient)
    online = logged_in.get("/capture-offline")
    assert online.status_code == 302 and online.headers["Location"] == "/capture"


def test_the_downloaded_journal_carries_each_voice_memo_beside_its_entry(app, patient):
    client = client_for(app, patient)
    audio = audio_with(b"MEMO-IN-THE-ZIP")
    entry_id = captured(client, text="By the water", feelings=["calm"], audio=audio)
    ogg = captured(client, audio=audio_with(b"SECOND"), kind="audio/ogg")
    captured(client, text="Words only")
    download = post(client, "/account/export", {"password": PASSWORD}, token_from="/account/export")
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.get_data())) as archive:
        memos = sorted(name for name in archive.namelist() if name.startswith("memos/"))
        assert memos == sorted([f"memos/{entry_id}.webm", f"memos/{ogg}.ogg"])
        assert archive.read(f"memos/{entry_id}.webm") == audio
        page = archive.read("journal.html").decode()
        assert f'<audio controls preload="none" src="memos/{entry_id}.webm">' in page
        assert "Felt: calm" in page and "By the water" in page
