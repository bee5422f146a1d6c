"""Seed the router's classifier from a labelled corpus (for demos and first installs).

    python -m services.router.train --corpus ../shared/corpus [--ham-label Raw] [--replace]

Mail in ``<corpus>/spam`` is counted as the junk queue, mail in ``<corpus>/ham`` as
``--ham-label``. The counts are added to the ones in the database (``--replace`` starts from
zero) in one transaction, and every running replica reloads them within a second. Uses
``DATABASE_URL`` like the service.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from services.router import store
from services.router.app import MIGRATIONS
from services.router.classifier import Classifier
from services.router.corpus import labelled_mails
from services.router.settings import RouterSettings
from shared.db import create_pool, migrate


def train_model(corpus: Path, *, spam_label: str, ham_label: str, limit: int | None = None) -> Classifier:
    """A model trained on the corpus' spam and ham folders (the first ``limit`` files of each)."""
    model = Classifier(spam_label=spam_label)
    for label, folder in ((spam_label, "spam"), (ham_label, "ham")):
        for n, (mail, _) in enumerate(labelled_mails(corpus, {folder: label})):
            if limit is not None and n >= limit:
                break
            model.train(mail, label)
    return model


async def seed(database_url: str, model: Classifier, *, reason: str, replace: bool = False) -> int:
    """Add ``model``'s counts to the router's classifier tables; returns the new version."""
    state = model.to_dict()
    pool = await create_pool(database_url, max_size=2)
    try:
        await migrate(pool, [MIGRATIONS])
        async with pool.acquire() as conn, conn.transaction():
            return await store.add_counts(conn, state["docs"], state["counts"], reason=reason, replace=replace)
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    settings = RouterSettings()
    parser = argparse.ArgumentParser(prog="python -m services.router.train", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder with spam/ and ham/ subfolders")
    parser.add_argument(
        "--ham-label", default=settings.default_queue, help="queue ham counts as (default: %(default)s)"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many files per folder")
    parser.add_argument("--replace", action="store_true", help="drop the existing counts first")
    args = parser.parse_args(argv)
    model = train_model(args.corpus, spam_label=settings.junk_queue, ham_label=args.ham_label, limit=args.limit)
    reason = f"corpus {args.corpus} (spam → {settings.junk_queue}, ham → {args.ham_label})"
    version = asyncio.run(seed(settings.database_url, model, reason=reason, replace=args.replace))
    docs = {label: model.document_count(label) for label in model.labels}
    print(f"classifier version {version}: trained {docs}, {model.vocabulary} tokens")


if __name__ == "__main__":
    main()
