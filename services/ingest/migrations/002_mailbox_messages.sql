-- Mails taken from polled mailboxes, by the server's key (IMAP "UIDVALIDITY:UID", POP3 UIDL):
-- a mail listed again is skipped without being fetched. settled: the server side is done
-- (deleted, moved or flagged after commit; or nothing to do, e.g. a refused mail left there).
create table mailbox_messages (
    account    text        not null,
    key        text        not null,
    mail_id    text,
    outcome    text        not null,
    settled    boolean     not null default false,
    taken_at   timestamptz not null default now(),
    settled_at timestamptz,
    primary key (account, key)
);
