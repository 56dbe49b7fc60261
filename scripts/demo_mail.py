#!/usr/bin/env python3
"""Mail side of scripts/demo: send the sample customer mails through the real Postfix, wait for
the acknowledgements in the customers' real Dovecot mailboxes, reply like a mail client.

Usage: demo_mail.py send SUPPORT RUN_ID FIXTURE...   -> prints "customer<TAB>message-id" lines
       demo_mail.py wait-ack CUSTOMER [TIMEOUT]      -> prints the acknowledgement as it arrived
       demo_mail.py reply CUSTOMER SUPPORT TEXT      -> replies to the last acknowledgement
       demo_mail.py agent-answer AGENT TEAM SUPPORT TOKEN TEXT
                                                     -> the agent answers the team's notification
                                                        whose subject has TOKEN, as a mail client
       demo_mail.py wait-nth USER N [TIMEOUT]        -> prints USER's Nth message once it arrived
"""
import email
import email.policy
import imaplib
import os
import re
import smtplib
import ssl
import sys
import time
from email.message import EmailMessage
from email.utils import make_msgid, formatdate

SMTP_PORT = int(os.environ.get("MAILSTACK_SMTP_PORT", "10025"))
IMAP_PORT = int(os.environ.get("MAILSTACK_IMAP_PORT", "10143"))
PASSWORD = os.environ.get("MAILSTACK_PASSWORD", "secret")
CA = os.environ.get("MAILSTACK_CA_FILE")


def imap(user):
    conn = imaplib.IMAP4("127.0.0.1", IMAP_PORT)
    conn.starttls(ssl.create_default_context(cafile=CA))
    conn.login(user, PASSWORD)
    return conn


def send(support, run_id, fixtures):
    with smtplib.SMTP("127.0.0.1", SMTP_PORT) as smtp:
        for path in fixtures:
            raw = open(path, "rb").read()
            m = re.search(rb"^From:.*?<?([A-Za-z0-9._%+-]+)@([A-Za-z0-9.-]+)>?\s*$", raw, re.M | re.I)
            local, domain = m.group(1).decode(), m.group(2).decode()
            customer = f"{local}-{run_id}@{domain}".lower()
            # Fresh addresses per run, so a second demo does not read the first one's mail.
            raw = raw.replace(f"{local}@{domain}".encode(), customer.encode())
            raw = raw.replace(b"support@example.test", support.encode())
            mid = re.search(rb"^Message-ID:\s*(<[^>]+>)", raw, re.M | re.I)
            if mid:
                raw = raw.replace(mid.group(1), mid.group(1)[:-1] + f".{run_id}>".encode())
            smtp.sendmail(customer, [support], raw)
            print(f"{customer}\t{os.path.basename(path)}")


def wait_ack(customer, timeout=30.0):
    return wait_nth(customer, 1, timeout, last=True)


def wait_nth(user, n, timeout=30.0, last=False):
    """User's Nth message (or the last one, once there are N)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        conn = imap(user)
        conn.select("INBOX", readonly=True)
        typ, data = conn.search(None, "ALL")
        ids = data[0].split()
        if len(ids) >= n:
            typ, msg = conn.fetch(ids[-1] if last else ids[n - 1], "(BODY.PEEK[])")
            conn.logout()
            return msg[0][1]
        conn.logout()
        time.sleep(0.3)
    sys.exit(f"{user}: fewer than {n} messages within {timeout} s")


def find(user, token, timeout=30.0):
    """The latest message in user's INBOX whose subject contains token."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        conn = imap(user)
        conn.select("INBOX", readonly=True)
        typ, data = conn.search(None, "ALL")
        for i in reversed(data[0].split()):
            typ, msg = conn.fetch(i, "(BODY.PEEK[])")
            parsed = email.message_from_bytes(msg[0][1], policy=email.policy.default)
            if token in (parsed["Subject"] or ""):
                conn.logout()
                return parsed
        conn.logout()
        time.sleep(0.3)
    sys.exit(f"{user}: no message with {token} within {timeout} s")


def agent_answer(agent, team, support, token, text):
    """What an agent's mail client sends on Reply: to the notification's Reply-To, quoting it."""
    note = find(team, token)
    r = EmailMessage()
    r["From"] = f"Alice <{agent}>"
    r["To"] = note["Reply-To"]
    r["Subject"] = "Re: " + note["Subject"]
    r["Date"] = formatdate(localtime=True)
    r["Message-ID"] = make_msgid(domain=agent.split("@")[1])
    r["In-Reply-To"] = note["Message-ID"]
    r["References"] = note["Message-ID"]
    quoted = "\n".join("> " + l for l in note.get_body(preferencelist=("plain",)).get_content().splitlines())
    r.set_content(f"{text}\n\nOn {time.strftime('%d/%m/%Y')}, Support wrote:\n{quoted}\n")
    print(f"Reply-To of the notification: {note['Reply-To']}")
    with smtplib.SMTP("127.0.0.1", SMTP_PORT) as smtp:
        # A server with recipient_delimiter = + delivers support+CHT-1@ to support@'s mailbox.
        smtp.send_message(r, to_addrs=[support])


def show(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for h in ["From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
              "Auto-Submitted", "X-Auto-Response-Suppress", "Content-Language"]:
        if msg[h]:
            print(f"{h}: {msg[h]}")
    print()
    print(msg.get_body(preferencelist=("plain",)).get_content())


def reply(customer, support, text):
    ack = email.message_from_bytes(wait_ack(customer), policy=email.policy.default)
    r = EmailMessage()
    r["From"] = customer
    r["To"] = support
    r["Subject"] = "Re: " + ack["Subject"]
    r["Date"] = formatdate(localtime=True)
    r["Message-ID"] = make_msgid(domain=customer.split("@")[1])
    r["In-Reply-To"] = ack["Message-ID"]
    r["References"] = ((ack["References"] or "") + " " + ack["Message-ID"]).strip()
    quoted = "\n".join("> " + l for l in ack.get_body(preferencelist=("plain",)).get_content().splitlines())
    r.set_content(f"{text}\n\nLe {time.strftime('%d/%m/%Y')}, Support <{support}> a écrit :\n{quoted}\n")
    with smtplib.SMTP("127.0.0.1", SMTP_PORT) as smtp:
        smtp.send_message(r)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "send":
        send(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "wait-ack":
        show(wait_ack(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 30.0))
    elif cmd == "reply":
        reply(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "agent-answer":
        agent_answer(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
    elif cmd == "wait-nth":
        show(wait_nth(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 30.0))
    else:
        sys.exit(__doc__)
