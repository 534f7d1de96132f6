"""Command-line tools for the clinic owner: `flask --app app <group> <command>`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlmodel import Session, select

from . import crypto, db
from .models import ClinicSetup, User
from .services import accounts

db_cli = AppGroup("db", help="Database migrations.")
users_cli = AppGroup("users", help="Create and list accounts.")
keys_cli = AppGroup("keys", help="Server key-encryption keys (KEKs).")
audit_cli = AppGroup("audit", help="The access log.")
push_cli = AppGroup("push", help="Web Push (VAPID keys).")
reminders_cli = AppGroup("reminders", help="Reminders on patients' devices.")
sessions_cli = AppGroup("sessions", help="Logged-in devices.")
backup_cli = AppGroup("backup", help="Back up the database, check a backup, restore one.")


@db_cli.command("upgrade")
def db_upgrade():
    """Apply every pending migration, then anchor the access log if it has no anchor yet (a
    database from before anchors: its current end becomes the anchor)."""
    from .services import audit

    db.upgrade(db.engine())
    with Session(db.engine()) as session:
        audit.anchor(session=session)
        session.commit()
    click.echo("Database is up to date.")


@users_cli.command("create")
@click.option("--role", type=click.Choice(["therapist"]), default="therapist", show_default=True)
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--owner", is_flag=True, help="Make this therapist the clinic owner.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(role, email, name, owner, password_stdin):
    """Create a therapist account (patients join through a therapist's invitation)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        password2 = password
    else:
        password = click.prompt("Password", hide_input=True)
        password2 = click.prompt("Repeat the password", hide_input=True)
    with Session(db.engine()) as session:
        try:
            registered = accounts.register(
                session=session,
                email=email,
                name=name,
                password=password,
                password2=password2,
                role=role,
                is_owner=owner,
            )
        except accounts.ValidationError as exc:
            for field, message in exc.errors.items():
                click.echo(f"{field}: {message}", err=True)
            raise SystemExit(1) from None
        if owner and session.get(ClinicSetup, 1) is None:  # the owner exists: /setup closes
            session.add(ClinicSetup())
        session.commit()
    click.echo(f"Created {role} {email}.")
    click.echo("Recovery code (shown once; give it to the therapist to keep safe):")
    click.echo(registered.recovery_code)


@users_cli.command("list")
def users_list():
    """List accounts: role, email, name, created; never a secret."""
    with Session(db.engine()) as session:
        users = session.exec(select(User).order_by(User.created_at)).all()
        for user in users:
            flags = " owner" if user.is_owner else ""
            flags += " disabled" if user.disabled_at else ""
            click.echo(
                f"{user.role:<10} {accounts.email_of(user):<40} {accounts.name_of(user)}"
                f"  (since {user.created_at:%Y-%m-%d}){flags}"
            )


@keys_cli.command("new")
def keys_new():
    """Print a new KEK for KAPJOURNAL_KEKS (add it as `id:key`, keep the old ones)."""
    click.echo(crypto.new_kek_text())


@keys_cli.command("rotate")
def keys_rotate():
    """Re-seal every server-layer blob under the active KEK (no password needed)."""
    ring: crypto.Keyring = current_app.config["KEYRING"]
    from .services import audit, keys

    with Session(db.engine()) as session:
        try:
            count = keys.rotate(session=session, keyring=ring)
        except audit.ChainBroken as exc:
            raise click.ClickException(f"Not rotating: {exc}. See `audit verify`.") from None
        session.commit()
    click.echo(f"Re-sealed {count} values under KEK {ring.active!r}.")


@audit_cli.command("verify")
def audit_verify():
    """Check the access log's hash chain and its anchor (the newest event, kept apart from the
    rows); exit 1 at the first row that does not fit, or if the end does not match."""
    from .services import audit

    with Session(db.engine()) as session:
        report = audit.verify(session=session)
    if report.broken_at is not None:
        click.echo(
            f"The access log is broken at event {report.broken_at} "
            f"(after {report.checked} good events).",
            err=True,
        )
        raise SystemExit(1)
    if report.problem is not None:
        click.echo(f"The access log is not intact: {report.problem}.", err=True)
        raise SystemExit(1)
    click.echo(f"The access log is intact ({report.checked} events).")
    for seq in report.remade_at:
        click.echo(
            f"Warning: at event {seq} the app found the log's anchor missing and made it again "
            "at the log's end then. Events removed from the end before that cannot be told. "
            "Unless this database was upgraded without `flask --app app db upgrade`, treat it "
            "as tampering.",
            err=True,
        )


@click.command("demo")
@with_appcontext
def demo():
    """Seed a demo clinic through the real services and print its logins."""
    if current_app.config["PRODUCTION"]:
        raise click.ClickException("The demo refuses to run in production.")
    from .services import demo as demo_service

    with Session(db.engine()) as session:
        try:
            logins = demo_service.seed(session=session)
        except demo_service.AlreadySeeded as exc:
            raise click.ClickException(str(exc)) from None
        for login in logins:  # role, email, password (and the therapist's totp:SECRET)
            click.echo(" ".join(login))


@push_cli.command("keys")
def push_keys():
    """Print a new VAPID key pair for KAPJOURNAL_VAPID_PRIVATE_KEY and _PUBLIC_KEY."""
    from .services import push

    private, public = push.new_vapid_keys()
    click.echo(f"KAPJOURNAL_VAPID_PRIVATE_KEY={private}")
    click.echo(f"KAPJOURNAL_VAPID_PUBLIC_KEY={public}")


@reminders_cli.command("send")
def reminders_send():
    """Send the reminders that are due (run it from cron every few minutes)."""
    from .services import push, reminders

    if not push.enabled():
        click.echo("Reminders are off: no KAPJOURNAL_VAPID_* keys are configured.")
        return
    with Session(db.engine()) as session:
        report = reminders.send_due(session=session)
    click.echo(
        f"Sent {report.sent} reminders; {report.failed} failed (tried again on the next run); "
        f"{report.gone} devices no longer subscribed."
    )


@sessions_cli.command("sweep")
def sessions_sweep():
    """Delete logged-in devices past their idle or absolute timeout (run it from cron)."""
    from .services import sessions

    with Session(db.engine()) as session:
        count = sessions.sweep(session=session)
        session.commit()
    click.echo(f"Deleted {count} expired sessions.")


@backup_cli.command("create")
@click.argument("dest", type=click.Path(dir_okay=False, writable=True))
def backup_create(dest):
    """Write a backup of the database to DEST (a new file): ciphertext and metadata only, with
    a manifest. Safe while the app is running. Keep the KEKs elsewhere."""
    from .services import backup

    try:
        manifest = backup.create(db.engine(), Path(dest), keyring=current_app.config["KEYRING"])
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {dest}: {manifest.summary()}.")
    click.echo(f"It needs KEK {', '.join(manifest.kek_ids) or '(none)'} to restore; keep the KEKs")
    click.echo("apart from the backup (they are never in it).")


@backup_cli.command("verify")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
def backup_verify(src):
    """Check the backup SRC in a scratch database: it opens, its schema revision, its counts,
    the KEKs it needs, the access log's chain, and every entry's keys. Exit 1 on a problem."""
    from .services import backup

    try:
        report = backup.verify(Path(src), keyring=current_app.config["KEYRING"], server=db.engine())
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    _report(report, f"{src} is a good backup of {report.manifest.created_at}")


@backup_cli.command("restore")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace everything in a database that is not empty.")
def backup_restore(src, force):
    """Restore the backup SRC into the configured database, which must be empty unless
    --force; stop the app first. Everyone logs in again afterwards."""
    from .services import backup

    try:
        report = backup.restore(
            Path(src), db.engine(), keyring=current_app.config["KEYRING"], force=force
        )
    except backup.BackupError as exc:
        raise click.ClickException(f"Not restored: {exc}.") from None
    _report(report, f"Restored {src} ({report.manifest.created_at}); everyone logs in again")


def _report(report, good: str) -> None:
    for note in report.notes:
        click.echo(f"Note: {note}.")
    for problem in report.problems:
        click.echo(f"Problem: {problem}.", err=True)
    if report.problems:
        raise SystemExit(1)
    click.echo(f"{good}: {report.manifest.summary()}.")


def init_app(app: Flask) -> None:
    commands = (db_cli, users_cli, keys_cli, audit_cli, demo, push_cli, reminders_cli)
    for command in (*commands, sessions_cli, backup_cli):
        app.cli.add_command(command)
