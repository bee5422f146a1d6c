"""The stopword/script language detector: right on typical helpdesk mail, silent when unsure, fast."""

from __future__ import annotations

import time

import pytest

from services.ingest.language import best_language, detect_language

SAMPLES = {
    "en": "Hello, I cannot log in to my account since yesterday. Could you please reset my password? Thanks",
    "de": "Guten Tag, ich kann mich seit gestern nicht mehr anmelden. Können Sie bitte mein Passwort zurücksetzen?",
    "fr": "Bonjour, je ne peux plus me connecter à mon compte depuis hier. Pouvez-vous réinitialiser mon mot de"
    " passe ? Merci et cordialement",
    "es": "Hola, no puedo entrar en mi cuenta desde ayer. ¿Podrían restablecer la contraseña, por favor? Gracias",
    "it": "Buongiorno, vorrei sapere quando arriva il mio ordine, grazie mille per la vostra pazienza.",
    "nl": "Goedemiddag, ik kan sinds gisteren niet meer inloggen op mijn account. Kunt u mijn wachtwoord"
    " herstellen? Met vriendelijke groet",
    "pt": "Olá, não consigo entrar na minha conta desde ontem. Podem redefinir a minha senha, por favor? Obrigado",
    "pl": "Dzień dobry, od wczoraj nie mogę zalogować się na moje konto. Czy mogą Państwo zresetować hasło?"
    " Dziękuję bardzo",
    "sv": "Hej, jag kan inte logga in på mitt konto sedan igår. Kan ni återställa mitt lösenord? Tack och"
    " vänliga hälsningar",
    "ru": "Здравствуйте, я не могу войти в свой аккаунт со вчерашнего дня. Пожалуйста, сбросьте мой пароль. Спасибо",
    "uk": "Добрий день, я не можу увійти до свого облікового запису з учора. Будь ласка, скиньте мій пароль. Дякую",
    "ja": "こんにちは。昨日からアカウントにログインできません。パスワードをリセットしていただけますか。",
    "zh": "你好，我从昨天开始无法登录我的账户。请帮我重置密码。谢谢",
    "ko": "안녕하세요, 어제부터 계정에 로그인할 수 없습니다. 비밀번호를 재설정해 주시겠습니까?",
    "el": "Καλημέρα, από χθες δεν μπορώ να συνδεθώ στον λογαριασμό μου. Μπορείτε να επαναφέρετε τον κωδικό;",
    "ar": "مرحبا، لا أستطيع تسجيل الدخول إلى حسابي منذ الأمس. هل يمكنكم إعادة تعيين كلمة المرور؟",
    "he": "שלום, אני לא מצליח להתחבר לחשבון שלי מאתמול. האם תוכלו לאפס את הסיסמה שלי?",
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_typical_helpdesk_mail_in_each_language(language: str) -> None:
    assert detect_language(SAMPLES[language]) == language


def test_too_little_or_no_evidence_is_no_answer() -> None:
    assert detect_language("") is None
    assert detect_language("ok") is None
    assert detect_language("Dell Quinn\nAccount Executive\nTel: 01 6188428\nFax: 01 6602244") is None
    assert detect_language("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=" * 5) is None


def test_quoted_lines_do_not_count() -> None:
    assert detect_language("> " + SAMPLES["de"] + "\n" + SAMPLES["en"]) == "en"


def test_a_tie_or_a_thin_lead_is_no_answer() -> None:
    assert best_language({"da": 3.0, "no": 2.9}) is None
    assert best_language({"de": 1.0}) is None
    assert best_language({"de": 4.0, "nl": 1.0}) == "de"


def test_cost_is_microseconds_not_milliseconds() -> None:
    text = (SAMPLES["en"] + "\n") * 20
    started = time.perf_counter()
    for _ in range(200):
        detect_language(text)
    assert (time.perf_counter() - started) / 200 < 0.001
