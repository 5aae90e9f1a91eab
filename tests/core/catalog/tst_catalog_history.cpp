// tst_catalog_history: chat history in the catalog (schema v2) and its users.
//
// Covers: the committed v1 fixture upgrades in place to v2 (rows intact, conversations/chat_turns
// present, foreign key cascade); a failed migration step leaves the file at v1 (the transaction);
// the Catalog API (createConversation, addChatTurn ordinals, conversations with turn counts, turns,
// turn, deleteConversation with its turns) and its failure codes; jobs::recordTurn stores a
// RoutingTrace that loadTurn gives back field for field (toJson equal); `msa history [--json]` and
// `msa history show TURN_ID [--json]` on the real binary.
#include "core/catalog/catalog.h"
#include "core/catalog/schema.h"
#include "core/catalog/sqlite_db.h"
#include "core/jobs/history.h"
#include "core/memory/trace.h"

#include <nlohmann/json.hpp>

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

using namespace msa::catalog;
using msa::ErrorCode;

namespace {

int64_t scalar(Db& db, const char* sql) {
    auto s = db.prepare(sql);
    if (!s || !s->step().valueOr(false)) return -1;
    return s->int64(0);
}

QString copyFixture(const QTemporaryDir& dir, const char* name) {
    const QString copy = dir.filePath(name);
    QFile::copy(QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/catalog/catalog-v1.sqlite"), copy);
    QFile::setPermissions(copy, QFile::ReadOwner | QFile::WriteOwner);
    return copy;
}

msa::memory::RoutingTrace sampleTrace() {
    using namespace msa::memory;
    RoutingTrace t;
    t.question = "Which city did the letter mention?";
    t.method = "training-free";
    t.routing = "training-free, layers 15-29, dot";
    t.model = "0123456789abcdef0123456789abcdef";
    t.bank = "/tmp/bank";
    t.topK = 2;
    TraceHop h;
    h.hop = 0;
    for (int layer : {15, 16}) {
        TraceLayer l;
        l.layer = layer;
        l.top = {{2, 0.75f + static_cast<float>(layer) / 100.0f, true, "Letter"}, {1, 0.5f, true, "Note"}, {3, 0.25f, false, "Mail"}};
        h.layers.push_back(l);
    }
    h.injected = {2, 1};
    h.promptTokens = 321;
    h.generatedTokens = 17;
    h.routeSeconds = 0.5;
    h.generateSeconds = 1.25;
    h.text = "Zürich.";
    t.hops.push_back(h);
    t.citations = {2};
    t.answer = "Zürich.";
    t.seconds = 1.75;
    t.firstTokenSeconds = 0.6;
    t.aggregate();
    return t;
}

int runMsa(const QStringList& args, QByteArray* out) {
    QProcess pr;
    pr.start(MSA_CLI_PATH, args);
    pr.waitForFinished(60000);
    *out = pr.readAllStandardOutput();
    return pr.exitCode();
}

}  // namespace

class TstCatalogHistory : public QObject {
    Q_OBJECT
private slots:
    void v1FixtureUpgradesToV2() {
        QTemporaryDir dir;
        const QString path = copyFixture(dir, "old.msacat");
        {
            auto raw = Db::open(path.toStdString(), true, false);
            QVERIFY(raw.ok());
            QCOMPARE(scalar(*raw, "PRAGMA user_version"), int64_t{1});
            QCOMPARE(scalar(*raw, "SELECT count(*) FROM sqlite_master WHERE name = 'chat_turns'"), int64_t{0});
        }
        auto cat = Catalog::open(path.toStdString());
        QVERIFY2(cat.ok(), cat.status().toString().c_str());
        QCOMPARE(cat->foundSchemaVersion(), 1);
        QVERIFY(latestSchemaVersion() >= 2);
        QCOMPARE(scalar(cat->db(), "PRAGMA user_version"), static_cast<int64_t>(latestSchemaVersion()));
        for (const char* table : {"conversations", "chat_turns"}) {
            auto s = cat->db().prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?");
            QVERIFY(s.ok());
            s->bind(1, table);
            QVERIFY(s->step().valueOr(false));
            QVERIFY2(s->int64(0) == 1, table);
        }
        // The old rows are intact and the new tables work on the upgraded file.
        auto st = cat->stats();
        QVERIFY(st.ok());
        QCOMPARE(st->nDocuments, int64_t{3});
        auto conv = cat->createConversation("upgraded", "/b", "fp");
        QVERIFY(conv.ok());
        ChatTurn t;
        t.conversationId = *conv;
        t.question = "q";
        QVERIFY(cat->addChatTurn(t).ok());
        auto integrity = cat->checkIntegrity();
        QVERIFY(integrity.ok() && integrity->ok);
    }

