// tst_catalog_importers.cpp: each importer on real files (../shared/data/corpora) and on inputs made
// here, plus encoding detection and segmentation.
//
// Peers: e-mails are built and parsed by Python's email/mailbox packages (the expected subject,
// sender, date and body come from Python, not from us); the novel's .txt/.html/.pdf must agree on
// their text modulo layout; the DOCX is written by Python's zipfile. Tests needing python3 or the
// shared data QSKIP with a message when it is absent.
// To extend: add a slot per importer case; hostile inputs go in the *_hostile slots.
#include "core/catalog/importer.h"
#include "core/catalog/segmenter.h"
#include "core/catalog/text_decode.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRegularExpression>
#include <QSet>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <set>

using namespace msa::catalog;
using msa::Result;
using msa::Status;

namespace {

// The environment (set by CTest, or by hand when the worktree is not beside ../shared) wins over
// the path compiled in.
const QString kData = (qEnvironmentVariableIsSet("MSA_TEST_DATA_DIR") ? qEnvironmentVariable("MSA_TEST_DATA_DIR")
                                                                       : QStringLiteral(MSA_TEST_DATA_DIR)) +
                      "/corpora";

std::string readAll(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    const QByteArray b = f.readAll();
    return std::string(b.constData(), static_cast<size_t>(b.size()));
}

Result<Extraction> extractPath(const QString& path, const ImportLimits& limits = {}) {
    const std::string bytes = readAll(path);
    const Detection det = detectFileType(path.toStdString(), std::string_view(bytes).substr(0, 8192));
    return extractFile(path.toStdString(), det, bytes, limits, nullptr);
}

QString script(const char* name) { return QStringLiteral(MSA_SOURCE_DIR "/tests/core/catalog/py/") + name; }

// Runs a Python script; returns its stdout, or a null QByteArray when python3 is absent.
QByteArray runPython(const QString& scriptPath, const QStringList& args = {}) {
    const QString py = QStandardPaths::findExecutable("python3");
    if (py.isEmpty()) return {};
    QProcess p;
    p.start(py, QStringList{scriptPath} + args);
    if (!p.waitForFinished(60000) || p.exitCode() != 0) {
        qWarning() << "python failed:" << p.readAllStandardError();
        return QByteArray("");
    }
    return p.readAllStandardOutput();
}

std::string words(std::string_view s) {   // whitespace-collapsed, for layout-free comparisons
    std::string out;
    bool space = false;
    for (char c : s) {
        if (std::isspace(static_cast<unsigned char>(c))) space = true;
        else {
            if (space && !out.empty()) out.push_back(' ');
            space = false;
            out.push_back(c);
        }
    }
    return out;
}

std::set<std::string> wordSet(const std::string& text) {
    std::set<std::string> out;
    std::string w;
    for (char c : text) {
        if (std::isalpha(static_cast<unsigned char>(c))) w.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
        else {
            if (w.size() >= 3) out.insert(w);
            w.clear();
        }
    }
    if (w.size() >= 3) out.insert(w);
    return out;
}

}  // namespace

