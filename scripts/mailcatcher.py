"""A local SMTP catcher for `make dev` and tests: accepts every mail and keeps it in a folder.

Each mail is written as ``<timestamp>-<n>.eml`` with the envelope in ``X-Catcher-*`` headers
prepended, so a developer can open what Firstline sent.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class FolderHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        prefix = (
            f"X-Catcher-Mail-From: {envelope.mail_from}\r\nX-Catcher-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{next(self._counter):05d}.eml"
        (self.folder / name).write_bytes(prefix + content)
        return "250 OK caught"


def main() -> None:
    port = int(os.environ.get("CATCHER_PORT", "1025"))
    folder = Path(os.environ.get("CATCHER_DIR", ".data/caught-mail"))
    controller = Controller(FolderHandler(folder), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
