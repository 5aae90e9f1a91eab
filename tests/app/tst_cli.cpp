// tst_cli.cpp: the `msa` executable's contract for scripts: --version, --help on every subcommand,
// exit codes (0 ok, 2 usage, 3 not found, 5 corrupt, 6 unimplemented, 9 device), one-line reasons on
// stderr, and --json output that parses. Runs the real binary with QProcess.
// Extend: when a subcommand becomes real, replace its "unimplemented" case with its own cases.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QtTest>

namespace {
struct Run {
    int exitCode = -1;
    QString out;
    QString err;
};

Run runMsa(const QStringList& args, const QMap<QString, QString>& env = {}) {
    QProcess p;
    QProcessEnvironment e = QProcessEnvironment::systemEnvironment();
    for (auto it = env.begin(); it != env.end(); ++it) e.insert(it.key(), it.value());
    p.setProcessEnvironment(e);
    p.start(QStringLiteral(MSA_CLI_PATH), args);
    if (!p.waitForFinished(60000)) {
        p.kill();
        return {};
    }
    Run r;
    r.exitCode = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    r.out = QString::fromUtf8(p.readAllStandardOutput());
    r.err = QString::fromUtf8(p.readAllStandardError());
    return r;
}

// Errors are one line: "msa ...: <reason>\n".
bool isOneLine(const QString& s) { return s.endsWith('\n') && s.count('\n') == 1 && s.size() > 10; }

QStringList subcommandsFromHelp(const QString& help) {
    QStringList names;
    const int at = help.indexOf(QStringLiteral("Subcommands:"));
    if (at < 0) return names;
    const QRegularExpression line(QStringLiteral("^\\s{2}(\\w[\\w-]*)\\s"), QRegularExpression::MultilineOption);
    auto it = line.globalMatch(help.mid(at));
    while (it.hasNext()) names << it.next().captured(1);
    return names;
}
}  // namespace