class TstCatalogImporters : public QObject {
    Q_OBJECT
private slots:
    // ---- encodings -------------------------------------------------------------------------
    void decodeValidUtf8() {
        const DecodedText d = decodeText("na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x98\x80");
        QCOMPARE(d.encoding, std::string("utf-8"));
        QCOMPARE(d.nReplaced, size_t{0});
        QVERIFY(d.warnings.empty());
    }
    void decodeBoms() {
        QCOMPARE(decodeText("\xEF\xBB\xBFhi").utf8, std::string("hi"));
        const DecodedText le = decodeText(std::string("\xFF\xFEh\0\xE9\0", 6));
        QCOMPARE(le.encoding, std::string("utf-16le"));
        QCOMPARE(le.utf8, std::string("h\xC3\xA9"));
        const DecodedText be = decodeText(std::string("\xFE\xFF\0h\xD8\x3D\xDE\x00", 8));
        QCOMPARE(be.utf8, std::string("h\xF0\x9F\x98\x80"));
    }
    void invalidUtf8IsRepairedAndReported() {
        const DecodedText d = decodeText("caf\xC3\xA9 \xC3\x28 and \xE2\x82\xAC ok \xFF");
        QCOMPARE(d.encoding, std::string("utf-8"));
        QCOMPARE(d.nReplaced, size_t{2});
        QVERIFY(isValidUtf8(d.utf8));
        QVERIFY(d.utf8.find("\xEF\xBF\xBD(") != std::string::npos);
        QCOMPARE(d.warnings.size(), size_t{1});
        QVERIFY(d.warnings.front().find("invalid UTF-8") != std::string::npos);
        // Overlong encodings and surrogates are invalid too.
        QVERIFY(!isValidUtf8("\xC0\xAF"));
        QVERIFY(!isValidUtf8("\xED\xA0\x80"));
        QVERIFY(!isValidUtf8("\xF4\x90\x80\x80"));
    }
    void windows1252Fallback() {
        const DecodedText d = decodeText("caf\xE9 \x93quoted\x94 \x80");
        QCOMPARE(d.encoding, std::string("windows-1252"));
        QCOMPARE(d.utf8, std::string("caf\xC3\xA9 \xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x82\xAC"));
        QVERIFY(!d.warnings.empty());
    }
    void normalisation() {
        QCOMPARE(normalizeText(std::string("\n\na\r\nb  \r\n\r\n\r\n\r\nc\0d\te\x07\n\n", 24)),
                 std::string("a\nb\n\ncd\te"));
    }

    // ---- detection ---------------------------------------------------------------------------
    void detection() {
        QCOMPARE(detectFileType("a/x.py", "print(1)\n").type, FileType::Code);
        QCOMPARE(detectFileType("a/x.py", "print(1)\n").language, std::string("python"));
        QCOMPARE(detectFileType("a/x.txt", "%PDF-1.4\n").type, FileType::Pdf);   // content wins
        QCOMPARE(detectFileType("a/x.dat", std::string("\x7f" "ELF\0\0\0", 7)).type, FileType::Unknown);
        QVERIFY(detectFileType("a/x.bin", std::string("ab\0cd", 5)).reason.find("binary") != std::string::npos);
        QCOMPARE(detectFileType("a/chat.txt", "06.08.2016, 13:23 - Ash: Hey!\n06.08.2016, 13:25 - Brock: Hi\n").type,
                 FileType::WhatsApp);
        QCOMPARE(detectFileType("a/notes.txt", "Just a note\nwith lines\n").type, FileType::Text);
        QCOMPARE(detectFileType("a/box", "From alice@x Fri Mar  1 10:00:00 2024\nFrom: a@x\nSubject: s\n\nbody\n").type,
                 FileType::Mbox);
        QCOMPARE(detectFileType("a/conversations.json", "[]").type, FileType::ChatGpt);
        QCOMPARE(detectFileType("a/result.json", "{}").type, FileType::Telegram);
        QCOMPARE(detectFileType("a/x.md", "# T").type, FileType::Markdown);
        QCOMPARE(detectFileType("a/x.jar", "PK\x03\x04....").type, FileType::Unknown);
    }

