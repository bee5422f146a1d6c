"""The naive Bayes classifier: tokeniser, learning and unlearning, persistence, and the corpus."""

import json

import pytest

from services.router.classifier import Classifier, tokenize_mail, tokenize_text
from services.router.domain import RouterConfig, route
from tests.router.router_mailkit import CORPUS, MemoryIndex, corpus_files, make_mail, parse_raw

# --------------------------------------------------------------------------- tokeniser


def test_tokenizer_lowercases_and_handles_unicode() -> None:
    tokens = tokenize_text("Grüße aus MÜNCHEN! Привет, МИР. Ça va? naïve e-mail don't")
    assert {"grüße", "aus", "münchen", "привет", "мир", "ça", "va", "naïve", "e-mail", "don't"} <= set(tokens)


def test_tokenizer_splits_cjk_into_bigrams() -> None:
    assert tokenize_text("我的账户无法登录") == ["我的", "的账", "账户", "户无", "无法", "法登", "登录"]
    assert tokenize_text("アカウント") == ["アカ", "カウ", "ウン", "ント"]


def test_tokenizer_buckets_long_numbers_and_money() -> None:
    tokens = tokenize_text("Order 123456 costs $5 or €9, room 42")
    assert "#6" in tokens and "money:$" in tokens and "money:€" in tokens and "42" in tokens
    assert "123456" not in tokens


def test_mail_tokens_include_subject_sender_and_flags_but_never_spam_headers() -> None:
    mail = make_mail(
        "Cheap Meds",
        sender="promo@pharma.example",
        body="Visit http://www.pills.example/buy now",
        headers={"x-spam-status": "Yes, score=20", "x-spam-flag": "YES", "x-mailer": "MassMailer 2"},
    )
    tokens = tokenize_mail(mail)
    expected = {"subject:cheap", "cheap", "from:pharma.example", "url:pills.example", "x-mailer:massmailer"}
    assert expected <= set(tokens)
    assert not [t for t in tokens if "spam" in t]


def test_mail_tokens_are_distinct_and_capped() -> None:
    body = " ".join(f"word{i}" for i in range(5000))
    tokens = tokenize_mail(make_mail(body=body + " " + body), max_tokens=300)
    assert len(tokens) == 300 == len(set(tokens))
    assert tokens[0] == "subject:question"  # subject first, so it survives the cap


def test_html_only_mail_is_tokenised_from_its_html() -> None:
    mail = make_mail(body="", body_html="<html><body><font color=red>FREE money</font></body></html>")
    tokens = tokenize_mail(mail)
    assert {"free", "money", "tag:font", "meta:html_only"} <= set(tokens)


# --------------------------------------------------------------------------- learning


def _toy() -> Classifier:
    model = Classifier()
    for i in range(10):
        model.train(make_mail(f"invoice {i}", body="payment invoice overdue amount"), "Billing")
        model.train(make_mail(f"password {i}", body="login password reset account locked"), "Accounts")
        model.train(make_mail(f"winner {i}", body="lottery winner claim prize casino"), "Junk")
    return model


def test_predict_and_explain() -> None:
    prediction = _toy().predict(make_mail("cannot login", body="my password reset fails"))
    assert prediction is not None
    assert prediction.label == "Accounts"
    assert 0.5 < prediction.probability <= 1.0
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
    words = {w for feature in prediction.top_features for w in feature.removeprefix("bi:").split("_")}
    assert prediction.top_features and words <= {"login", "password", "reset"}
    assert prediction.explain().startswith("Accounts p=") and "top words: " in prediction.explain()


def test_spam_probability() -> None:
    model = _toy()
    assert model.spam_probability(make_mail("you are a winner", body="claim your lottery prize")) > 0.9
    assert model.spam_probability(make_mail("invoice", body="payment overdue")) < 0.1


def test_untrained_or_single_label_model_predicts_nothing() -> None:
    model = Classifier()
    assert model.predict(make_mail()) is None
    model.train(make_mail(), "Raw")
    assert model.predict(make_mail()) is None
    assert model.spam_probability(make_mail()) is None


