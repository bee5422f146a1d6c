"""A real Dovecot (IMAP and POP3) on loopback ports, for the mailbox-polling tests.

Debian's ``dovecot-imapd`` and ``dovecot-pop3d`` (``scripts/ensure-system.sh`` installs them) run
in the foreground with a generated minimal configuration in a temporary folder: plaintext
logins from a passwd-file, one maildir per user, no TLS. Mails are put in by writing maildir
files, and read back the same way, so the tests see the server's side without IMAP.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from shared.devinfra import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def available() -> str | None:
    """None if Dovecot can run here, else why not."""
    if not Path(DOVECOT).exists():
        return "dovecot is not installed (scripts/ensure-system.sh installs dovecot-imapd and dovecot-pop3d)"
    if not Path("/usr/lib/dovecot/imap").exists() or not Path("/usr/lib/dovecot/pop3").exists():
        return "dovecot-imapd or dovecot-pop3d is missing"
    return None


def _mail_owner() -> tuple[int, int, str, str]:
    """(uid, gid, login user, internal user): as root, unprivileged accounts Dovecot accepts."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name
    mail_user = pwd.getpwnam("dovecot")
    login_user = "dovenull" if _user_exists("dovenull") else "dovecot"
    return mail_user.pw_uid, mail_user.pw_gid, login_user, "dovecot"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class Dovecot:
    folder: Path
    imap_port: int = field(default_factory=free_port)
    pop3_port: int = field(default_factory=free_port)
    users: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.uid, self.gid, self.login_user, self.internal_user = _mail_owner()

    # ------------------------------------------------------------------ lifecycle

    def start(self, users: dict[str, str]) -> None:
        self.users = dict(users)
        for sub in ("run", "mail", "home"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))
        for user in users:
            self.maildir(user)
        (self.folder / "dovecot.conf").write_text(self._config())
        self._chown(self.folder / "mail")
        self._chown(self.folder / "home")
        log = open(self.folder / "stdout.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.folder / "dovecot.conf")], stdout=log, stderr=subprocess.STDOUT
        )
        self._wait_listening()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()[-3000:]}")
            if all(_answers(port) for port in (self.imap_port, self.pop3_port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen within {timeout}s: {self.log()[-3000:]}")

    def log(self) -> str:
        parts = [p.read_text(errors="replace") for p in self.folder.glob("*.log") if p.exists()]
        return "\n".join(parts)

    def _config(self) -> str:
        root = self.folder
        return f"""
protocols = imap pop3
listen = 127.0.0.1
base_dir = {root}/run
instance_name = firstline-test-{self.imap_port}
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {self.login_user}
default_internal_user = {self.internal_user}
first_valid_uid = {self.uid}
first_valid_gid = {self.gid}
mail_location = maildir:{root}/mail/%u
mail_fsync = never
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
"""

    # ------------------------------------------------------------------ the mailboxes' files

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        base = self.folder / "mail" / user
        path = base if folder == "INBOX" else base / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._chown(self.folder / "mail")
        return path

    def deliver(self, user: str, raw: bytes) -> None:
        """Put one mail in the user's INBOX, as a local delivery agent would."""
        path = self.maildir(user)
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.firstline-test"
        tmp = path / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, self.uid, self.gid)
        tmp.rename(path / "new" / name)

    def messages(self, user: str, folder: str = "INBOX") -> list[tuple[Path, str]]:
        """(file, maildir flags) of every mail the server still holds in ``folder``."""
        path = self.maildir(user, folder)
        found = [(p, "") for p in (path / "new").iterdir()]
        found += [(p, p.name.partition(":2,")[2]) for p in (path / "cur").iterdir()]
        return sorted(found)

    def _chown(self, top: Path) -> None:
        if os.geteuid() != 0:
            return
        for dirpath, _dirs, filenames in os.walk(top):
            os.chown(dirpath, self.uid, self.gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.settimeout(2)
            return sock.recv(100).startswith((b"* OK", b"+OK"))
    except OSError:
        return False


def make_folder() -> Path:
    """A world-traversable temporary folder (the mail user is not root)."""
    folder = Path(tempfile.mkdtemp(prefix="firstline-dovecot-"))
    folder.chmod(0o755)
    return folder