    // ---- text, markdown, code, html ------------------------------------------------------------
    void plainText() {
        auto ex = extractPlainText("notes/todo.txt", "  \nShopping list\n\nmilk\r\neggs\n");
        QVERIFY(ex.ok());
        QCOMPARE(ex->documents.size(), size_t{1});
        QCOMPARE(ex->documents[0].title, std::string("Shopping list"));
        QCOMPARE(ex->documents[0].text, std::string("Shopping list\n\nmilk\neggs"));
        QVERIFY(!extractPlainText("x.txt", " \n\t\n").ok());
    }
    void markdownFrontMatterAndHeadings() {
        const std::string md = "---\ntitle: \"Trip notes\"\ndate: 2023-07-14\ntags:\n  - travel\n  - norway\nauthor: Kim\n---\n"
                               "Intro line.\n\n# Norway\n\nFjords.\n\n## Bergen\n\nRain.\n\n```\n# not a heading\n```\n\n## Oslo\n\nMuseums.\n";
        auto ex = extractMarkdown("trip.md", md);
        QVERIFY(ex.ok());
        const ExtractedDocument& d = ex->documents.at(0);
        QCOMPARE(d.title, std::string("Trip notes"));
        QCOMPARE(d.author, std::string("Kim"));
        QVERIFY(d.dateUnix.has_value());
        QCOMPARE(formatDay(*d.dateUnix), std::string("2023-07-14"));
        QCOMPARE(d.metadata["tags"], nlohmann::json({"travel", "norway"}));
        QVERIFY(d.text.rfind("Intro line.", 0) == 0);   // front matter removed
        QCOMPARE(d.boundaries.size(), size_t{3});
        QCOMPARE(d.boundaries[1].label, std::string("Norway > Bergen"));
        QCOMPARE(d.boundaries[2].label, std::string("Norway > Oslo"));
        QCOMPARE(d.text.substr(d.boundaries[1].offset, 9), std::string("## Bergen"));
    }
    void codeLanguage() {
        auto ex = extractCode("src/main.rs", "fn main() {}\n", "rust");
        QVERIFY(ex.ok());
        QCOMPARE(ex->language, std::string("rust"));
        QCOMPARE(ex->documents[0].kind, std::string("code"));
        QCOMPARE(ex->documents[0].metadata["language"], nlohmann::json("rust"));
    }
    void html() {
        const std::string page = "<!DOCTYPE html><html><head><title>Caf&eacute; &amp; Bar</title>"
                                 "<meta name=\"author\" content=\"Ana\"><style>p{color:red}</style>"
                                 "<script>var secret = 'do not index';</script></head><body>"
                                 "<h1>Menu</h1><p>Espresso &mdash; 2&nbsp;&euro;<br>Tea</p>"
                                 "<noscript>enable js</noscript><ul><li>one</li><li>two</li></ul>"
                                 "<h2>Hours</h2><p>Open <b>daily</b>.</p><p>Unclosed <i>tags";
        auto ex = extractHtml("menu.html", page);
        QVERIFY(ex.ok());
        const ExtractedDocument& d = ex->documents.at(0);
        QCOMPARE(d.title, std::string("Caf\xC3\xA9 & Bar"));
        QCOMPARE(d.author, std::string("Ana"));
        QVERIFY(d.text.find("secret") == std::string::npos);
        QVERIFY(d.text.find("color") == std::string::npos);
        QVERIFY(d.text.find("enable js") == std::string::npos);
        QVERIFY(d.text.find("Espresso \xE2\x80\x94 2\xC2\xA0\xE2\x82\xAC\nTea") != std::string::npos);
        QVERIFY(d.text.find("Open daily.") != std::string::npos);
        QVERIFY(d.text.find("Unclosed tags") != std::string::npos);
        QCOMPARE(d.boundaries.size(), size_t{2});
        QCOMPARE(d.text.substr(d.boundaries[1].offset, 5), std::string("Hours"));
    }

    // ---- the novel in three formats --------------------------------------------------------------
    void novelAgreesAcrossFormats() {
        if (!QFile::exists(kData + "/pride-and-prejudice/1342-0.txt")) QSKIP("../shared/data/corpora is absent");
        auto txt = extractPath(kData + "/pride-and-prejudice/1342-0.txt");
        auto htm = extractPath(kData + "/pride-and-prejudice/1342-h.htm");
        auto pdf = extractPath(kData + "/pride-and-prejudice/1342-pdf.pdf");
        QVERIFY2(txt.ok() && htm.ok() && pdf.ok(), "all three formats import");
        QCOMPARE(htm->documents[0].kind, std::string("html"));
        QCOMPARE(pdf->documents[0].kind, std::string("pdf"));
        const std::string sentence = "It is a truth universally acknowledged, that a single man in possession of a good "
                                     "fortune, must be in want of a wife.";
        for (const auto* ex : {&*txt, &*htm, &*pdf})
            QVERIFY2(words(ex->documents[0].text).find(sentence) != std::string::npos, ex->documents[0].kind.c_str());
        // Same vocabulary modulo layout: almost every word of the plain text is in the others.
        const std::set<std::string> base = wordSet(txt->documents[0].text);
        for (const auto* ex : {&*htm, &*pdf}) {
            const std::set<std::string> other = wordSet(ex->documents[0].text);
            size_t common = 0;
            for (const std::string& w : base) common += other.count(w);
            const double frac = static_cast<double>(common) / static_cast<double>(base.size());
            QVERIFY2(frac > 0.93, qPrintable(QString("%1: %2 of the words").arg(ex->documents[0].kind.c_str()).arg(frac)));
        }
        // Chapters become boundaries in the text and HTML versions, pages in the PDF.
        QVERIFY(txt->documents[0].boundaries.size() >= 61);
        QVERIFY(htm->documents[0].boundaries.size() >= 61);
        QVERIFY(pdf->documents[0].boundaries.size() > 100);
        QCOMPARE(pdf->documents[0].boundaries[0].label, std::string("page 1"));
    }

