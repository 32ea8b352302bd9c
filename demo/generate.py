"""Writes demo/mentions.jsonl: calm multilingual chatter, then an outage burst.

Deterministic (seeded): `python demo/generate.py` rewrites the committed sample
that `make demo` replays. No created_at is set, so ingest stamps arrival time.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

CALM = [
    ("en", "Just switched my savings to @AcmeBank, the new app is really slick. Thanks team!"),
    ("en", "@AcmeBank how do I change the phone number linked to my account?"),
    ("en", "Been waiting 40 minutes on hold with @AcmeBank support. This is ridiculous."),
    ("en", "@AcmeBank charged me twice for the same transfer and nobody answers my emails"),
    ("en", "Win a free iPhone!!! Follow and RT, click bit.ly/free-acme-gift #AcmeBank #giveaway"),
    ("en", "Reading an article about @AcmeBank's quarterly results over coffee"),
    ("es", "@AcmeBank ¿a qué hora abre la sucursal del centro los sábados?"),
    ("es", "Gracias @AcmeBank por resolver lo de mi tarjeta tan rápido, ¡excelente atención!"),
    ("es", "Llevo tres días esperando que @AcmeBank me devuelva un cobro indebido. Pésimo servicio."),
    ("de", "Danke @AcmeBank, die Überweisung war in Sekunden da. Top!"),
    ("de", "@AcmeBank warum kostet die Kontoführung plötzlich 9 Euro im Monat? Frechheit."),
    ("fr", "@AcmeBank comment activer le paiement sans contact sur ma nouvelle carte ?"),
    ("fr", "Franchement le service client d'@AcmeBank est nul, personne ne répond jamais."),
    ("pt", "Adorei o novo cartão da @AcmeBank, atendimento nota 10!"),
    ("it", "@AcmeBank perché la mia carta è stata bloccata senza preavviso? Nessuno mi risponde"),
    ("el", "Ευχαριστώ @AcmeBank για τη γρήγορη εξυπηρέτηση σήμερα!"),
    ("el", "@AcmeBank πώς μπορώ να αλλάξω το PIN της κάρτας μου;"),
    ("ru", "@AcmeBank спасибо, кредит одобрили за один день, очень доволен"),
    ("ru", "@AcmeBank почему с меня списали комиссию за перевод? Это обман"),
    ("fa", "@AcmeBank ممنون از پشتیبانی خوبتون، مشکلم سریع حل شد"),
    ("ar", "@AcmeBank متى سيتم تفعيل البطاقة الجديدة؟ طلبتها منذ أسبوع"),
    ("ar", "خدمة عملاء @AcmeBank سيئة جدا، أنتظر منذ ساعة"),
    ("hi", "@AcmeBank मेरा पैसा दो बार कट गया, कोई जवाब नहीं दे रहा"),
    ("hi", "@AcmeBank yaar customer care kab call back karega? 3 din ho gaye"),
    ("en", "@AcmeBank your ATM gave me a burnt smell and sparks came out of the card slot, someone could get hurt"),
    ("en", "If @AcmeBank doesn't refund me by Friday I'm taking this to my lawyer and the financial ombudsman"),
]

OUTAGE = [
    ("en", "@AcmeBank app is down again, can't log in at all"),
    ("en", "is @AcmeBank down?? getting error 503 on every login"),
    ("en", "Can't make any payments with @AcmeBank, card declined everywhere and the app won't load"),
    ("en", "@AcmeBank website not loading, online banking completely dead"),
    ("es", "@AcmeBank la app no funciona, no puedo entrar a mi cuenta"),
    ("es", "¿Se cayó @AcmeBank? No carga nada desde hace media hora"),
    ("de", "@AcmeBank App geht nicht, Login schlägt ständig fehl"),
    ("fr", "@AcmeBank l'application est en panne, impossible de me connecter"),
    ("pt", "@AcmeBank o app caiu? Não consigo acessar minha conta"),
    ("it", "@AcmeBank l'app non funziona, non riesco ad accedere"),
    ("el", "@AcmeBank η εφαρμογή δεν λειτουργεί, δεν μπορώ να συνδεθώ"),
    ("ru", "@AcmeBank приложение не работает, не могу войти в аккаунт"),
    ("fa", "@AcmeBank اپلیکیشن از کار افتاده، نمی‌تونم وارد حسابم بشم"),
    ("ar", "@AcmeBank التطبيق معطل، لا أستطيع تسجيل الدخول"),
    ("hi", "@AcmeBank ऐप काम नहीं कर रहा, लॉगिन नहीं हो रहा"),
    ("hi", "@AcmeBank app phir se down hai yaar, login hi nahi ho raha"),
]

SOURCES = ["x", "reddit", "mastodon", "bluesky", "facebook", "app_store"]


def generate(n_calm: int = 160, n_outage: int = 120, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n_calm):
        lang, text = rng.choice(CALM)
        out.append(_mention(rng, f"calm-{i}", lang, text))
    for i in range(n_outage):
        lang, text = rng.choice(OUTAGE)
        out.append(_mention(rng, f"outage-{i}", lang, text))
    # a redelivery and a malformed record: ingest dedupes one and rejects the other
    out.append(dict(out[0]))
    out.append({"source": "x", "text": "missing id"})
    return out


def _mention(rng: random.Random, ident: str, lang: str, text: str) -> dict:
    followers = int(rng.lognormvariate(5.5, 2.0))
    return {
        "source": rng.choice(SOURCES), "external_id": f"demo-{ident}", "text": text, "lang": lang,
        "url": f"https://social.example/post/{ident}",
        "author": {"handle": f"user{rng.randint(1, 99999)}", "followers": followers,
                   "verified": followers > 200_000},
        "engagement": {"likes": rng.randint(0, 50), "reposts": rng.randint(0, 10),
                       "replies": rng.randint(0, 5), "quotes": 0},
        "brands": ["acmebank"],
    }


def main(argv: list[str] | None = None) -> int:
    path = Path((argv or sys.argv[1:] or [str(Path(__file__).with_name("mentions.jsonl"))])[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for m in generate():
            fh.write(json.dumps(m, ensure_ascii=False) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
