# Used by tests/core/catalog/tst_catalog_importers.cpp (run with python3; stdlib only).
import mailbox, sys, json
from email.message import EmailMessage
box = mailbox.mbox(sys.argv[1])
ids = []
for i in range(3):
    m = EmailMessage()
    m['From'] = f'user{i}@example.org'
    m['To'] = 'list@example.org'
    m['Subject'] = 'Thread topic' if i == 0 else 'Re: Thread topic'
    m['Date'] = f'Mon, 0{i+1} Apr 2024 10:00:00 +0000'
    m['Message-ID'] = f'<t{i}@example.org>'
    if ids:
        m['In-Reply-To'] = ids[-1]
        m['References'] = ' '.join(ids)
    m.set_content(f'From the start of a line, message {i}.\n')
    ids.append(m['Message-ID'])
    box.add(m)
box.flush()
print(json.dumps([str(m['subject']) for m in mailbox.mbox(sys.argv[1])]))