    // ---- PDFs --------------------------------------------------------------------------------
    void pdfs() {
        if (!QFile::exists(kData + "/pdfs")) QSKIP("../shared/data/corpora is absent");
        auto empty = extractPath(kData + "/pdfs/empty.pdf");
        QVERIFY(!empty.ok());
        QCOMPARE(empty.status().code(), msa::ErrorCode::InvalidArgument);
        auto locked = extractPath(kData + "/pdfs/password-example.pdf");
        QVERIFY(!locked.ok());
        QCOMPARE(locked.status().code(), msa::ErrorCode::PermissionDenied);
        QVERIFY(locked.status().message().find("password") != std::string::npos);
        // Malformed: poppler may recover text or refuse; either way a value, never a crash.
        auto malformed = extractPath(kData + "/pdfs/malformed-from-issue-932.pdf");
        QVERIFY(malformed.ok() || malformed.status().code() == msa::ErrorCode::Corrupt ||
                malformed.status().code() == msa::ErrorCode::InvalidArgument);
        auto hello = extractPath(kData + "/pdfs/hello_structure.pdf");
        QVERIFY2(hello.ok(), hello.status().toString().c_str());
        QVERIFY(hello->documents[0].text.find("Hello") != std::string::npos);
        for (const char* name : {"issue-33-lorem-ipsum.pdf", "scotus-transcript-p1.pdf", "senate-expenditures.pdf",
                                 "word365_structure.pdf", "la-precinct-bulletin-2014-p1.pdf"}) {
            auto ex = extractPath(kData + "/pdfs/" + name);
            QVERIFY2(ex.ok(), name);
            QVERIFY(ex->documents[0].text.size() > 100);
            QVERIFY(isValidUtf8(ex->documents[0].text));
        }
    }
    void pdfHostile() {
        // Truncated real PDF, a header with garbage, and random bytes after the magic.
        QTemporaryDir dir;
        std::string good;
        if (QFile::exists(kData + "/pdfs/issue-33-lorem-ipsum.pdf")) good = readAll(kData + "/pdfs/issue-33-lorem-ipsum.pdf");
        else good = "%PDF-1.4\n1 0 obj\n<<>>\nendobj\n";
        for (const std::string& bytes : {good.substr(0, good.size() / 3), std::string("%PDF-1.7\n") + std::string(5000, '\x9c'),
                                         std::string("%PDF-")}) {
            auto ex = extractPdf("bad.pdf", bytes, nullptr);
            if (ex.ok()) QVERIFY(!ex->documents.empty());
            else QVERIFY(ex.status().code() != msa::ErrorCode::Ok);
        }
        QCOMPARE(extractPdf("x.pdf", "hello world", nullptr).status().code(), msa::ErrorCode::Corrupt);
    }

