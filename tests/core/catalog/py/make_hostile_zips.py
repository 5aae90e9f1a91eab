# Used by tests/core/catalog/tst_catalog_importers.cpp (run with python3; stdlib only).
import io, sys, zipfile
# a zip nested 20 deep, and a zip bomb-like member (50 MB of zeros)
inner = b'hello'
for i in range(20):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr(f'level{i}.zip' if i else 'a.txt', inner)
    inner = buf.getvalue()
open(sys.argv[1], 'wb').write(inner)
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('users.json', b'[' + b' ' * (50 << 20) + b']')
    z.writestr('channels.json', b'[]')
print('ok')
