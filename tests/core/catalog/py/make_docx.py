# Used by tests/core/catalog/tst_catalog_importers.cpp (run with python3; stdlib only).
import sys, zipfile
W = 'http://schemas.openxmlformats.org/wordprocessingml/2006/main'
doc = f'''<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="{W}"><w:body>
<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Quarterly report</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">Revenue grew &amp; costs fell </w:t></w:r><w:r><w:t>by 5%.</w:t></w:r></w:p>
<w:p><w:r><w:t>Caf\u00e9</w:t><w:tab/><w:t>ok</w:t></w:r></w:p>
<w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Outlook</w:t></w:r></w:p>
<w:p><w:del><w:r><w:delText>removed words</w:delText></w:r></w:del><w:r><w:t>Stable.</w:t></w:r></w:p>
</w:body></w:document>'''
core = '''<?xml version="1.0" encoding="UTF-8"?>
<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/">
<dc:title>Q3 Report</dc:title><dc:creator>Dana Lee</dc:creator>
<dcterms:created>2021-10-05T09:30:00Z</dcterms:created></cp:coreProperties>'''
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('[Content_Types].xml', '<Types/>')
    z.writestr('word/document.xml', doc.encode('utf-8'))
    z.writestr('docProps/core.xml', core)
print('ok')