    // ---- DOCX and zips -------------------------------------------------------------------------
    void docx() {
        QTemporaryDir dir;
        const QString path = dir.filePath("report.docx");
        const QByteArray out = runPython(script("make_docx.py"), {path});
        if (out.isNull()) QSKIP("python3 not found");
        QCOMPARE(out.trimmed(), QByteArray("ok"));
        auto ex = extractPath(path);
        QVERIFY2(ex.ok(), ex.status().toString().c_str());
        const ExtractedDocument& d = ex->documents.at(0);
        QCOMPARE(d.kind, std::string("docx"));
        QCOMPARE(d.title, std::string("Q3 Report"));
        QCOMPARE(d.author, std::string("Dana Lee"));
        QVERIFY(d.dateUnix.has_value());
        QCOMPARE(*d.dateUnix, int64_t{1633426200});
        QCOMPARE(d.text, std::string("Quarterly report\n\nRevenue grew & costs fell by 5%.\n\nCaf\xC3\xA9\tok\n\nOutlook\n\nStable."));
        QCOMPARE(d.boundaries.size(), size_t{2});
        QCOMPARE(d.boundaries[1].label, std::string("Outlook"));

        // The same archive truncated is reported as corrupt.
        const std::string bytes = readAll(path);
        auto truncated = extractDocx("t.docx", std::string_view(bytes).substr(0, bytes.size() / 2), {});
        QVERIFY(!truncated.ok());
        QCOMPARE(truncated.status().code(), msa::ErrorCode::Corrupt);
    }
    void zipHostile() {
        QTemporaryDir dir;
        const QByteArray out = runPython(script("make_hostile_zips.py"), {dir.filePath("nested.zip"), dir.filePath("bomb.zip")});
        if (out.isNull()) QSKIP("python3 not found");
        auto nested = extractPath(dir.filePath("nested.zip"));
        QVERIFY(!nested.ok());
        QCOMPARE(nested.status().code(), msa::ErrorCode::Unsupported);   // not a Slack export; never recursed
        ImportLimits small;
        small.maxUncompressedBytes = 1 << 20;
        auto bomb = extractPath(dir.filePath("bomb.zip"), small);
        QVERIFY(!bomb.ok());
        QVERIFY(bomb.status().message().find("limit") != std::string::npos ||
                bomb.status().message().find("beyond") != std::string::npos);
    }

    // ---- e-mail, with Python's email package as the peer ------------------------------------------
    void emailParityWithPython() {
        QTemporaryDir dir;
        const QByteArray out = runPython(script("make_emails.py"), {dir.path()});
        if (out.isNull()) QSKIP("python3 not found");
        const QJsonArray expected = QJsonDocument::fromJson(out).array();
        QCOMPARE(expected.size(), 4);
        for (const QJsonValue& v : expected) {
            const QJsonObject e = v.toObject();
            auto ex = extractPath(e["path"].toString());
            QVERIFY2(ex.ok(), ex.status().toString().c_str());
            QCOMPARE(ex->documents.size(), size_t{1});
            const ExtractedDocument& d = ex->documents[0];
            QCOMPARE(d.kind, std::string("email"));
            QCOMPARE(QString::fromStdString(d.title), e["subject"].toString());
            QVERIFY(d.author.find(e["from"].toString().toStdString()) != std::string::npos);
            for (const QJsonValue& to : e["to"].toArray()) {
                bool found = false;
                for (const std::string& p : d.participants) found |= p.find(to.toString().toStdString()) != std::string::npos;
                QVERIFY2(found, qPrintable(to.toString()));
            }
            QVERIFY(d.dateUnix.has_value());
            QCOMPARE(*d.dateUnix, static_cast<int64_t>(e["date"].toInteger()));
            if (!e["plain"].isNull())
                QVERIFY2(words(d.text).find(words(e["plain"].toString().toStdString())) != std::string::npos, d.text.c_str());
        }
        // The reply threads under the first message; the HTML alternative is not duplicated.
        auto reply = extractPath(dir.filePath("m1.eml"));
        QCOMPARE(reply->documents[0].metadata["thread_id"], nlohmann::json("m1@example.org"));
        QVERIFY(reply->documents[0].text.find("evil") == std::string::npos);
        auto att = extractPath(dir.filePath("m2.eml"));
        QVERIFY(att->documents[0].text.find("data.bin") != std::string::npos);
        auto html = extractPath(dir.filePath("m3.eml"));
        QVERIFY(html->documents[0].text.find("Fish & chips") != std::string::npos);
        QVERIFY(html->documents[0].text.find(".x{}") == std::string::npos);
    }
    void mboxThreads() {
        QTemporaryDir dir;
        const QString path = dir.filePath("inbox.mbox");
        const QByteArray out = runPython(script("make_mbox.py"), {path});
        if (out.isNull()) QSKIP("python3 not found");
        const QJsonArray subjects = QJsonDocument::fromJson(out).array();
        auto ex = extractPath(path);
        QVERIFY2(ex.ok(), ex.status().toString().c_str());
        QCOMPARE(static_cast<int>(ex->documents.size()), subjects.size());
        for (size_t i = 0; i < ex->documents.size(); ++i) {
            const ExtractedDocument& d = ex->documents[i];
            QCOMPARE(QString::fromStdString(d.title), subjects[static_cast<int>(i)].toString());
            QCOMPARE(d.metadata["thread_id"], nlohmann::json("t0@example.org"));
            QCOMPARE(d.locator, "message " + std::to_string(i + 1));
            // mbox "From " quoting is undone.
            QVERIFY(d.text.find("From the start of a line, message " + std::to_string(i)) != std::string::npos);
        }
        QVERIFY(!extractEmail("x.mbox", "this is not a mailbox at all", true, nullptr).ok());
    }