def test_untrain_restores_the_counts_exactly() -> None:
    model = _toy()
    before = model.to_dict()
    extra = make_mail("brand new words", body="zyxxy quux frobnicate")
    model.train(extra, "Billing")
    model.untrain(extra, "Billing")
    after = model.to_dict()
    assert after.pop("version") == before.pop("version") + 2
    assert after == before


def test_untrain_never_goes_negative() -> None:
    model = _toy()
    model.untrain(make_mail("never seen"), "Nowhere")
    model.untrain(make_mail("never seen words"), "Billing")
    assert all(n > 0 for row in model.to_dict()["counts"].values() for n in row.values())
    assert model.document_count("Nowhere") == 0


def test_relabel_moves_a_mail_from_one_queue_to_another() -> None:
    model = _toy()
    mail = make_mail("refund please", body="refund chargeback money back")
    for _ in range(5):
        model.train(mail, "Accounts")
    assert model.predict(mail).label == "Accounts"
    for _ in range(5):
        model.relabel(mail, "Accounts", "Billing")  # the agents' TicketMoved corrections
    assert model.predict(mail).label == "Billing"
    assert model.document_count("Accounts") == 10


def test_state_roundtrips_through_json() -> None:
    model = _toy()
    restored = Classifier.from_dict(json.loads(json.dumps(model.to_dict())))
    mail = make_mail("password problem", body="account locked")
    assert restored.predict(mail) == model.predict(mail)
    assert restored.version == model.version
    assert restored.to_dict() == model.to_dict()


def test_from_dict_refuses_foreign_state() -> None:
    with pytest.raises(ValueError):
        Classifier.from_dict({"format": "something-else"})


def test_version_counts_every_change() -> None:
    model = Classifier()
    model.train(["a", "b"], "X")
    model.train(["c"], "Y")
    model.untrain(["c"], "Y")
    assert model.version == 3
    assert model.labels == ["X"]


# --------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus_split():
    if not (CORPUS / "spam").is_dir():
        pytest.skip(f"no corpus at {CORPUS}")
    halves: dict[str, tuple[list, list]] = {}
    for label in ("spam", "ham"):
        mails = [parse_raw(path.read_bytes()) for path in corpus_files(label)]
        halves[label] = (mails[0::2], mails[1::2])
    return halves


@pytest.fixture(scope="module")
def corpus_model(corpus_split) -> Classifier:
    model = Classifier()
    for label, queue in (("spam", "Junk"), ("ham", "Raw")):
        for mail in corpus_split[label][0]:
            model.train(mail, queue)
    return model


def test_learns_spam_from_half_the_corpus_and_recognises_the_other_half(corpus_split, corpus_model) -> None:
    threshold = RouterConfig().spam_threshold
    spam_scores = [corpus_model.spam_probability(m) for m in corpus_split["spam"][1]]
    ham_scores = [corpus_model.spam_probability(m) for m in corpus_split["ham"][1]]
    true_pos = sum(p >= threshold for p in spam_scores)
    false_pos = sum(p >= threshold for p in ham_scores)
    precision = true_pos / max(1, true_pos + false_pos)
    recall = true_pos / len(spam_scores)
    false_positive_rate = false_pos / len(ham_scores)
    accuracy = (true_pos + len(ham_scores) - false_pos) / (len(spam_scores) + len(ham_scores))
    print(
        f"\nspam classifier on held-out half: {len(spam_scores)} spam, {len(ham_scores)} ham, "
        f"threshold {threshold}: accuracy {accuracy:.4f}, precision {precision:.4f}, "
        f"recall {recall:.4f}, ham in Junk {false_positive_rate:.4f}"
    )
    assert accuracy > 0.9
    assert precision > 0.9
    assert recall > 0.85


def test_corpus_decisions_are_explained(corpus_split, corpus_model) -> None:
    config = RouterConfig(trust_spam_headers=False)
    spam = next(m for m in corpus_split["spam"][1] if corpus_model.spam_probability(m) > 0.99)
    result = route(spam, "m-1", [], config, MemoryIndex(), corpus_model)
    assert (result.queue, result.spam) == ("Junk", True)
    prediction = corpus_model.predict(spam)
    assert prediction.label == "Junk" and prediction.top_features
    assert any(r.step == "spam" and "classifier spam p=" in r.detail for r in result.reasons)
    print(f"\nexample: {spam.subject!r} → {prediction.explain()}")