    // A read-only open never migrates: a v1 catalog stays readable by searches and builds, and the
    // history says what it needs.
    void readOnlyV1StaysReadable() {
        QTemporaryDir dir;
        const QString path = copyFixture(dir, "ro.msacat");
        auto cat = Catalog::open(path.toStdString(), {.readOnly = true, .create = false});
        QVERIFY2(cat.ok(), cat.status().toString().c_str());
        QCOMPARE(cat->schemaVersion(), 1);
        SearchQuery q;
        q.match = "quokka";
        auto hits = cat->search(q);
        QVERIFY(hits.ok() && hits->size() == 1);
        auto m = cat->memoryDocuments("fixture");
        QVERIFY(m.ok() && m->size() >= 3);
        auto convs = cat->conversations();
        QCOMPARE(convs.status().code(), ErrorCode::Unsupported);
        QVERIFY(convs.status().message().find("schema version 1") != std::string::npos);
        QCOMPARE(cat->turn(1).status().code(), ErrorCode::Unsupported);
        auto raw = Db::open(path.toStdString(), true, false);
        QVERIFY(raw.ok());
        QCOMPARE(scalar(*raw, "PRAGMA user_version"), int64_t{1});
        // `msa history` opens it read-write, which upgrades it.
        QByteArray out;
        QCOMPARE(runMsa({"history", "--catalog", path, "--json"}, &out), 0);
        QCOMPARE(scalar(*raw, "PRAGMA user_version"), static_cast<int64_t>(latestSchemaVersion()));
    }

    // The migration runs in one transaction: when its SQL fails halfway the file stays at v1.
    void failedMigrationLeavesV1() {
        QTemporaryDir dir;
        const QString path = copyFixture(dir, "blocked.msacat");
        {
            auto raw = Db::open(path.toStdString(), false, false);
            QVERIFY(raw.ok());
            // A table named like the second statement of migration 2: the first CREATE succeeds, the
            // second fails, and everything must roll back.
            QVERIFY(raw->exec("CREATE TABLE chat_turns (x INTEGER)").isOk());
        }
        auto cat = Catalog::open(path.toStdString());
        QVERIFY(!cat.ok());
        auto raw = Db::open(path.toStdString(), true, false);
        QVERIFY(raw.ok());
        QCOMPARE(scalar(*raw, "PRAGMA user_version"), int64_t{1});
        QCOMPARE(scalar(*raw, "SELECT count(*) FROM sqlite_master WHERE name = 'conversations'"), int64_t{0});
    }

    void api() {
        QTemporaryDir dir;
        auto cat = Catalog::open(dir.filePath("c.msacat").toStdString());
        QVERIFY(cat.ok());
        auto c1 = cat->createConversation("first", "/banks/a", "fp-a");
        auto c2 = cat->createConversation("second", "/banks/b", "fp-b");
        QVERIFY(c1.ok() && c2.ok());
        for (int i = 0; i < 3; ++i) {
            ChatTurn t;
            t.conversationId = *c1;
            t.question = "question " + std::to_string(i);
            t.answer = "answer " + std::to_string(i);
            t.citations = {int64_t{10} + i, 7};
            t.traceJson = R"({"k": [1, 2]})";
            t.method = "training-free";
            t.seconds = 0.5 * i;
            auto id = cat->addChatTurn(t);
            QVERIFY2(id.ok(), id.status().toString().c_str());
        }
        auto turns = cat->turns(*c1);
        QVERIFY(turns.ok());
        QCOMPARE(turns->size(), size_t{3});
        for (int i = 0; i < 3; ++i) {
            const ChatTurn& t = (*turns)[static_cast<size_t>(i)];
            QCOMPARE(t.ordinal, int64_t{i});
            QCOMPARE(t.question, "question " + std::to_string(i));
            QCOMPARE(t.citations, (std::vector<int64_t>{int64_t{10} + i, 7}));
            QCOMPARE(t.traceJson, std::string(R"({"k": [1, 2]})"));
            QCOMPARE(t.seconds, 0.5 * i);
            QVERIFY(t.createdAt > 1700000000);
        }
        auto one = cat->turn(turns->at(1).id);
        QVERIFY(one.ok());
        QCOMPARE(one->answer, std::string("answer 1"));
        auto convs = cat->conversations();
        QVERIFY(convs.ok());
        QCOMPARE(convs->size(), size_t{2});
        QCOMPARE(convs->front().id, *c2);   // newest first
        QCOMPARE(convs->back().nTurns, int64_t{3});
        QCOMPARE(convs->back().bankPath, std::string("/banks/a"));
        QCOMPARE(convs->back().modelFingerprint, std::string("fp-a"));

        // Failure codes.
        ChatTurn bad;
        bad.conversationId = *c1;
        QCOMPARE(cat->addChatTurn(bad).status().code(), ErrorCode::InvalidArgument);   // no question
        bad.question = "q";
        bad.traceJson = "{not json";
        QCOMPARE(cat->addChatTurn(bad).status().code(), ErrorCode::InvalidArgument);
        bad.traceJson = "{}";
        bad.conversationId = 9999;
        QCOMPARE(cat->addChatTurn(bad).status().code(), ErrorCode::NotFound);
        QCOMPARE(cat->turns(9999).status().code(), ErrorCode::NotFound);
        QCOMPARE(cat->turn(9999).status().code(), ErrorCode::NotFound);
        QCOMPARE(cat->deleteConversation(9999).code(), ErrorCode::NotFound);

        // Deleting a conversation deletes its turns (ON DELETE CASCADE), not the others'.
        QVERIFY(cat->deleteConversation(*c1).isOk());
        QCOMPARE(scalar(cat->db(), "SELECT count(*) FROM chat_turns"), int64_t{0});
        QCOMPARE(cat->conversations()->size(), size_t{1});
        QCOMPARE(cat->turn(one->id).status().code(), ErrorCode::NotFound);
    }