    // ---- chats ---------------------------------------------------------------------------------
    void whatsAppReal() {
        if (!QFile::exists(kData + "/chat-exports/whatsapp-pokemon.txt")) QSKIP("../shared/data/corpora is absent");
        for (const QString name : {"whatsapp-pokemon.txt", "whatsapp-lorem.txt"}) {
            const QString path = kData + "/chat-exports/" + name;
            // Independent expectation: lines starting with a date are messages; distinct dates are days.
            QFile f(path);
            QVERIFY(f.open(QIODevice::ReadOnly));
            const QStringList lines = QString::fromUtf8(f.readAll()).split('\n');
            static const QRegularExpression dateRe(R"(^\[?(\d{1,2}[./-]\d{1,2}[./-]\d{2,4}))");
            QSet<QString> days;
            int nMessages = 0;
            for (const QString& l : lines) {
                auto m = dateRe.match(l);
                if (!m.hasMatch()) continue;
                ++nMessages;
                days.insert(m.captured(1));
            }
            auto ex = extractPath(path);
            QVERIFY2(ex.ok(), ex.status().toString().c_str());
            QCOMPARE(static_cast<int>(ex->documents.size()), days.size());
            int total = 0;
            for (const ExtractedDocument& d : ex->documents) {
                total += d.metadata["messages"].get<int>();
                QCOMPARE(d.kind, std::string("chat"));
                QCOMPARE(d.unitKind, std::string("chat-day"));
                QVERIFY(d.dateUnix.has_value());
            }
            QCOMPARE(total, nMessages);
        }
        auto poke = extractPath(kData + "/chat-exports/whatsapp-pokemon.txt");
        const ExtractedDocument& first = poke->documents.at(1);   // 06.08.2016
        QCOMPARE(formatDay(*first.dateUnix), std::string("2016-08-06"));
        QVERIFY(std::find(first.participants.begin(), first.participants.end(), "Ash Ketchum") != first.participants.end());
        QVERIFY(first.text.find("13:23 Ash Ketchum: Hey guys!") != std::string::npos);
    }
    void slackReal() {
        const QString path = kData + "/chat-exports/slack-testarchive.zip";
        if (!QFile::exists(path)) QSKIP("../shared/data/corpora is absent");
        auto ex = extractPath(path);
        QVERIFY2(ex.ok(), ex.status().toString().c_str());
        QCOMPARE(ex->documents.size(), size_t{17});   // 9 + 8 channel-day files in the export
        std::set<std::string> channels;
        for (const ExtractedDocument& d : ex->documents) {
            channels.insert(d.metadata["chat"].get<std::string>());
            QVERIFY(d.text.find("<@U") == std::string::npos);   // mentions resolved to names
            QVERIFY(!d.participants.empty());
            QCOMPARE(d.title.substr(d.title.size() - 10), d.metadata["day"].get<std::string>());
        }
        QCOMPARE(channels, (std::set<std::string>{"#enrique", "#traveling-sailor"}));
        const std::string bytes = readAll(path);
        auto truncated = extractSlackZip("t.zip", std::string_view(bytes).substr(0, bytes.size() - 100), {}, nullptr);
        QVERIFY(!truncated.ok());
        QCOMPARE(truncated.status().code(), msa::ErrorCode::Corrupt);
    }
    void telegram() {
        const std::string json = R"({"chats": {"list": [
          {"name": "Family", "type": "private_group", "id": 1, "messages": [
            {"id": 1, "type": "message", "date": "2022-05-01T09:00:00", "date_unixtime": "1651395600", "from": "Mum",
             "text": "Breakfast?"},
            {"id": 2, "type": "service", "date": "2022-05-01T09:01:00", "actor": "Dad", "action": "pin_message"},
            {"id": 3, "type": "message", "date": "2022-05-01T09:05:00", "date_unixtime": "1651395900", "from": "Dad",
             "text": ["Yes, ", {"type": "bold", "text": "pancakes"}, "!"]},
            {"id": 4, "type": "message", "date": "2022-05-02T20:00:00", "date_unixtime": "1651521600", "from": "Mum",
             "text": "", "media_type": "sticker", "file": "sticker.webp"}]},
          {"name": "Work", "type": "personal_chat", "id": 2, "messages": [
            {"id": 9, "type": "message", "date": "2022-05-03T10:00:00", "from": "Boss", "text": "Standup"}]}]}})";
        auto ex = extractTelegram("result.json", json);
        QVERIFY2(ex.ok(), ex.status().toString().c_str());
        QCOMPARE(ex->documents.size(), size_t{3});
        QCOMPARE(ex->documents[0].title, std::string("Telegram Family 2022-05-01"));
        QVERIFY(ex->documents[0].text.find("Dad: Yes, pancakes!") != std::string::npos);
        QCOMPARE(ex->documents[0].participants, (std::vector<std::string>{"Mum", "Dad"}));
        QVERIFY(ex->documents[1].text.find("[sticker: sticker.webp]") != std::string::npos);
        QCOMPARE(formatDay(*ex->documents[2].dateUnix), std::string("2022-05-03"));
        QCOMPARE(extractTelegram("result.json", "{\"x\": 1}").status().code(), msa::ErrorCode::Unsupported);
        QCOMPARE(extractTelegram("result.json", "{\"chats\": [").status().code(), msa::ErrorCode::Corrupt);
    }
    void chatGpt() {
        // Node "b1" was edited into "b2": only the current branch root -> a -> b2 -> c is kept.
        const std::string json = R"([{"title": "Sourdough help", "create_time": 1700000000.5, "current_node": "c",
          "conversation_id": "conv-1", "mapping": {
           "root": {"id": "root", "message": null, "parent": null, "children": ["sys"]},
           "sys": {"id": "sys", "parent": "root", "children": ["a"], "message": {"author": {"role": "system"},
                   "content": {"content_type": "text", "parts": [""]}}},
           "a": {"id": "a", "parent": "sys", "children": ["b1", "b2"], "message": {"author": {"role": "user"},
                 "create_time": 1700000001, "content": {"content_type": "text", "parts": ["My starter is flat."]}}},
           "b1": {"id": "b1", "parent": "a", "children": [], "message": {"author": {"role": "assistant"},
                  "content": {"content_type": "text", "parts": ["OLD ANSWER"]}}},
           "b2": {"id": "b2", "parent": "a", "children": ["c"], "message": {"author": {"role": "assistant"},
                  "create_time": 1700000002, "content": {"content_type": "text", "parts": ["Feed it twice a day."]}}},
           "c": {"id": "c", "parent": "b2", "children": [], "message": {"author": {"role": "user"},
                 "create_time": 1700000003, "content": {"content_type": "text", "parts": ["Thanks!", {"asset": 1}]}}}}}])";
        auto ex = extractChatGpt("conversations.json", json);
        QVERIFY2(ex.ok(), ex.status().toString().c_str());
        QCOMPARE(ex->documents.size(), size_t{1});
        const ExtractedDocument& d = ex->documents[0];
        QCOMPARE(d.title, std::string("Sourdough help"));
        QCOMPARE(d.unitKind, std::string("conversation"));
        QCOMPARE(d.participants, (std::vector<std::string>{"user", "assistant"}));
        QCOMPARE(*d.dateUnix, int64_t{1700000000});
        QVERIFY(d.text.find("OLD ANSWER") == std::string::npos);
        QVERIFY(d.text.find("assistant: Feed it twice a day.") != std::string::npos);
        QVERIFY(d.text.find("user: Thanks!") != std::string::npos);
        QCOMPARE(d.metadata["messages"], nlohmann::json(3));
    }

    // ---- segmentation ------------------------------------------------------------------------
    void segmentation() {
        ExtractedDocument d;
        d.kind = "text";
        std::string text;
        for (int chapter = 1; chapter <= 6; ++chapter) {
            d.boundaries.push_back({text.size(), "Chapter " + std::to_string(chapter)});
            text += "Chapter " + std::to_string(chapter) + "\n\n";
            for (int p = 0; p < 40; ++p) text += "A sentence of the paragraph number " + std::to_string(p) + " here. Another one.\n\n";
        }
        d.text = normalizeText(text);
        ImportLimits limits;
        limits.tokenBudget = 512;   // 2048 bytes
        const std::vector<Segment> segs = segmentDocument(d, limits);
        QVERIFY(segs.size() > 6);
        size_t covered = 0, prevEnd = 0;
        for (const Segment& s : segs) {
            QCOMPARE(s.kind, std::string("section"));
            QVERIFY(s.end - s.start <= 2048);
            QVERIFY(s.start >= prevEnd);
            for (size_t i = prevEnd; i < s.start; ++i) QVERIFY(d.text[i] == '\n' || d.text[i] == ' ');
            QVERIFY(!s.label.empty());
            QCOMPARE(s.tokenEstimate, static_cast<int64_t>((s.end - s.start + 3) / 4));
            covered += s.end - s.start;
            prevEnd = s.end;
        }
        QVERIFY(covered > d.text.size() * 95 / 100);
        // Chapter starts are cut points: every chapter heading begins a segment.
        for (const Boundary& b : d.boundaries) {
            bool starts = false;
            for (const Segment& s : segs) starts |= s.start == b.offset;
            QVERIFY2(starts, b.label.c_str());
        }
        // A short document is one unit of its importer's kind.
        ExtractedDocument mail;
        mail.text = "short";
        mail.unitKind = "email";
        const auto one = segmentDocument(mail, limits);
        QCOMPARE(one.size(), size_t{1});
        QCOMPARE(one[0].kind, std::string("email"));
        // Text without any break is cut at UTF-8 character boundaries.
        ExtractedDocument blob;
        for (int i = 0; i < 3000; ++i) blob.text += "\xC3\xA9";
        for (const Segment& s : segmentDocument(blob, limits))
            QVERIFY(isValidUtf8(std::string_view(blob.text).substr(s.start, s.end - s.start)));
    }

    void longLinesHostile() {
        // A chat line of 2 MB once overflowed libstdc++'s recursive regex matcher; a text without any
        // break must segment in linear time.
        const std::string huge(2'000'000, 'x');
        const std::string chat = "06.08.2016, 13:23 - Ash: Hey!\n06.08.2016, 13:25 - Brock: " + huge + "\n";
        QCOMPARE(detectFileType("c.txt", std::string_view(chat).substr(0, 8192)).type, FileType::WhatsApp);
        QElapsedTimer t;
        t.start();
        auto ex = extractWhatsApp("c.txt", chat);
        QVERIFY(ex.ok());
        QCOMPARE(ex->documents.size(), size_t{1});
        const auto segs = segmentDocument(ex->documents[0], ImportLimits{});
        QVERIFY(segs.size() > 200);
        for (const Segment& seg : segs) QVERIFY(seg.end - seg.start <= 8192);
        QVERIFY2(t.elapsed() < 5000, "linear time");
    }

    void dates() {
        QCOMPARE(parseDate("2024-03-01").value_or(-1), int64_t{1709251200});
        QCOMPARE(parseDate("2024-03-01T10:00:00Z").value_or(-1), int64_t{1709287200});
        QCOMPARE(parseDate("2024-03-01T10:00:00+01:00").value_or(-1), int64_t{1709283600});
        QCOMPARE(parseDate("Fri, 01 Mar 2024 10:00:00 +0100").value_or(-1), int64_t{1709283600});
        QVERIFY(!parseDate("yesterday").has_value());
        QCOMPARE(formatDay(1709283600), std::string("2024-03-01"));
    }
};

QTEST_GUILESS_MAIN(TstCatalogImporters)
#include "tst_catalog_importers.moc"
