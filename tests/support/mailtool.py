#!/usr/bin/env python3
"""The tests' independent mail client: Python's smtplib, imaplib and email.

  mailtool.py send PORT FROM TO FILE       deliver FILE over plain SMTP (mynetworks)
  mailtool.py read PORT CAFILE USER PASS MAILBOX
      print a JSON list of the mailbox's messages, read over IMAPS and parsed
      by Python's email package: subject, from, message_id, in_reply_to,
      auto_submitted, body
  mailtool.py count PORT CAFILE USER PASS MAILBOX   print the message count
  mailtool.py copy PORT CAFILE USER PASS MAILBOX DEST
      copy the first message of MAILBOX to DEST (it gets a new UID there)
"""
import email
import email.policy
import imaplib
import json
import smtplib
import ssl
import sys

# Seconds per network operation: a hung server fails the test, not hangs it.
TIMEOUT = 30


def imap(port, cafile, user, password):
    ctx = ssl.create_default_context(cafile=cafile)
    conn = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=TIMEOUT)
    conn.login(user, password)
    return conn


def main(argv):
    cmd = argv[1]
    if cmd == "send":
        port, sender, to, path = argv[2:6]
        with open(path, "rb") as f:
            raw = f.read()
        with smtplib.SMTP("127.0.0.1", int(port), timeout=TIMEOUT) as s:
            s.sendmail(sender, [to], raw)
        return
    port, cafile, user, password, mailbox = argv[2:7]
    conn = imap(port, cafile, user, password)
    typ, data = conn.select(mailbox, readonly=True)
    if typ != "OK":
        # A folder that does not exist holds nothing.
        print("0" if cmd == "count" else "[]")
        return
    if cmd == "count":
        print(int(data[0]))
        return
    if cmd == "copy":
        typ, data = conn.uid("SEARCH", None, "ALL")
        first = data[0].split()[0]
        typ, data = conn.uid("COPY", first, argv[7])
        if typ != "OK":
            sys.exit(f"COPY: {data}")
        return
    out = []
    typ, data = conn.uid("SEARCH", None, "ALL")
    for uid in data[0].split():
        typ, msg = conn.uid("FETCH", uid, "(BODY.PEEK[])")
        m = email.message_from_bytes(msg[0][1], policy=email.policy.default)
        body = m.get_body(preferencelist=("plain",))
        out.append({
            "subject": str(m["subject"] or ""),
            "from": str(m["from"] or ""),
            "date": str(m["date"] or ""),
            "message_id": str(m["message-id"] or ""),
            "in_reply_to": str(m["in-reply-to"] or ""),
            "auto_submitted": str(m["auto-submitted"] or ""),
            "body": body.get_content() if body is not None else "",
        })
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv)