    void recordTurnKeepsTheTrace() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("c.msacat").toStdString();
        QVERIFY(Catalog::open(path).ok());
        const msa::memory::RoutingTrace trace = sampleTrace();
        auto r = msa::jobs::recordTurn(path, trace);
        QVERIFY2(r.ok(), r.status().toString().c_str());
        QCOMPARE(r->ordinal, int64_t{0});
        auto r2 = msa::jobs::recordTurn(path, trace, r->conversationId);   // a follow-up in the same conversation
        QVERIFY(r2.ok());
        QCOMPARE(r2->conversationId, r->conversationId);
        QCOMPARE(r2->ordinal, int64_t{1});
        auto loaded = msa::jobs::loadTurn(path, r->turnId);
        QVERIFY2(loaded.ok(), loaded.status().toString().c_str());
        QCOMPARE(loaded->turn.question, trace.question);
        QCOMPARE(loaded->turn.answer, trace.answer);
        QCOMPARE(loaded->turn.citations, trace.citations);
        QCOMPARE(loaded->turn.method, trace.method);
        QCOMPARE(loaded->conversation.title, trace.question);
        QCOMPARE(loaded->conversation.bankPath, trace.bank);
        QCOMPARE(loaded->conversation.modelFingerprint, trace.model);
        QVERIFY(loaded->trace.has_value());
        QCOMPARE(msa::memory::toJson(*loaded->trace).dump(), msa::memory::toJson(trace).dump());
        // A turn stored without a trace reads back without one; a missing catalog is NotFound.
        msa::jobs::TurnInput plain;
        plain.question = "plain";
        plain.answer = "no trace";
        auto r3 = msa::jobs::recordTurn(path, plain);
        QVERIFY(r3.ok());
        auto l3 = msa::jobs::loadTurn(path, r3->turnId);
        QVERIFY(l3.ok() && !l3->trace.has_value());
        QCOMPARE(msa::jobs::recordTurn(dir.filePath("none.msacat").toStdString(), trace).status().code(), ErrorCode::NotFound);
        // Titles never split a UTF-8 sequence.
        const std::string longQ = std::string(79, 'a') + "é and more";
        const std::string title = msa::jobs::conversationTitle(longQ);
        QCOMPARE(title, std::string(79, 'a') + "…");
    }

    void cli() {
        QTemporaryDir dir;
        const QString path = dir.filePath("c.msacat");
        QVERIFY(Catalog::open(path.toStdString()).ok());
        QByteArray out;
        QCOMPARE(runMsa({"history", "--catalog", path, "--json"}, &out), 0);
        QCOMPARE(QJsonDocument::fromJson(out).object()["conversations"].toArray().size(), 0);
        auto r = msa::jobs::recordTurn(path.toStdString(), sampleTrace());
        QVERIFY(r.ok());
        QCOMPARE(runMsa({"history", "--catalog", path, "--json"}, &out), 0);
        const QJsonArray convs = QJsonDocument::fromJson(out).object()["conversations"].toArray();
        QCOMPARE(convs.size(), 1);
        QCOMPARE(convs[0].toObject()["turns"].toInt(), 1);
        const QJsonObject turn = convs[0].toObject()["turn_list"].toArray()[0].toObject();
        QCOMPARE(turn["id"].toInteger(), r->turnId);
        QCOMPARE(turn["answer"].toString(), QString::fromUtf8("Zürich."));
        QCOMPARE(runMsa({"history", "--catalog", path}, &out), 0);
        QVERIFY(out.contains("Which city did the letter mention?"));
        QCOMPARE(runMsa({"history", "show", QString::number(r->turnId), "--catalog", path, "--json"}, &out), 0);
        const QJsonObject shown = QJsonDocument::fromJson(out).object();
        QCOMPARE(shown["citations"].toArray()[0].toInt(), 2);
        QCOMPARE(shown["trace"].toObject()["hops"].toArray().size(), 1);
        QCOMPARE(shown["trace"].toObject()["question"].toString(), QString("Which city did the letter mention?"));
        QCOMPARE(runMsa({"history", "show", QString::number(r->turnId), "--catalog", path}, &out), 0);
        QVERIFY(out.contains("layer 15:"));
        QVERIFY(out.contains("*[2]"));
        QVERIFY(out.contains("cited"));
        QCOMPARE(runMsa({"history", "show", "12345", "--catalog", path, "--json"}, &out), msa::exitCodeFor(ErrorCode::NotFound));
        QCOMPARE(QJsonDocument::fromJson(out).object()["error"].toObject()["code"].toString(), QString("not_found"));
    }
};

QTEST_GUILESS_MAIN(TstCatalogHistory)
#include "tst_catalog_history.moc"
