# Used by tests/core/catalog/tst_catalog_importers.cpp (run with python3; stdlib only).
import json, sys, os
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime, make_msgid
from email import policy
from email.parser import BytesParser
import datetime
d = sys.argv[1]
msgs = []
m = EmailMessage()
m['From'] = 'Zoë Adams <zoe@example.org>'
m['To'] = 'Bob <bob@example.org>, carol@example.org'
m['Subject'] = 'Grüße aus Köln — Ünïcödé subject'
m['Date'] = 'Tue, 05 Mar 2024 14:03:00 +0100'
m['Message-ID'] = '<m1@example.org>'
m.set_content('Hallo Bob,\nwie geht es dir? Schöne Grüße.\n')
msgs.append(m)
m = EmailMessage()
m['From'] = 'bob@example.org'
m['To'] = 'Zoë Adams <zoe@example.org>'
m['Subject'] = 'Re: plans'
m['Date'] = 'Wed, 06 Mar 2024 08:00:00 -0500'
m['Message-ID'] = '<m2@example.org>'
m['In-Reply-To'] = '<m1@example.org>'
m['References'] = '<m1@example.org>'
m.set_content('Plain part with a long line ' + 'x' * 120 + ' end.\n', cte='quoted-printable')
m.add_alternative('<html><body><p>HTML <b>part</b></p><script>evil()</script></body></html>', subtype='html')
msgs.append(m)
m = EmailMessage()
m['From'] = 'latin@example.org'
m['To'] = 'bob@example.org'
m['Subject'] = 'Latin-1 body with attachment'
m['Date'] = 'Thu, 07 Mar 2024 12:00:00 +0000'
m.set_content('Déjà vu in Latin-1.\n', charset='iso-8859-1', cte='base64')
m.add_attachment(b'\x00\x01binary', maintype='application', subtype='octet-stream', filename='data.bin')
msgs.append(m)
m = EmailMessage()
m['From'] = 'html-only@example.org'
m['To'] = 'bob@example.org'
m['Subject'] = 'HTML only'
m['Date'] = 'Fri, 08 Mar 2024 12:00:00 +0000'
m.set_content('<html><head><style>.x{}</style></head><body><h1>News</h1><p>Fish &amp; chips</p></body></html>', subtype='html')
msgs.append(m)
expected = []
for i, m in enumerate(msgs):
    path = os.path.join(d, f'm{i}.eml')
    open(path, 'wb').write(m.as_bytes(policy=policy.SMTP))
    p = BytesParser(policy=policy.default).parse(open(path, 'rb'))
    body = p.get_body(preferencelist=('plain',))
    expected.append({'path': path, 'subject': str(p['subject']), 'from': p['from'].addresses[0].addr_spec,
                     'to': [a.addr_spec for a in p['to'].addresses],
                     'date': int(parsedate_to_datetime(p['date']).timestamp()),
                     'plain': body.get_content() if body is not None and body.get_content_type() == 'text/plain' else None})
print(json.dumps(expected))
