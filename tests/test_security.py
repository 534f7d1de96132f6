"""Security promises that hold for the whole app: default deny over the whole url_map, the
authorization matrix, security headers, CSP-clean templates, CSRF, escaping, error pages, the
crisis page and the PWA files (DESIGN §4, §6, §10)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import PASSWORD, csrf_token, login, make_user, post
from flask import Blueprint
from sqlmodel import Session, select
from werkzeug.exceptions import HTTPException

from kapjournal import db, i18n, policy
from kapjournal.models import Invitation
from kapjournal.services import accounts

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
ALL_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
ARGUMENT = re.compile(r"<(?:([a-z]+)(?:\([^)]*\))?:)?(\w+)>")
DESIGN_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
# The header's link: its words may sit beside an icon (an <svg> the screen reader skips).
HELP_LINK = re.compile(
    r'<a\b[^>]*\bhref="/help"[^>]*>'
    r"(?:\s|<svg\b.*?</svg>|<span>)*Need help now\?(?:</span>)?\s*</a>",
    re.S,
)
# What the CSP forbids, in a template or a rendered page.
FORBIDDEN_MARKUP = {
    "inline <script>": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "<style> element": re.compile(r"<style\b", re.I),
    "style= attribute": re.compile(r"<[^>]*\sstyle\s*=", re.I),
    "on*= handler": re.compile(r"<[^>]*\son[a-z]+\s*=", re.I),
    "hx-on": re.compile(r"\bhx-on\b|\bdata-hx-on\b", re.I),
    "javascript: URL": re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I),
}


# --- the url_map, as data -------------------------------------------------------------------------


def rules(app):
    return list(app.url_map.iter_rules())


def audiences(app, rule) -> frozenset[str]:
    with app.app_context():
        found = policy.audiences_of(rule.endpoint)
    assert found is not None, f"{rule.endpoint} has no audience"
    return found


def fill(rule) -> tuple[str, bool]:
    """A concrete URL for `rule` (a random uuid4 for uuid arguments, a random string for the
    rest) and whether it names an object."""
    names_object = False

    def value(match: re.Match) -> str:
        nonlocal names_object
        if match.group(1) == "uuid":
            names_object = True
            return str(uuid.uuid4())
        return secrets.token_urlsafe(12)

    return ARGUMENT.sub(value, rule.rule), names_object


def may_enter(persona, allowed: frozenset[str], *, is_owner: bool = False) -> bool:
    """The policy of DESIGN §4, restated: whom an audience admits (persona None: anonymous)."""
    if policy.PUBLIC in allowed:
        return True
    if persona is None:
        return False
    return (
        policy.AUTHENTICATED in allowed
        or persona.role in allowed
        or ("owner" in allowed and is_owner)
    )


def send(client, method: str, path: str, *, token: str | None = None, **kw):
    data = {"csrf_token": token} if token and method in UNSAFE else None
    return client.open(path, method=method, data=data, **kw)


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and (
        urlparse(response.headers.get("Location", "")).path == "/login"
    )


def logged_in_client(app, persona):
    client = app.test_client()
    login(client, persona)
    return client


# --- default deny ---------------------------------------------------------------------------------


def test_every_endpoint_declares_its_audience(app):
    missing = []
    with app.app_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            view = app.view_functions[rule.endpoint]
            declared = getattr(view, "policy_audiences", None)
            if not declared or policy.audiences_of(rule.endpoint) != declared:
                missing.append(rule.endpoint)
    assert missing == []


def test_route_without_a_declared_audience_is_404_for_everyone(make_app):
    app = make_app()
    reached = []
    throwaway = Blueprint("throwaway", __name__)

    @throwaway.route("/throwaway", methods=["GET", "POST"])
    def undeclared():
        reached.append(True)
        return "you should not see this"

    app.register_blueprint(throwaway)
    user = make_user(app, role="patient", email="p@example.org", name="Pia")

    anonymous = app.test_client()
    assert anonymous.get("/throwaway").status_code == 404
    assert post(anonymous, "/throwaway").status_code == 404
    client = logged_in_client(app, user)
    response = client.get("/throwaway")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)
    assert post(client, "/throwaway", token_from="/account").status_code == 404
    assert reached == []


# --- the authorization matrix over the whole url_map ----------------------------------------------


def test_anonymous_walk_of_the_url_map(app, patient):
    client = app.test_client()
    token = csrf_token(client, "/login")
    with app.app_context(), Session(db.engine()) as session:
        users_before = accounts.user_count(session=session)
    problems = []
    for rule in rules(app):
        allowed = audiences(app, rule)
        for method in sorted(rule.methods):
            path, names_object = fill(rule)
            bare = send(client, method, path)
            with_token = send(client, method, path, token=token)
            for label, response in (("no token", bare), ("token", with_token)):
                if response.status_code >= 500:
                    problems.append((method, rule.rule, label, response.status_code))
            if method in UNSAFE and bare.status_code not in (400, 404):
                problems.append((method, rule.rule, "no CSRF token", bare.status_code))
            if may_enter(None, allowed):
                continue
            for label, response in (("no token", bare), ("token", with_token)):
                if method in UNSAFE and label == "no token":
                    continue
                ok = response.status_code == 404 if names_object else is_login_redirect(response)
                if not ok:
                    problems.append((method, rule.rule, label, response.status_code))
    assert problems == []
    with app.app_context(), Session(db.engine()) as session:
        assert accounts.user_count(session=session) == users_before  # /setup stayed shut


@pytest.mark.parametrize("who", ["patient", "supporter", "stranger_patient", "other_therapist"])
def test_personas_get_404_where_their_role_may_not_go(app, request, therapist, who):
    persona = request.getfixturevalue(who)
    client = logged_in_client(app, persona)
    token = csrf_token(client, "/account")
    problems = []
    checked = set()
    for rule in rules(app):
        if may_enter(persona, audiences(app, rule)):
            continue
        for method in sorted(rule.methods):
            path, _ = fill(rule)
            response = send(client, method, path, token=token)
            checked.add((method, rule.rule))
            if response.status_code != 404:
                problems.append((method, rule.rule, response.status_code))
    assert problems == []
    if persona.role != "therapist":  # the therapist-only pages were among those tried
        assert {("GET", "/invitations"), ("POST", "/invitations")} <= checked
        assert ("POST", "/invitations/<uuid:invitation_id>/cancel") in checked
    assert client.get("/account").status_code == 200  # still logged in: nothing was done


def test_random_object_ids_are_404_for_everyone_allowed_in(app, patient, therapist, supporter):
    for persona in (patient, therapist, supporter):
        client = logged_in_client(app, persona)
        token = csrf_token(client, "/account")
        for rule in rules(app):
            path, names_object = fill(rule)
            if not names_object or not may_enter(persona, audiences(app, rule)):
                continue
            # OPTIONS is answered by Flask itself with the Allow header, the same for any id.
            for method in rule.methods - {"OPTIONS"}:
                response = send(client, method, path, token=token)
                assert response.status_code == 404, (persona.role, method, rule.rule)


def test_methods_a_route_does_not_allow_answer_404(app, patient):
    adapter = app.url_map.bind("localhost")
    anonymous = app.test_client()
    client = logged_in_client(app, patient)
    token = csrf_token(client, "/account")
    problems = []
    for rule in rules(app):
        path, _ = fill(rule)
        allowed = adapter.allowed_methods(path)
        for method in ALL_METHODS:
            if method in allowed:
                continue
            for who, response in (
                ("anonymous", send(anonymous, method, path)),
                ("patient", send(client, method, path, token=token)),
            ):
                if response.status_code != 404:
                    problems.append((who, method, path, response.status_code))
    assert problems == []


# --- security headers on every page ---------------------------------------------------------------


def get_pages(app, client) -> dict[str, object]:
    """Every GET route without an object id, an unknown page, an error page and a static
    file, fetched with `client` (redirects not followed)."""
    paths = {"/does-not-exist", "/static/css/app.css", f"/invite/{secrets.token_urlsafe(8)}"}
    for rule in rules(app):
        path, names_object = fill(rule)
        if "GET" in rule.methods and not names_object and rule.endpoint != "static":
            paths.add(path)
    return {path: client.get(path) for path in sorted(paths)}


def parse_csp(value: str) -> dict[str, list[str]]:
    directives = {}
    for part in value.split(";"):
        if part.strip():
            name, *sources = part.split()
            assert name not in directives, f"{name} twice"
            directives[name] = sources
    return directives


def check_headers(path, response, *, production=False) -> list[str]:
    problems = []
    headers = response.headers
    csp = parse_csp(headers.get("Content-Security-Policy", ""))
    for name, sources in DESIGN_CSP.items():
        if csp.get(name) != sources:
            problems.append(f"{path}: CSP {name} is {csp.get(name)}")
    for name, sources in csp.items():
        if name not in DESIGN_CSP and sources not in (["'self'"], ["'none'"]):
            problems.append(f"{path}: CSP {name} {sources} is looser than default-src")
    if re.search(r"unsafe-(inline|eval|hashes)", headers.get("Content-Security-Policy", "")):
        problems.append(f"{path}: unsafe-* in CSP")
    if headers.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"{path}: no nosniff")
    # Never a URL (invitation token, object id) in a Referer.
    if headers.get("Referrer-Policy") != "no-referrer":
        problems.append(f"{path}: Referrer-Policy {headers.get('Referrer-Policy')}")
    vary = {v.strip().lower() for item in headers.getlist("Vary") for v in item.split(",")}
    if "hx-request" not in vary:
        problems.append(f"{path}: Vary {vary}")
    if ("Strict-Transport-Security" in headers) != production:
        problems.append(f"{path}: HSTS {headers.get('Strict-Transport-Security')}")
    return problems


def test_security_headers_on_every_page_anonymous_and_logged_in(app, patient, therapist):
    problems = []
    for client in (app.test_client(), logged_in_client(app, patient)):
        for path, response in get_pages(app, client).items():
            assert response.status_code < 500, path
            problems += check_headers(path, response)
    assert problems == []


def test_every_page_for_a_logged_in_user_is_no_store(app, patient, therapist):
    adapter = app.url_map.bind("localhost")
    problems = []
    for persona in (patient, therapist):
        client = logged_in_client(app, persona)
        for path, response in get_pages(app, client).items():
            try:
                endpoint, _ = adapter.match(path)
            except HTTPException:  # unknown page: an error page, also personal (the nav)
                endpoint = None
            with app.app_context():
                public = endpoint is not None and policy.PUBLIC in policy.audiences_of(endpoint)
            no_store = "no-store" in response.headers.get("Cache-Control", "")
            if not public and not no_store:
                problems.append((persona.role, path, response.headers.get("Cache-Control")))
            html = response.mimetype == "text/html"
            if html and endpoint not in {"pwa.help", "pwa.offline"} and not no_store:
                problems.append((persona.role, path, "HTML without no-store"))
    assert problems == []


def test_hsts_only_in_production(make_app):
    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    # Production needs Redis and a base URL; the pages visited here are GETs, which count
    # against no limit, so no Redis server has to answer (a closed port).
    app = make_app(
        PRODUCTION=True,
        SECRET_KEY="s" * 48,
        KEKS=f"k1:{kek}",
        REDIS_URL="redis://127.0.0.1:9/0",
        BASE_URL="https://journal.example.org",
    )
    client = app.test_client()
    problems = []
    for path, response in get_pages(app, client).items():
        problems += check_headers(path, response, production=True)
        hsts = response.headers.get("Strict-Transport-Security", "")
        max_age = re.search(r"max-age=(\d+)", hsts)
        if not max_age or int(max_age.group(1)) < 31536000:
            problems.append(f"{path}: HSTS {hsts}")
    assert problems == []
    assert "Strict-Transport-Security" not in make_app().test_client().get("/login").headers


# --- markup the CSP would block -------------------------------------------------------------------


def forbidden_markup(text: str) -> list[str]:
    return [name for name, pattern in FORBIDDEN_MARKUP.items() if pattern.search(text)]


def test_templates_have_no_inline_script_style_or_handlers():
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert templates
    found = {str(t.relative_to(TEMPLATES)): forbidden_markup(t.read_text()) for t in templates}
    assert {name: problems for name, problems in found.items() if problems} == {}


def test_rendered_pages_have_no_inline_script_style_or_handlers(app, patient, therapist):
    clients = [app.test_client(), logged_in_client(app, patient), logged_in_client(app, therapist)]
    created = post(clients[2], "/invitations", {"label": "Jo"}, token_from="/invitations")
    assert created.status_code == 201
    problems = {}
    for client in clients:
        pages = {**get_pages(app, client), "invitation created": created}
        for path, response in pages.items():
            if response.mimetype == "text/html":
                found = forbidden_markup(response.get_data(as_text=True))
                if found:
                    problems[path] = found
    assert problems == {}


# --- CSRF -----------------------------------------------------------------------------------------


def assert_csrf_refused(response):
    assert response.status_code == 400
    assert "This form had expired" in response.get_data(as_text=True)


def test_login_without_csrf_token_is_refused(client, patient):
    client.get("/login")
    response = client.post("/login", data={"email": patient.email, "password": PASSWORD})
    assert_csrf_refused(response)
    assert not any(c.key.endswith("kj_session") for c in client._cookies.values())
    assert is_login_redirect(client.get("/home"))


def test_new_invitation_without_csrf_token_is_refused(app, as_therapist):
    response = as_therapist.post("/invitations", data={"label": "Csrf"})
    assert_csrf_refused(response)
    with app.app_context(), Session(db.engine()) as session:
        assert session.exec(select(Invitation)).first() is None


def test_password_change_without_csrf_token_is_refused(app, patient, as_patient):
    new = "a completely different passphrase"
    response = as_patient.post(
        "/account/password", data={"current": PASSWORD, "new": new, "new2": new}
    )
    assert_csrf_refused(response)
    assert as_patient.get("/account").status_code == 200
    fresh = app.test_client()
    refused = post(fresh, "/login", {"email": patient.email, "password": new})
    assert refused.status_code == 422
    login(fresh, patient)  # the old password still works


# --- escaping -------------------------------------------------------------------------------------

NASTY = "<script>alert(1)</script>{{7*7}}"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}"


def assert_escaped(response):
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert ESCAPED in body
    assert "<script>alert(1)" not in body
    assert "{{7*7}}" in body


@pytest.mark.parametrize("role", ["therapist", "support"])
def test_a_users_name_is_escaped_on_their_home_page(app, role):
    user = make_user(app, role=role, email="nasty@example.org", name=NASTY)
    assert_escaped(logged_in_client(app, user).get("/home"))


def test_a_patients_name_is_escaped_wherever_it_is_shown(app, therapist, as_therapist):
    nasty = make_user(
        app, role="patient", email="nasty@example.org", name=NASTY, invited_by=therapist
    )
    assert_escaped(logged_in_client(app, nasty).get("/account"))
    assert_escaped(as_therapist.get("/home"))


def test_form_input_is_escaped_when_shown_again(client):
    response = post(client, "/login", {"email": '"><script>alert(1)</script>', "password": "x"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in body
    assert "<script>alert(1)" not in body


# --- error pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "patient"])
def test_404_is_a_full_page_with_the_layout(app, request, who):
    client = (
        app.test_client()
        if who == "anonymous"
        else logged_in_client(app, request.getfixturevalue(who))
    )
    response = client.get("/no/such/page")
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert '<main id="main"' in body
    assert "Page not found" in body
    assert HELP_LINK.search(body)
    boosted = client.get("/no/such/page", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert boosted.status_code == 404
    assert "<html" in boosted.get_data(as_text=True)


@pytest.mark.parametrize("who", ["anonymous", "patient"])
def test_404_for_htmx_is_a_fragment_retargeted_to_main(app, request, who):
    client = (
        app.test_client()
        if who == "anonymous"
        else logged_in_client(app, request.getfixturevalue(who))
    )
    response = client.get("/no/such/page", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "<html" not in body
    assert "<main" not in body
    assert "Page not found" in body
    assert response.headers["HX-Retarget"] == "#main"


def test_405_looks_like_404(client):
    response = client.get("/logout")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)
    assert "Allow" not in response.headers


@pytest.mark.parametrize("htmx", [False, True])
def test_422_keeps_what_the_user_typed(client, patient, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    response = post(
        client, "/login", {"email": patient.email, "password": "wrong password!"}, headers=headers
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'value="{patient.email}"' in body
    assert "wrong password!" not in body
    assert "do not match" in body


def test_422_on_the_invitation_form_keeps_the_label(as_therapist):
    response = post(as_therapist, "/invitations", {"label": "L" * 81}, token_from="/invitations")
    assert response.status_code == 422
    assert f'value="{"L" * 81}"' in response.get_data(as_text=True)


# --- crisis page ----------------------------------------------------------------------------------


def test_help_needs_no_login_and_lists_the_crisis_lines(client):
    response = client.get("/help")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'href="tel:988"' in body
    assert 'href="sms:988"' in body
    assert re.search(r'href="sms:741741[^"]*body=HOME"', body)
    assert "text HOME" in body
    assert 'href="tel:911"' in body
    assert re.search(r"last reviewed \d{1,2} [A-Z][a-z]+ 20\d\d", body)


def test_help_lists_the_clinics_own_lines(make_app):
    app = make_app(CRISIS_LINES="Clinic on-call: +1 555 0100")
    body = app.test_client().get("/help").get_data(as_text=True)
    assert "Clinic on-call" in body
    assert 'href="tel:+15550100"' in body
    assert "+1 555 0100" in body


def test_every_page_links_to_help(app, patient, therapist):
    problems = []
    for client in (app.test_client(), logged_in_client(app, patient)):
        client.get("/home")
        for path, response in get_pages(app, client).items():
            if response.status_code >= 300 and response.status_code < 400:
                continue
            if response.mimetype == "text/html" and not HELP_LINK.search(
                response.get_data(as_text=True)
            ):
                problems.append(path)
    assert problems == []


# --- PWA ------------------------------------------------------------------------------------------


def test_manifest_is_complete_and_its_icons_exist(client):
    response = client.get("/manifest.webmanifest")
    assert response.status_code == 200
    manifest = json.loads(response.get_data(as_text=True))
    for key in ("name", "short_name", "start_url", "theme_color"):
        assert manifest.get(key), key
    assert manifest["display"] == "standalone"
    icons = manifest["icons"]
    sizes = {size for icon in icons for size in icon["sizes"].split()}
    assert {"192x192", "512x512"} <= sizes
    assert any("maskable" in icon.get("purpose", "").split() for icon in icons)
    shortcuts = {s["name"]: s["url"] for s in manifest["shortcuts"]}
    assert "New reflection" in shortcuts
    assert shortcuts["Need help now"] == "/help"
    all_icons = icons + [i for s in manifest["shortcuts"] for i in s.get("icons", [])]
    for icon in all_icons:
        image = client.get(icon["src"])
        assert image.status_code == 200, icon["src"]
        assert image.mimetype == "image/png", icon["src"]
        assert image.data.startswith(b"\x89PNG"), icon["src"]


def test_service_worker_is_served_from_the_root_scope(client):
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response.mimetype in ("text/javascript", "application/javascript")
    assert response.headers["Service-Worker-Allowed"] == "/"


def test_everything_the_service_worker_precaches_exists(client):
    source = client.get("/sw.js").get_data(as_text=True)

    def array(name: str) -> list[str]:
        found = re.search(rf"const {name} = \[(.*?)\]", source, re.S).group(1)
        return re.findall(r'"([^"\s]*)"', found)

    # What sw.js computes: each shell page in each language (English plain, the others with
    # ?lang=), the scripts' catalogue of each other language, and the static files.
    langs, shell = array("LANGS"), ["/offline", "/help", *array("WRITE")]
    assert langs[0] == "en" and set(langs) == set(i18n.LANGUAGES)
    assert re.search(r'const SHELL = \["/offline", "/help"\]\.concat\(WRITE\)', source)
    pages = [
        page if lang == "en" else f"{page}{'&' if '?' in page else '?'}lang={lang}"
        for lang in langs
        for page in shell
    ]
    listed = array("PRECACHE") + [f"/i18n/{lang}.json" for lang in langs[1:]] + pages
    assert "/offline?lang=es" in listed and "/help" in listed and "/static/css/app.css" in listed
    for path in listed:
        response = client.get(path)
        assert response.status_code == 200, path


def test_offline_page_needs_no_login(client):
    response = client.get("/offline")
    assert response.status_code == 200
    assert HELP_LINK.search(response.get_data(as_text=True))


def test_https_form_posts_work_without_a_referer(make_app, patient):
    """With no Referer sent (Referrer-Policy: no-referrer), a form POST over HTTPS must still
    pass the CSRF check; a missing token must still fail it."""
    app = make_app(COOKIE_SECURE=True)
    client = app.test_client()
    https = {"base_url": "https://localhost"}
    page = client.get("/login", **https).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"email": patient.email, "password": patient.password}
    ok = client.post("/login", data={**form, "csrf_token": token}, **https)
    assert ok.status_code == 303
    refused = app.test_client().post("/login", data=form, **https)
    assert refused.status_code == 400
