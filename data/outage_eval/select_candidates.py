"""Draw the candidate posts the team labels for the outage sets (data/outage_eval/).

Deterministic: every stratum is read in full or ranked by sha256(salt|text) and cut. Keyword lists here
only *find candidates* to read (outage posts are rare in the sentiment and customer-care sets); every
label in labels/ was given by a person reading the post by GUIDE.md, never by a keyword.

Strata (source family, where it is drawn from, and which set it may go to):
- crisislex held-out events (CRISISLEX_EVAL_EVENTS, never trained on): every "Infrastructure and
  utilities" post, plus posts of other types that mention a service (hard negatives, missed positives).
- humaid dev + test splits (training maps the train split only): a sample of infrastructure posts + other
  classes mentioning a service.
- disaster-response: records the documented mapping never uses (related=1, electricity=0) with an
  infrastructure/transport/water label or a service word; the Kreyol/Urdu `original` is the text when present.
- umsab (train + val, 8 languages): posts mentioning a service in that language.
- complaints (hard negatives and missed outages): UMSAB negative posts (train + val) that address a company or
  service, per language, and tweeteval emotion val/test anger/sadness posts that do (tweeteval trains on train only).
- customer-care first turns: posts mentioning a failure, plus a sample of the rest (in practice none are left: the
  realdev pools hold 1,022 of its 1,025 first turns).
Texts of data/realdev (dev and training pools) are never candidates, nor their retweets (compared by loose key).
Writes candidates.jsonl: {"id", "source", "lang", "ref", "text"}. With --train, writes train_candidates.jsonl instead:
the candidates of the team-labelled *training* pool (CrisisLex training events, HumAID's train split, Sandy forum
posts), none of which is an evaluation candidate (compared by loose key, so retweets count as the same post).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from services.classify.training.datasets import SHARED_DATA, UMSAB_LANGUAGES  # noqa: E402
from services.classify.training.intent_sources import CRISISLEX_EVAL_EVENTS, normalise  # noqa: E402

SERVICE_WORDS = {
    "en": r"power|electric|outage|blackout|black out|no light|\bgas\b|water|phone|signal|cell|mobile|internet|wifi|wi-fi"
          r"|network|service|down\b|offline|not working|isn'?t working|won'?t (load|work|open)|can'?t (log|sign|access|connect)"
          r"|crash|error|train|flight|airport|road|bridge|closed|cancel|payment|card|atm|declined|app\b|site|server|log ?in",
    "es": r"\bluz\b|electric|apag[oó]n|corte|sin agua|\bagua\b|internet|se cay[oó]|ca[ií]d[oa]|no funciona|se√al|señal"
          r"|movil|móvil|tel[eé]fon|wifi|red\b|servicio|tren|vuelo|aeropuerto|carretera|puente|cerrad|tarjeta|pago|cajero|app\b|web",
    "it": r"\bluce\b|corrente|elettric|blackout|black out|acqua|\bgas\b|internet|linea|rete\b|non funziona|down\b|telefon"
          r"|cellular|segnale|treni?\b|voli?\b|aeroporto|strad|ponte|chius|carta|pagament|bancomat|app\b|sito",
    "pt": r"\bluz\b|energia|apag[aã]o|[aá]gua|internet|caiu|fora do ar|n[aã]o funciona|sinal|celular|telefon|rede\b"
          r"|trem|voo|aeroporto|estrada|ponte|fechad|cart[aã]o|pagamento|app\b|site",
    "fr": r"courant|électricit|electricit|coupure|panne|\beau\b|internet|r[ée]seau|ne marche|ne fonctionne|bug|t[ée]l[ée]phon"
          r"|portable|train|sncf|\bvol\b|a[ée]roport|route|pont|ferm[ée]|carte|paiement|appli|site|\bdown\b|free\b|orange\b|bouygues|sfr",
    "de": r"\bstrom|ausfall|st[öo]rung|st[öo]rung|kein (netz|internet|wlan)|internet|netz\b|wlan|geht nicht|funktioniert nicht"
          r"|down\b|telefon|handy|bahn|\bzug|z[üu]ge|flug|flughafen|stra[ßs]e|br[üu]cke|gesperrt|karte|zahlung|app\b|seite|telekom|vodafone|o2\b",
    "hi": r"bijli|light nahi|light nhi|\blight\b|current|internet|\bnet\b|network|signal|paani|pani|\bwater\b|down\b|not working"
          r"|kaam nahi|chal nahi|train|railway|flight|airport|\bcard\b|payment|atm|app\b|site|jio|airtel|बिजली|नेटवर्क|पानी",
    "ar": r"كهرب|الكهرباء|انقطاع|مقطوع|قطع|النت\b|الانترنت|الإنترنت|شبكة|الشبكة|تغطية|الماء|المياه|لا يعمل|ما يشتغل|واقف|عطل"
          r"|طيار|مطار|قطار|بطاق|دفع|صراف|تطبيق|موقع|سيرفر|زين|موبايلي|stc|اتصالات",
}
SERVICE_WORDS["ht"] = r"kouran|elektrisite|limyè|limye|dlo|telefòn|telefon|rezo|machin|wout|pon|kay|bank|lajan"
SERVICE_WORDS["ur"] = r"bijli|pani|sarak|sadak|pul|phone|raasta|rasta"


def _rank(text: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}|{text}".encode("utf-8", "surrogatepass")).hexdigest()


def _id(source: str, ref: str) -> str:
    return "oe-" + hashlib.sha256(f"{source}|{ref}".encode()).hexdigest()[:10]


def _hit(lang: str, text: str) -> bool:
    return re.search(SERVICE_WORDS.get(lang, SERVICE_WORDS["en"]), text, flags=re.IGNORECASE) is not None


def realdev_texts() -> set[str]:
    """Normalised texts and loose keys (retweets and link variants) of both realdev pools."""
    from services.classify.training.intent_sources import loose_key

    out: set[str] = set()
    for name in ("pool.jsonl", "train_pool.jsonl"):
        path = REPO / "data" / "realdev" / name
        texts = [json.loads(x)["text"] for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        out |= {normalise(t) for t in texts} | {"loose:" + loose_key(t) for t in texts}
    return out


CRISISLEX_LANG = {"2013_Lac_Megantic_train_crash": "en", "2012_Italy_earthquakes": "it", "2012_Costa_Rica_earthquake": "es", "2013_Brazil_nightclub_fire": "pt",
                  "2012_Guatemala_earthquake": "es", "2012_Venezuela_refinery": "es", "2013_Sardinia_floods": "it",
                  "2013_Spain_train_crash": "es"}


def crisislex() -> list[dict]:
    out = []
    for f in sorted(glob.glob(str(SHARED_DATA / "crisislex-t26" / "*.csv"))):
        event = Path(f).name.replace("-tweets_labeled.csv", "")
        if event not in CRISISLEX_EVAL_EVENTS:
            continue
        default = CRISISLEX_LANG.get(event, "en")
        rows = list(csv.DictReader(open(f, encoding="utf-8", errors="replace", newline="")))
        infra = [r for r in rows if r[" Information Type"] == "Infrastructure and utilities"]
        other = [r for r in rows if r[" Information Type"] != "Infrastructure and utilities"
                 and _hit(default, r[" Tweet Text"]) and _hit("en", r[" Tweet Text"]) | _hit(default, r[" Tweet Text"])]
        infra = sorted(infra, key=lambda r: _rank(r[" Tweet Text"], event))[:150]
        other = sorted(other, key=lambda r: _rank(r[" Tweet Text"], event + "/other"))[:25]
        for r in infra + other:
            out.append({"source": f"crisislex:{event}", "lang": default, "ref": r["Tweet ID"], "text": r[" Tweet Text"]})
    return out


def humaid() -> list[dict]:
    rows = [r for r in csv.DictReader(open(SHARED_DATA / "humaid-maria" / "HumAID_maria_tweets.csv", encoding="utf-8"))
            if r["split"] in ("dev", "test")]
    infra = sorted([r for r in rows if r["class_label"] == "infrastructure_and_utility_damage"],
                   key=lambda r: _rank(r["tweet_text"], "humaid"))[:220]
    other = sorted([r for r in rows if r["class_label"] != "infrastructure_and_utility_damage"
                    and re.search(r"power|electric|water|cell|phone|signal|internet|airport|flight|atm|bank|cash",
                                  r["tweet_text"], re.I)], key=lambda r: _rank(r["tweet_text"], "humaid/o"))[:40]
    return [{"source": f"humaid:{r['class_label']}", "lang": "en", "ref": r["tweet_id"], "text": r["tweet_text"]}
            for r in infra + other]


def disaster_response() -> list[dict]:
    out = []
    for name in ("disaster_response_validation.csv", "disaster_response_test.csv"):
        for r in csv.DictReader(open(SHARED_DATA / "disaster-response" / name, encoding="utf-8", newline="")):
            if r["related"] != "1" or r["electricity"] == "1":
                continue   # the documented mapping uses electricity=1 and related=0: never candidates
            orig = r["original"].strip()
            lang = "en"
            text = r["message"]
            if orig and r["event"] == "haiti_earthquake":
                lang, text = "ht", orig
            elif orig and r["event"] == "pakistan_floods":
                lang, text = "ur", orig
            infra = any(r[k] == "1" for k in ("infrastructure_related", "transport", "other_infrastructure"))
            if infra or (_hit(lang, text) and re.search(r"electric|power|water|phone|network|road|bridge", r["message"], re.I)):
                out.append({"source": f"disaster-response:{r['event']}", "lang": lang, "ref": r["id"], "text": text})
    return sorted(out, key=lambda d: _rank(d["text"], "dr"))[:90]


def umsab() -> list[dict]:
    out = []
    for folder, lang in UMSAB_LANGUAGES.items():
        for split in ("train", "val"):
            texts = (SHARED_DATA / "umsab-sentiment" / folder / f"{split}_text.txt").read_text(encoding="utf-8").split("\n")
            hits = [(i, t) for i, t in enumerate(texts) if t.strip() and _hit(lang, t)
                    and re.search(OUTAGEISH[lang], t, re.I)]
            for i, t in hits:
                out.append({"source": f"umsab-{split}:{folder}", "lang": lang, "ref": str(i + 1), "text": t})
    return out


# Narrower words for UMSAB (sentiment tweets mention "service" or "water" for everything).
OUTAGEISH = {
    "en": r"no power|power (is )?(out|cut)|without power|outage|blackout|no electric|no internet|internet (is )?down|no signal"
          r"|no service|no wifi|wifi (is )?down|is down|went down|are down|been down|not working|won'?t load|can'?t log|can'?t connect|crash"
          r"|offline|no water|cancell?ed|delayed|suspended|declined|error",
    "es": r"sin luz|no hay luz|se fue la luz|apag[oó]n|corte de|sin agua|sin internet|no hay internet|se cay[oó]|ca[ií]d[oa]"
          r"|no funciona|sin se[ñn]al|sin servicio|sin red|suspendid|cancelad|retras",
    "it": r"senza luce|manca la luce|senza corrente|blackout|black out|senza acqua|senza internet|internet non|non funziona"
          r"|down\b|senza segnale|senza rete|linea|sospes|cancellat|ritard|bloccat|in tilt|interrott",
    "pt": r"sem luz|faltou luz|falta de luz|sem energia|apag[aã]o|sem [aá]gua|sem internet|internet (caiu|n[aã]o)|caiu|fora do ar"
          r"|n[aã]o funciona|sem sinal|sem rede|suspens|cancelad|atrasad|travad|\bnet\b",
    "fr": r"coupure|panne|plus de courant|pas de courant|sans courant|sans [ée]lectricit|plus d'eau|sans internet|pas d'internet"
          r"|plus d'internet|plus de r[ée]seau|pas de r[ée]seau|ne marche|ne fonctionne|bug|\bdown\b|supprim|annul|retard|bloqu|gr[eè]ve",
    "de": r"\bkein(en)? strom|stromausfall|ausfall|st[öo]rung|kein (netz|internet|wlan|empfang)|geht nicht|funktioniert nicht"
          r"|down\b|offline|verspätung|versp[äa]tet|gesperrt|f[äa]llt aus|ausgefallen|abgest[üu]rzt",
    "hi": r"bijli|light nahi|light nhi|light (gayi|gai|chali)|current nahi|net nahi|network nahi|signal nahi|paani nahi|pani nahi"
          r"|down\b|not working|kaam nahi|chal nahi|band hai|बिजली|नेटवर्क|cancel|delay|no power|no network|no signal|outage",
    "ar": r"انقطاع|انقطع|مقطوع|قطع|ما في كهرب|الكهرباء|الكهربا|النت|الانترنت|الإنترنت|الشبكة|تغطية|لا يعمل|ما يشتغل|واقف|عطل|معطل|تعطل|طايح",
}


COMPANY = {
    "en": r"customer service|@\w*(air|bank|care|help|support)|delay|fee\b|charged|refund|order|deliver|staff|rude|bill|price"
          r"|contract|subscription|airline|train|bus\b|uber|amazon|apple|samsung|verizon|comcast|at&t|sprint|netflix|xbox|playstation",
    "es": r"atenci[oó]n al cliente|movistar|vodafone|orange|telcel|renfe|iberia|vuelo|retras|factura|cobr|precio|pedido|tarjeta|banco",
    "it": r"trenitalia|italo|alitalia|ryanair|vodafone|tim\b|wind\b|fastweb|poste|ritard|bollett|prezz|servizio|assistenza|ordine",
    "pt": r"vivo\b|claro\b|\boi\b|tim\b|net\b|gol\b|tam\b|atendimento|atras|conta\b|cobr|pre[çc]o|pedido|banco|servi[çc]o",
    "fr": r"sncf|ratp|orange|free\b|sfr|bouygues|air france|retard|facture|service client|colis|commande|prix|banque|livraison",
    "de": r"\bbahn|telekom|vodafone|o2\b|lufthansa|versp[äa]t|rechnung|kundenservice|hotline|paket|bestell|preis|bank|dhl|hermes",
    "hi": r"airtel|jio|vodafone|irctc|railway|flight|indigo|customer care|service|bill|delivery|order|bank|refund|delay",
    "ar": r"خدمة العملاء|شركة|زين|موبايلي|stc|الاتصالات|فاتورة|تأخير|الطيران|البنك|طلب|توصيل|سعر|الأسعار|الخدمة",
}


def complaints() -> list[dict]:
    out = []
    for folder, lang in UMSAB_LANGUAGES.items():
        pool = []
        for split in ("train", "val"):
            d = SHARED_DATA / "umsab-sentiment" / folder
            texts = (d / f"{split}_text.txt").read_text(encoding="utf-8").split("\n")
            labels = (d / f"{split}_labels.txt").read_text(encoding="utf-8").split("\n")
            pool += [(f"umsab-{split}:{folder}", str(i + 1), t) for i, (t, y) in enumerate(zip(texts, labels, strict=False))
                     if y.strip() == "0" and re.search(COMPANY[lang], t, re.I)]
        for src, ref, t in sorted(pool, key=lambda x: _rank(x[2], "complaint/" + lang))[:40]:
            out.append({"source": src, "lang": lang, "ref": ref, "text": t})
    pool = []
    for split in ("val", "test"):
        d = SHARED_DATA / "tweeteval" / "emotion"
        texts = (d / f"{split}_text.txt").read_text(encoding="utf-8").split("\n")
        labels = (d / f"{split}_labels.txt").read_text(encoding="utf-8").split("\n")
        pool += [(f"tweeteval-{split}:emotion", str(i + 1), t) for i, (t, y) in enumerate(zip(texts, labels, strict=False))
                 if y.strip() in ("0", "3") and re.search(COMPANY["en"], t, re.I)]
    for src, ref, t in sorted(pool, key=lambda x: _rank(x[2], "complaint/tweeteval"))[:130]:
        out.append({"source": src, "lang": "en", "ref": ref, "text": t})
    return out


TWEET_FAILURE = (r"\bdown\b|outage|not working|isn'?t working|won'?t (load|work|open)|can'?t (log|sign|access|connect|load|get)"
                 r"|error|crash|not loading|offline|no (service|signal|internet|wifi|power|electricity)|declined|payment|atm\b"
                 r"|server|log ?in|wifi|internet|signal|power out|lights out|cancell?ed|delayed|refund|customer service|charged")


def english_tweets() -> list[dict]:
    """tweet-act (all acts) and tweeteval val/test (never trained on) posts that name a failure or a company."""
    out = []
    with (SHARED_DATA / "tweet-act" / "TWEET_DATA.csv").open(encoding="utf-8", newline="") as fh:
        rows = [(f"tweet-act:{act}", str(i + 1), text) for i, (text, act) in enumerate(csv.reader(fh))]
    hits = [r for r in rows if re.search(TWEET_FAILURE, r[2], re.I)]
    out += sorted(hits, key=lambda r: _rank(r[2], "tweet-act"))[:150]
    pool = []
    for task in ("irony", "offensive", "hate"):
        for split in ("val", "test"):
            path = SHARED_DATA / "tweeteval" / task / f"{split}_text.txt"
            if path.exists():
                texts = path.read_text(encoding="utf-8").split("\n")
                pool += [(f"tweeteval-{split}:{task}", str(i + 1), t) for i, t in enumerate(texts)
                         if t.strip() and re.search(TWEET_FAILURE, t, re.I)]
    out += sorted(pool, key=lambda r: _rank(r[2], "tweeteval"))[:80]
    return [{"source": s, "lang": "en", "ref": ref, "text": t} for s, ref, t in out]


def customer_care() -> list[dict]:
    path = SHARED_DATA / "customer-care-unlabelled" / "customer_care_texts.jsonl"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = json.loads(re.sub(r'\\(?![\\"/bfnrtu])', r"\\\\", line))
        if rec["role"] == "customer_first_turn":
            rows.append(rec)
    fail = re.compile(r"down\b|outage|not working|isn'?t working|won'?t (load|work|open|let)|can'?t (log|sign|access|connect|load|play|open)"
                      r"|unable to|error|crash|not loading|keeps? (crashing|failing|disconnect)|offline|no service|no signal|no internet"
                      r"|server|connection|declin|fail|broken|stuck|freez", re.I)
    hits = [r for r in rows if fail.search(r["text"])]
    rest = sorted([r for r in rows if not fail.search(r["text"])], key=lambda r: _rank(r["text"], "cc"))[:120]
    hits = sorted(hits, key=lambda r: _rank(r["text"], "cc/hit"))[:260]
    return [{"source": f"customer-care:{r['company']}", "lang": "en", "ref": r["tweet_id"], "text": r["text"]}
            for r in hits + rest]


FIRST_PERSON = (r"no power|without power|power (is |was |has been |went )?(out|off|cut)|lost power|no electric|no light|lights out"
                r"|no (cell|phone|signal|service|internet|wifi|water)|still no|power back|flicker|outage|sin luz|sin agua|sin se[ñn]al"
                r"|se fue la luz|senza luce|senza corrente|manca la luce|senza acqua|linea|sin internet|cortes? de")


def train_pool() -> list[dict]:
    """Candidates for the team-labelled *training* pool: CrisisLex training events (never the evaluation events),
    HumAID's train split, disaster-response's Sandy forum posts. Disjoint from the evaluation candidates."""
    out = []
    for f in sorted(glob.glob(str(SHARED_DATA / "crisislex-t26" / "*.csv"))):
        event = Path(f).name.replace("-tweets_labeled.csv", "")
        if event in CRISISLEX_EVAL_EVENTS:
            continue
        lang = CRISISLEX_LANG.get(event, "en")
        rows = list(csv.DictReader(open(f, encoding="utf-8", errors="replace", newline="")))
        infra = [r for r in rows if r[" Information Type"] == "Infrastructure and utilities"]
        fp = [r for r in rows if r[" Information Type"] != "Infrastructure and utilities"
              and re.search(FIRST_PERSON, r[" Tweet Text"], re.I)]
        for r in (sorted(infra, key=lambda r: _rank(r[" Tweet Text"], "train/" + event))[:22]
                  + sorted(fp, key=lambda r: _rank(r[" Tweet Text"], "train-fp/" + event))[:8]):
            out.append({"source": f"crisislex:{event}", "lang": lang, "ref": r["Tweet ID"], "text": r[" Tweet Text"]})
    rows = [r for r in csv.DictReader(open(SHARED_DATA / "humaid-maria" / "HumAID_maria_tweets.csv", encoding="utf-8"))
            if r["split"] == "train"]
    fp = [r for r in rows if re.search(FIRST_PERSON, r["tweet_text"], re.I)]
    for r in sorted(fp, key=lambda r: _rank(r["tweet_text"], "train/humaid"))[:90]:
        out.append({"source": f"humaid:{r['class_label']}", "lang": "en", "ref": r["tweet_id"], "text": r["tweet_text"]})
    for name in ("disaster_response_validation.csv", "disaster_response_test.csv"):
        for r in csv.DictReader(open(SHARED_DATA / "disaster-response" / name, encoding="utf-8", newline="")):
            if r["event"] == "usa_sandy":
                out.append({"source": "disaster-response:usa_sandy", "lang": "en", "ref": r["id"], "text": r["message"]})
    return out


def main() -> None:
    if "--train" in sys.argv:
        from services.classify.training.intent_sources import loose_key
        taken = realdev_texts() | {normalise(json.loads(x)["text"]) for x in
                                   (HERE / "candidates.jsonl").read_text(encoding="utf-8").splitlines()}
        eval_keys = {loose_key(json.loads(x)["text"]) for x in (HERE / "candidates.jsonl").read_text(encoding="utf-8").splitlines()}
        out = []
        for d in train_pool():
            key = normalise(d["text"])
            if not key or key in taken or loose_key(d["text"]) in eval_keys:
                continue
            taken.add(key)
            out.append({"id": _id(d["source"], d["ref"]), **d})
        with (HERE / "train_candidates.jsonl").open("w", encoding="utf-8") as fh:
            for d in out:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        from collections import Counter
        print(Counter(d["source"].split(":")[0] + ":" + d["lang"] for d in out))
        return
    from services.classify.training.intent_sources import loose_key

    seen = realdev_texts()
    out = []
    for d in crisislex() + humaid() + disaster_response() + umsab() + complaints() + english_tweets() + customer_care():
        key = normalise(d["text"])
        if not key or key in seen or "loose:" + loose_key(d["text"]) in seen:
            continue
        seen.add(key)
        out.append({"id": _id(d["source"], d["ref"]), **d})
    with (HERE / "candidates.jsonl").open("w", encoding="utf-8") as fh:
        for d in out:
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    from collections import Counter
    print(Counter(d["source"].split(":")[0] + ":" + d["lang"] for d in out))


if __name__ == "__main__":
    main()