class TestCli : public QObject {
    Q_OBJECT
private slots:
    void version() {
        const Run r = runMsa({"--version"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY2(QRegularExpression("^msa \\d+\\.\\d+\\.\\d+").match(r.out).hasMatch(), qPrintable(r.out));
    }

    void helpForEverySubcommand() {
        const Run top = runMsa({"--help"});
        QCOMPARE(top.exitCode, 0);
        const QStringList subs = subcommandsFromHelp(top.out);
        for (const char* expected : {"doctor", "import", "search", "build", "route", "ask", "bank", "bench"})
            QVERIFY2(subs.contains(expected), qPrintable(QStringLiteral("missing %1 in:\n%2").arg(expected, top.out)));
        for (const QString& sub : subs) {
            const Run r = runMsa({sub, "--help"});
            QVERIFY2(r.exitCode == 0, qPrintable(sub));
            QVERIFY2(r.out.contains(sub) && r.out.contains("--help"), qPrintable(sub + ":\n" + r.out));
        }
    }

    void usageErrorsExitTwoWithOneLine() {
        const Run none = runMsa({});
        QCOMPARE(none.exitCode, 2);
        QVERIFY2(isOneLine(none.err), qPrintable(none.err));
        const Run unknown = runMsa({"frobnicate"});
        QCOMPARE(unknown.exitCode, 2);
        QVERIFY2(isOneLine(unknown.err) && unknown.err.contains("frobnicate"), qPrintable(unknown.err));
        const Run badOption = runMsa({"doctor", "--no-such-option"});
        QCOMPARE(badOption.exitCode, 2);
        QVERIFY2(isOneLine(badOption.err) && badOption.err.contains("--no-such-option"), qPrintable(badOption.err));
        const Run missingArg = runMsa({"route", "--bank"});
        QCOMPARE(missingArg.exitCode, 2);
        QVERIFY2(isOneLine(missingArg.err), qPrintable(missingArg.err));
    }

    void doctorText() {
        const Run r = runMsa({"doctor"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY2(r.out.contains("cpu: usable"), qPrintable(r.out));
        QVERIFY2(r.out.contains("cuda:"), qPrintable(r.out));   // built or not, the CUDA line says why
        QVERIFY(r.out.contains("demo model:"));
    }

    void doctorJson() {
        const Run r = runMsa({"doctor", "--json"});
        QCOMPARE(r.exitCode, 0);
        QJsonParseError pe;
        const QJsonDocument doc = QJsonDocument::fromJson(r.out.toUtf8(), &pe);
        QVERIFY2(pe.error == QJsonParseError::NoError, qPrintable(pe.errorString() + "\n" + r.out));
        const QJsonObject o = doc.object();
        QVERIFY(o["ok"].toBool());
        const QJsonArray backends = o["backends"].toArray();
        QCOMPARE(backends.size(), 2);
        QCOMPARE(backends[0].toObject()["name"].toString(), QString("cpu"));
        const QJsonObject cuda = backends[1].toObject();
        QCOMPARE(cuda["name"].toString(), QString("cuda"));
        if (!cuda["usable"].toBool()) QVERIFY(!cuda["reason"].toString().isEmpty());
        QVERIFY(o["demo_model"].toObject().contains("present"));
    }

    void doctorRequireModel() {
        QTemporaryDir dir;
        const QString missing = dir.filePath("missing.gguf");
        const Run absent = runMsa({"doctor", "--require-model"}, {{"MSA_DEMO_MODEL", missing}});
        QCOMPARE(absent.exitCode, 3);
        QVERIFY2(isOneLine(absent.err) && absent.err.contains("not_found"), qPrintable(absent.err));
        QFile bad(dir.filePath("bad.gguf"));
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write("this is not a GGUF file");
        bad.close();
        const Run corrupt = runMsa({"doctor", "--require-model"}, {{"MSA_DEMO_MODEL", bad.fileName()}});
        QCOMPARE(corrupt.exitCode, 5);
        QVERIFY2(corrupt.err.contains("corrupt") && corrupt.err.contains("magic"), qPrintable(corrupt.err));
    }

    void doctorRequireGpu() {
        const Run r = runMsa({"doctor", "--json", "--require-gpu"});
        const QJsonObject cuda = QJsonDocument::fromJson(r.out.toUtf8()).object()["backends"].toArray()[1].toObject();
        if (cuda["usable"].toBool()) {
            QCOMPARE(r.exitCode, 0);
        } else {
            QCOMPARE(r.exitCode, 9);
            QVERIFY2(r.err.contains("no usable GPU"), qPrintable(r.err));
        }
    }

    void modelCommands() {
        const QString tiny = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32");
        const QString msaTiny = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16");
        const Run missing = runMsa({"info", "--model", "/nonexistent/model.gguf"});
        QCOMPARE(missing.exitCode, 3);
        QVERIFY2(isOneLine(missing.err), qPrintable(missing.err));

        const Run info = runMsa({"info", "--json", "--model", tiny});
        QCOMPARE(info.exitCode, 0);
        const QJsonObject i = QJsonDocument::fromJson(info.out.toUtf8()).object();
        QCOMPARE(i["routing_mode"].toString(), QString("training-free"));
        QCOMPARE(i["config"].toObject()["architecture"].toString(), QString("qwen3"));
        QCOMPARE(i["fingerprint"].toString().size(), 32);
        const Run msaInfo = runMsa({"info", "--json", "--model", msaTiny});
        QCOMPARE(msaInfo.exitCode, 0);
        QCOMPARE(QJsonDocument::fromJson(msaInfo.out.toUtf8()).object()["routing_mode"].toString(), QString("msa-trained"));

        // The tiny models' tokenizer is byte-level: "hé" is the bytes 104, 195, 169.
        const Run tok = runMsa({"tokenize", "--model", tiny, QString::fromUtf8("hé")});
        QCOMPARE(tok.exitCode, 0);
        QCOMPARE(tok.out.trimmed(), QString("104 195 169"));

        const Run gen = runMsa({"generate", "--json", "--model", tiny, "--max-tokens", "5", "abc"});
        QCOMPARE(gen.exitCode, 0);
        const QJsonObject g = QJsonDocument::fromJson(gen.out.toUtf8()).object();
        QCOMPARE(g["tokens"].toArray().size(), 5);
        QCOMPARE(g["stop_reason"].toString(), QString("max-tokens"));
        QCOMPARE(g["prompt_tokens"].toInt(), 3);
        QVERIFY(g.contains("decode_tokens_per_s"));
        const Run again = runMsa({"generate", "--json", "--model", tiny, "--max-tokens", "5", "abc"});
        QCOMPARE(QJsonDocument::fromJson(again.out.toUtf8()).object()["tokens"], g["tokens"]);   // greedy is deterministic

        QCOMPARE(runMsa({"generate", "--model", tiny, "--top-p", "0", "abc"}).exitCode, 2);
        QCOMPARE(runMsa({"bench", "gpu-magic", "--model", tiny}).exitCode, 6);
    }

    void demoModelTokenizeAndChat() {
        const Run doctor = runMsa({"doctor", "--json"});
        const QJsonObject dm = QJsonDocument::fromJson(doctor.out.toUtf8()).object()["demo_model"].toObject();
        if (!dm["valid"].toBool()) QSKIP("demo model absent: run packaging/setup.sh build");
        const QString model = dm["path"].toString();
        // Ids from transformers' GGUF tokenizer (AutoTokenizer.from_pretrained(..., gguf_file=...)).
        const Run tok = runMsa({"tokenize", "--model", model, QString::fromUtf8("Hello world, ünïcödé!")});
        QCOMPARE(tok.exitCode, 0);
        QCOMPARE(tok.out.trimmed(), QString("19556 905 28 5549 137 94 25972 83 7466 84 2756 17"));
        const Run chat = runMsa({"generate", "--chat", "--json", "--model", model, "--max-tokens", "24",
                                 "What is the capital of France? Answer in one sentence."});
        QCOMPARE(chat.exitCode, 0);
        const QJsonObject c = QJsonDocument::fromJson(chat.out.toUtf8()).object();
        QCOMPARE(c["text"].toString(), QString("The capital of France is Paris."));
        QCOMPARE(c["stop_reason"].toString(), QString("eos"));
    }

    void memoryCommandErrors() {
        // A missing bank is NotFound (exit 3), with a JSON error object for scripts.
        const QString tiny = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32");
        const Run r = runMsa({"route", "--json", "--bank", "/nonexistent/bank", "--model", tiny, "who?"});
        QCOMPARE(r.exitCode, 3);
        QVERIFY2(isOneLine(r.err), qPrintable(r.err));
        const QJsonObject o = QJsonDocument::fromJson(r.out.toUtf8()).object();
        QCOMPARE(o["ok"].toBool(true), false);
        QCOMPARE(o["error"].toObject()["code"].toString(), QString("not_found"));
        QCOMPARE(runMsa({"ask", "--bank", "b", "--model", tiny, "q"}).exitCode, 2);   // --catalog is required
    }

    void evalDatasetFile() {
        // `msa eval FILE` detects the format, builds its memory in --workdir and prints JSON recall.
        QTemporaryDir dir;
        const QString msaTiny = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16");
        const QString fixtures = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/eval");
        const Run r = runMsa({"eval", "--json", "--model", msaTiny, "--workdir", dir.filePath("w"), "--k", "3",
                              fixtures + "/locomo-mini.json"});
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        const QJsonObject o = QJsonDocument::fromJson(r.out.toUtf8()).object();
        QCOMPARE(o["ok"].toBool(), true);
        QCOMPARE(o["format"].toString(), QString("locomo"));
        QCOMPARE(o["memory_documents"].toInt(), 3);
        QCOMPARE(o["questions"].toArray().size(), 5);
        for (const char* f : {"recall_at_1", "recall_at_5", "recall_at_k", "bm25_recall_at_1", "bm25_recall_at_5", "bm25_recall_at_k"})
            QVERIFY2(o[f].isDouble(), f);
        // k = 3 = every session: each routing layer's top 3 holds every gold session.
        for (const auto& l : o["layers"].toArray()) QCOMPARE(l.toObject()["recall_at_k"].toDouble(), 1.0);
        // The text table.
        const Run t = runMsa({"eval", "--model", msaTiny, "--workdir", dir.filePath("w"), "--limit", "2",
                              fixtures + "/musique-mini.json"});
        QVERIFY2(t.exitCode == 0, qPrintable(t.err));
        QVERIFY2(t.out.contains("routing  recall@1") && t.out.contains("BM25     recall@1") && t.out.contains("2hop__3_4"),
                 qPrintable(t.out));
        // A malformed file is Corrupt (exit 5) naming the field; demo questions need --bank/--catalog (usage, 2).
        QFile bad(dir.filePath("bad.json"));
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write(R"([{"question": "q", "paragraphs": [{"paragraph_text": 3}]}])");
        bad.close();
        const Run c = runMsa({"eval", "--model", msaTiny, "--workdir", dir.filePath("w2"), bad.fileName()});
        QCOMPARE(c.exitCode, 5);
        QVERIFY2(c.err.contains("question 0: paragraphs[0]: paragraph_text is not a string"), qPrintable(c.err));
        QCOMPARE(runMsa({"eval", "--model", msaTiny, QStringLiteral(MSA_SOURCE_DIR "/resources/demo/questions.json")}).exitCode, 2);
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "tst_cli.moc"
