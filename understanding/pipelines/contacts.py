"""Contact details and payment requests in text: the main scam vector in dating and video chat.

Pure functions over a string (a text chunk, a transcript window, OCR text). Each finding has
the character span in the ORIGINAL text, its kind, the platform when one is named, and a
normalised value (E.164 phone, lower-case e-mail, `platform:handle`, address), so a policy can
act on it and a redaction can mask exactly those characters.

Parsers used (maintained ones where they exist):
- phone numbers: `phonenumbers` (Google libphonenumber port, Apache-2.0) `PhoneNumberMatcher`
  per line and region hint; a match counts when libphonenumber's VALID leniency accepts it, or
  when it is a possible number right after a phone word ("call", "whatsapp", "電話", "رقم"...). It already reads full-width and Arabic-Indic digits
  and spaced-out digits ("0 1 0 - 1 2 3 4 - 5 6 7 8"). Numbers written without a country code
  are only found for the regions hinted (explicit regions, the text's language, else
  `DEFAULT_REGIONS`).
- URLs and e-mail addresses: `urlextract` (MIT; TLD list shipped in the package, never updated
  at run time), after NFKC normalisation (full-width "＠", "．") and undoing the common
  obfuscations "name (at) gmail (dot) com".
- social handles and payment handles: patterns for platform keywords in several languages and
  scripts ("ig:", "snap", "telegram"/"тг"/"电报", "kakao"/"카톡", "line id"/"ライン",
  "whatsapp"/"واتساب", "venmo", "cashapp", "$cashtag"...) and for platform URLs (wa.me, t.me,
  instagram.com/..., paypal.me/...). No maintained multi-platform parser exists.
- crypto addresses: checksums are verified (Base58Check for Bitcoin legacy/P2SH, Litecoin,
  Dogecoin, Tron; Bech32/Bech32m for bc1/ltc1; IBAN mod-97); Ethereum-style 0x addresses are
  matched by form (their EIP-55 checksum needs Keccak, which hashlib lacks).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatcher

__all__ = [
    "DEFAULT_REGIONS",
    "Contact",
    "ContactKind",
    "find_contacts",
    "normalize_text",
    "regions_for_language",
]


class ContactKind(enum.Enum):
    PHONE = "phone"
    EMAIL = "email"
    URL = "url"
    HANDLE = "handle"
    PAYMENT = "payment"


@dataclass(frozen=True, slots=True)
class Contact:
    """One contact detail: `text[start:end]` of the original text is the evidence."""

    kind: ContactKind
    start: int
    end: int
    text: str
    value: str
    platform: str = ""


# Regions tried for national-format numbers when neither regions nor a language are given.
DEFAULT_REGIONS: tuple[str, ...] = ("US",)

# Where a language is mostly written, most likely first (a hint, not a truth: capped at 3).
_LANGUAGE_REGIONS: dict[str, tuple[str, ...]] = {
    "en": ("US", "GB", "IN"), "es": ("ES", "MX", "AR"), "pt": ("BR", "PT"), "fr": ("FR", "BE", "CA"),
    "de": ("DE", "AT", "CH"), "it": ("IT",), "nl": ("NL", "BE"), "pl": ("PL",), "ru": ("RU", "KZ", "BY"),
    "uk": ("UA",), "tr": ("TR",), "ar": ("SA", "EG", "AE"), "fa": ("IR",), "he": ("IL",), "hi": ("IN",),
    "bn": ("BD", "IN"), "ur": ("PK",), "id": ("ID",), "ms": ("MY",), "vi": ("VN",), "th": ("TH",),
    "ja": ("JP",), "ko": ("KR",), "zh": ("CN", "TW", "HK"), "tl": ("PH",), "sv": ("SE",), "da": ("DK",),
    "no": ("NO",), "nb": ("NO",), "fi": ("FI",), "cs": ("CZ",), "sk": ("SK",), "hu": ("HU",), "ro": ("RO",),
    "el": ("GR",), "bg": ("BG",), "sr": ("RS",), "hr": ("HR",), "sw": ("KE", "TZ"), "am": ("ET",),
}  # fmt: skip
_MAX_REGIONS = 4


def regions_for_language(language: str | None) -> tuple[str, ...]:
    """Likely phone regions for an ISO 639-1 language code (empty when unknown)."""
    if not language:
        return ()
    return _LANGUAGE_REGIONS.get(language.lower().split("-")[0].split("_")[0], ())


# ---------------------------------------------------------------- normalisation with an offset map


def normalize_text(text: str) -> tuple[str, list[int]]:
    """NFKC per character (full-width forms, ligatures, circled digits) plus Unicode decimal
    digits to ASCII, and `offsets[i]` = index in `text` of normalised character i.

    Per character, so every normalised character maps back to exactly one original one.
    """
    out: list[str] = []
    offsets: list[int] = []
    for index, char in enumerate(text):
        if char.isascii():
            piece = char
        else:
            digit = unicodedata.decimal(char, None)
            piece = str(digit) if digit is not None else unicodedata.normalize("NFKC", char)
        out.append(piece)
        offsets.extend([index] * len(piece))
    offsets.append(len(text))
    return "".join(out), offsets


@dataclass(slots=True)
class _Span:
    kind: ContactKind
    start: int  # in the normalised text
    end: int
    value: str
    platform: str = ""
    priority: int = 0  # wins overlaps: specific (platform-named) before generic


# ---------------------------------------------------------------- platforms

# Keyword (any script) -> platform. Longer keywords are tried first.
_HANDLE_KEYWORDS: dict[str, str] = {
    "instagram": "instagram", "insta": "instagram", "ig": "instagram", "инста": "instagram",
    "инстаграм": "instagram", "インスタ": "instagram", "인스타": "instagram", "انستا": "instagram",
    "انستغرام": "instagram", "snapchat": "snapchat", "snap": "snapchat", "sc": "snapchat", "снэп": "snapchat",
    "telegram": "telegram", "tg": "telegram", "телеграм": "telegram", "телега": "telegram", "тг": "telegram",
    "电报": "telegram", "飞机": "telegram", "تلغرام": "telegram", "تيليجرام": "telegram", "テレグラム": "telegram",
    "whatsapp": "whatsapp", "whats app": "whatsapp", "wa": "whatsapp", "watsap": "whatsapp", "ватсап": "whatsapp",
    "вотсап": "whatsapp", "واتساب": "whatsapp", "واتس": "whatsapp",
    "kakaotalk": "kakao", "kakao talk": "kakao", "kakao id": "kakao", "kakao": "kakao", "카톡": "kakao",
    "카카오톡": "kakao", "카카오": "kakao", "カカオ": "kakao",
    "line id": "line", "line": "line", "ライン": "line", "라인": "line",
    "wechat": "wechat", "weixin": "wechat", "微信": "wechat", "vx": "wechat", "wx": "wechat",
    "kik": "kik", "discord": "discord", "tiktok": "tiktok", "抖音": "tiktok", "twitter": "twitter",
    "facebook": "facebook", "fb": "facebook", "onlyfans": "onlyfans", "signal": "signal", "skype": "skype",
    "viber": "viber", "вайбер": "viber", "threads": "threads", "qq": "qq", "zalo": "zalo", "imo": "imo",
}  # fmt: skip
_PAYMENT_KEYWORDS: dict[str, str] = {
    "venmo": "venmo", "cashapp": "cashapp", "cash app": "cashapp", "paypal": "paypal", "zelle": "zelle",
    "revolut": "revolut", "alipay": "alipay", "支付宝": "alipay", "wechat pay": "wechat_pay", "微信支付": "wechat_pay",
    "payoneer": "payoneer", "skrill": "skrill", "wise": "wise", "apple pay": "apple_pay", "google pay": "google_pay",
    "gcash": "gcash", "paytm": "paytm", "upi": "upi", "btc": "bitcoin", "bitcoin": "bitcoin", "eth": "ethereum",
    "usdt": "usdt", "binance": "binance", "binance pay": "binance",
}  # fmt: skip
# Gift-card payment requests: a classic scam; the card brand is the platform.
_GIFT_CARD = re.compile(
    r"\b(steam|google\s*play|itunes|apple|amazon|ebay|razer\s*gold|vanilla|sephora|walmart)\s*(gift\s*)?cards?\b",
    re.IGNORECASE,
)

# Host (and path shape) -> (kind, platform). The first path segment is the handle.
_PLATFORM_HOSTS: dict[str, tuple[ContactKind, str]] = {
    "wa.me": (ContactKind.PHONE, "whatsapp"), "api.whatsapp.com": (ContactKind.PHONE, "whatsapp"),
    "t.me": (ContactKind.HANDLE, "telegram"), "telegram.me": (ContactKind.HANDLE, "telegram"),
    "instagram.com": (ContactKind.HANDLE, "instagram"), "snapchat.com": (ContactKind.HANDLE, "snapchat"),
    "tiktok.com": (ContactKind.HANDLE, "tiktok"), "twitter.com": (ContactKind.HANDLE, "twitter"),
    "x.com": (ContactKind.HANDLE, "twitter"), "facebook.com": (ContactKind.HANDLE, "facebook"),
    "fb.com": (ContactKind.HANDLE, "facebook"), "m.me": (ContactKind.HANDLE, "facebook"),
    "onlyfans.com": (ContactKind.HANDLE, "onlyfans"), "line.me": (ContactKind.HANDLE, "line"),
    "discord.gg": (ContactKind.HANDLE, "discord"), "discord.com": (ContactKind.HANDLE, "discord"),
    "kik.me": (ContactKind.HANDLE, "kik"), "linktr.ee": (ContactKind.HANDLE, "linktree"),
    "open.kakao.com": (ContactKind.HANDLE, "kakao"), "qr.kakao.com": (ContactKind.HANDLE, "kakao"),
    "paypal.me": (ContactKind.PAYMENT, "paypal"), "venmo.com": (ContactKind.PAYMENT, "venmo"),
    "cash.app": (ContactKind.PAYMENT, "cashapp"), "revolut.me": (ContactKind.PAYMENT, "revolut"),
}  # fmt: skip

_HANDLE = r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,30}[A-Za-z0-9_])?"
# A keyword, then a separator (":", "=", "-", "@", "is", "id", arrows...), then the handle.
_SEP = (
    r"(?P<sep>\s*(?:(?:id|username|user|name|handle)\b|아이디|アイディ|айди|ник|号|號)?\s*"
    r"(?:[:=：\-–>→]+|\bis\b|\bat\b|\bon\b)?\s*@?\s*)"
)


def _keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str]:
    words = sorted(keywords, key=len, reverse=True)
    alternatives = "|".join(re.escape(w).replace(r"\ ", r"\s*") for w in words)
    # ASCII keywords must stand alone ("ig" not inside "big"); CJK/Arabic/Cyrillic ones may touch text.
    return re.compile(rf"(?<![A-Za-z0-9_])(?P<kw>{alternatives})(?![A-Za-z]){_SEP}(?P<handle>{_HANDLE})", re.IGNORECASE)


_HANDLE_AFTER_KEYWORD = _keyword_pattern(_HANDLE_KEYWORDS)
_PAYMENT_AFTER_KEYWORD = _keyword_pattern(k for k in _PAYMENT_KEYWORDS if k not in ("btc", "bitcoin", "eth", "usdt"))
_AT_HANDLE = re.compile(r"(?<![A-Za-z0-9_.@/])@(?P<handle>[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?)")
_CASHTAG = re.compile(r"(?<![A-Za-z0-9_$])\$(?P<handle>[A-Za-z][A-Za-z0-9_]{1,19})\b")
_MONEY_CONTEXT = re.compile(
    r"(?<![A-Za-z])(cash|pay|send|tip|money|venmo|zelle|donat|\$\d|\d\s*(usd|dollars?|bucks))", re.IGNORECASE
)
# Real TLDs that are mostly file names when written as a bare "name.ext" ("config.sh", "setup.py").
_FILE_LIKE_TLDS = frozenset({"sh", "py", "md", "so", "zip", "mov", "ps"})
# Words that follow a keyword but are not handles ("line up", "snap photos", "ig is down").
_NOT_HANDLES = frozenset(
    [
        "a",
        "an",
        "the",
        "me",
        "my",
        "you",
        "your",
        "is",
        "it",
        "in",
        "on",
        "at",
        "to",
        "of",
        "for",
        "and",
        "or",
        "up",
        "down",
        "out",
        "off",
        "here",
        "there",
        "this",
        "that",
        "now",
        "please",
        "call",
        "text",
        "message",
        "msg",
        "dm",
        "pm",
        "chat",
        "add",
        "follow",
        "hit",
        "send",
        "pay",
        "payment",
        "account",
        "acc",
        "number",
        "no",
    ]
)

# ---------------------------------------------------------------- e-mail de-obfuscation

_OBFUSCATED_AT = re.compile(r"\s*(?:[\(\[\{<]\s*(?:at|@)\s*[\)\]\}>]|\s(?:at|AT)\s)\s*")
_OBFUSCATED_DOT = re.compile(r"\s*(?:[\(\[\{<]\s*(?:dot|\.)\s*[\)\]\}>]|\s(?:dot|DOT)\s)\s*")
_TRAILING_PUNCT = ".,;:!?)]}>'\"”’»。，、"

# ---------------------------------------------------------------- crypto and IBAN

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_ADDRESS = re.compile(r"(?<![A-Za-z0-9])[13LMDT][1-9A-HJ-NP-Za-km-z]{25,34}(?![A-Za-z0-9])")
_BECH32_ADDRESS = re.compile(r"(?<![A-Za-z0-9])(?:bc1|ltc1|tb1)[02-9ac-hj-np-z]{11,71}(?![A-Za-z0-9])", re.IGNORECASE)
_ETH_ADDRESS = re.compile(r"(?<![A-Za-z0-9])0x[0-9a-fA-F]{40}(?![A-Za-z0-9])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?(?![A-Za-z0-9])")
# Base58Check version byte -> chain (mainnet only).
_B58_VERSIONS = {0x00: "bitcoin", 0x05: "bitcoin", 0x30: "litecoin", 0x32: "litecoin", 0x1E: "dogecoin",
                 0x16: "dogecoin", 0x41: "tron"}  # fmt: skip


def _base58check_chain(address: str) -> str | None:
    number = 0
    for char in address:
        number = number * 58 + _B58.index(char)
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\x00" * (len(address) - len(address.lstrip("1"))) + raw
    if len(raw) != 25:
        return None
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        return None
    return _B58_VERSIONS.get(payload[0])


def _bech32_valid(address: str) -> bool:
    """BIP-173 (bech32) or BIP-350 (bech32m) checksum."""
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    address = address.lower()
    hrp, _, data = address.rpartition("1")
    if not hrp or len(data) < 6 or any(c not in charset for c in data):
        return False
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + [charset.index(c) for c in data]
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            checksum ^= generator[i] if (top >> i) & 1 else 0
    return checksum in (1, 0x2BC830A3)


def _iban_valid(iban: str) -> bool:
    compact = iban.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


# ---------------------------------------------------------------- finders (on normalised text)


# Words that announce a phone number: after one, a number that is only POSSIBLE for the region
# (right length, but e.g. written without the national prefix the region's format requires) counts.
_PHONE_CONTEXT = re.compile(
    r"(?<![A-Za-z])(call|phone|tel|text|sms|mobile|cell|number|whats\s*app|viber|signal|ring|contact|llam|tel[eé]fono|"
    r"n[uú]mero|ligue|celular|appel|portable|anruf|handy|nummer|chiama|cellulare|звон|тел|номер|"
    r"電話|番号|전화|번호|号码|電話番號|手机|هاتف|رقم|اتصل|फ़ोन|फोन|नंबर|telefon|numara|ara)",
    re.IGNORECASE,
)
_CONTEXT_CHARS = 40


def _phones(norm: str, regions: Sequence[str]) -> list[_Span]:
    """Per line (a number never spans lines, and a newline next to a postcode would otherwise
    glue the two into one invalid candidate)."""
    found: list[_Span] = []
    offset = 0
    for line in norm.split("\n"):
        for region in regions:
            matches = list(PhoneNumberMatcher(line, region, leniency=Leniency.VALID))
            if _PHONE_CONTEXT.search(line):
                matches += [
                    m for m in PhoneNumberMatcher(line, region, leniency=Leniency.POSSIBLE)
                    if len(str(m.number.national_number)) >= 7
                    and _PHONE_CONTEXT.search(line[max(0, m.start - _CONTEXT_CHARS) : m.start])
                ]  # fmt: skip
            for match in matches:
                value = phonenumbers.format_number(match.number, PhoneNumberFormat.E164)
                rank = 1 if phonenumbers.is_valid_number(match.number) else 0  # a valid reading wins overlaps
                found.append(_Span(ContactKind.PHONE, offset + match.start, offset + match.end, value, priority=rank))
        offset += len(line) + 1
    return found


@functools.lru_cache(maxsize=1)
def _url_extractor() -> object:
    from urlextract import URLExtract

    return URLExtract(extract_email=True)


def _deobfuscate(norm: str) -> tuple[str, list[int]]:
    """Replace "(at)"/" at " and "(dot)"/" dot " inside would-be e-mails by "@" and "."."""
    candidate = re.compile(
        rf"[A-Za-z0-9._%+\-]+{_OBFUSCATED_AT.pattern}[A-Za-z0-9\-]+(?:{_OBFUSCATED_DOT.pattern}[A-Za-z0-9\-]+)+"
    )
    out: list[str] = []
    offsets: list[int] = []
    last = 0
    for match in candidate.finditer(norm):
        if not re.search(r"\(|\[|\{|<", match.group()) and not re.search(r"\s(at|AT)\s.*\s(dot|DOT)\s", match.group()):
            continue  # bare " at " needs a bare " dot " too ("meet me at home" is no address)
        out.append(norm[last : match.start()])
        offsets.extend(range(last, match.start()))
        piece = match.group()
        pos = 0
        for sub in re.finditer(rf"{_OBFUSCATED_AT.pattern}|{_OBFUSCATED_DOT.pattern}", piece):
            out.append(piece[pos : sub.start()])
            offsets.extend(range(match.start() + pos, match.start() + sub.start()))
            out.append("@" if re.search(r"at|@", sub.group(), re.IGNORECASE) else ".")
            offsets.append(match.start() + sub.start())
            pos = sub.end()
        out.append(piece[pos:])
        offsets.extend(range(match.start() + pos, match.end()))
        last = match.end()
    out.append(norm[last:])
    offsets.extend(range(last, len(norm)))
    offsets.append(len(norm))
    return "".join(out), offsets


def _urls_and_emails(norm: str) -> list[_Span]:
    text, back = _deobfuscate(norm)
    extractor = _url_extractor()
    found: list[_Span] = []
    for url, (start, end) in extractor.find_urls(text, get_indices=True):  # type: ignore[attr-defined]
        while url and url[-1] in _TRAILING_PUNCT:
            url, end = url[:-1], end - 1
        if not url:
            continue
        start_n, end_n = back[start], back[end - 1] + 1
        if "@" in url and "/" not in url.split("@", 1)[0] and not url.lower().startswith(("http", "www.")):
            email = url.removeprefix("mailto:").lower()
            found.append(_Span(ContactKind.EMAIL, start_n, end_n, email, priority=3))
            continue
        bare = not re.match(r"^([a-z][a-z0-9+.\-]*://|www\.)", url, re.IGNORECASE) and "/" not in url
        if bare and url.count(".") == 1 and url.rsplit(".", 1)[-1].lower() in _FILE_LIKE_TLDS:
            continue
        found.append(_platform_url(url, start_n, end_n))
    return found


def _platform_url(url: str, start: int, end: int) -> _Span:
    bare = re.sub(r"^[a-z][a-z0-9+.\-]*://", "", url, flags=re.IGNORECASE)
    host, _, path = bare.partition("/")
    host = host.lower().split(":")[0].removeprefix("www.")
    segments = [s for s in re.split(r"[/?#&=]", path) if s]
    platform_kind = _PLATFORM_HOSTS.get(host)
    if platform_kind is not None and segments:
        kind, platform = platform_kind
        if host in ("snapchat.com",) and segments[0] == "add" and len(segments) > 1:
            segments = segments[1:]
        if host == "api.whatsapp.com":
            query = re.search(r"phone=(\+?\d{6,15})", path)
            segments = [query.group(1)] if query else []
        handle = segments[0].lstrip("~@") if segments else ""
        if kind is ContactKind.PHONE:
            digits = re.sub(r"\D", "", handle)
            if 6 <= len(digits) <= 15:
                try:
                    number = phonenumbers.parse("+" + digits, None)
                    value = phonenumbers.format_number(number, PhoneNumberFormat.E164)
                    return _Span(ContactKind.PHONE, start, end, value, platform, priority=4)
                except phonenumbers.NumberParseException:
                    pass
        elif handle:
            return _Span(kind, start, end, f"{platform}:{handle.lower()}", platform, priority=4)
    scheme_url = url if re.match(r"^[a-z][a-z0-9+.\-]*://", url, re.IGNORECASE) else "http://" + url
    return _Span(ContactKind.URL, start, end, scheme_url, priority=2)


def _keyword_handles(norm: str) -> list[_Span]:
    found: list[_Span] = []
    for pattern, table, kind in (
        (_HANDLE_AFTER_KEYWORD, _HANDLE_KEYWORDS, ContactKind.HANDLE),
        (_PAYMENT_AFTER_KEYWORD, _PAYMENT_KEYWORDS, ContactKind.PAYMENT),
    ):
        for match in pattern.finditer(norm):
            handle = match.group("handle")
            if handle.lower() in _NOT_HANDLES or handle.isdigit() and len(handle) < 5:
                continue
            keyword = re.sub(r"\s+", " ", match.group("kw").lower())
            platform = table.get(keyword) or table.get(keyword.replace(" ", ""), "")
            if not _plausible_handle(keyword, match.group("sep"), handle):
                continue
            found.append(_Span(kind, match.start(), match.end(), f"{platform}:{handle.lower()}", platform, priority=3))
    for match in _AT_HANDLE.finditer(norm):
        handle = match.group("handle")
        if handle.isdigit() or not re.search(r"[A-Za-z0-9]", handle) or len(handle) < 2:
            continue
        found.append(_Span(ContactKind.HANDLE, match.start(), match.end(), f"@{handle.lower()}", priority=1))
    for match in _CASHTAG.finditer(norm):
        around = norm[max(0, match.start() - _CONTEXT_CHARS) : match.end() + _CONTEXT_CHARS]
        if not _MONEY_CONTEXT.search(around):
            continue
        found.append(
            _Span(ContactKind.PAYMENT, match.start(), match.end(), f"cashapp:{match.group('handle').lower()}",
                  "cashapp", priority=2)
        )  # fmt: skip
    for match in _GIFT_CARD.finditer(norm):
        brand = re.sub(r"\s+", "_", match.group(1).lower())
        found.append(_Span(ContactKind.PAYMENT, match.start(), match.end(), f"gift_card:{brand}", "gift_card"))
    return found


def _plausible_handle(keyword: str, separator: str, handle: str) -> bool:
    """Keyword + handle is strong evidence with punctuation or "@" between them ("ig: jo",
    "snap @jo"); after a bare space or a word ("snap is fun", "line up") the handle must look
    like one (digits, "_", ".") unless a full platform name introduces it ("snapchat is jenny")."""
    if not keyword.isascii() or re.search(r"[:=：>→@]", separator):
        return True
    if re.search(r"[\-–]", separator):  # "snapchat - jen" yes, "wa-diddie" no
        return len(keyword) >= 4
    looks_like_handle = bool(re.search(r"[0-9_.]", handle))
    if re.search(r"[^\s]", separator):  # a word: is / at / on / id
        return looks_like_handle or len(keyword) >= 5
    return looks_like_handle


def _crypto_and_bank(norm: str) -> list[_Span]:
    found: list[_Span] = []
    for match in _B58_ADDRESS.finditer(norm):
        chain = _base58check_chain(match.group())
        if chain is not None:
            found.append(_Span(ContactKind.PAYMENT, match.start(), match.end(), f"{chain}:{match.group()}", chain, 5))
    for match in _BECH32_ADDRESS.finditer(norm):
        if _bech32_valid(match.group()):
            chain = "litecoin" if match.group().lower().startswith("ltc") else "bitcoin"
            found.append(
                _Span(ContactKind.PAYMENT, match.start(), match.end(), f"{chain}:{match.group().lower()}", chain, 5)
            )
    for match in _ETH_ADDRESS.finditer(norm):
        found.append(
            _Span(ContactKind.PAYMENT, match.start(), match.end(), f"ethereum:{match.group().lower()}", "ethereum", 5)
        )
    for match in _IBAN.finditer(norm):
        if _iban_valid(match.group()):
            compact = match.group().replace(" ", "")
            found.append(_Span(ContactKind.PAYMENT, match.start(), match.end(), f"iban:{compact}", "iban", 5))
    return found


def _resolve_overlaps(spans: list[_Span]) -> list[_Span]:
    """Keep the best span where findings overlap: higher priority, then longer, then earlier."""
    chosen: list[_Span] = []
    for span in sorted(spans, key=lambda s: (-s.priority, -(s.end - s.start), s.start)):
        if all(span.end <= kept.start or span.start >= kept.end for kept in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def find_contacts(
    text: str,
    *,
    regions: Sequence[str] = (),
    language: str | None = None,
    default_regions: Sequence[str] = DEFAULT_REGIONS,
) -> tuple[Contact, ...]:
    """Every contact detail in `text`, in order, without overlaps.

    `regions` (ISO 3166 codes, e.g. from the account's country) and `language` (ISO 639-1,
    e.g. from language detection) say where national-format phone numbers are read from;
    with neither, `default_regions` are used. International numbers ("+49 ...") are found
    whatever the hints.
    """
    if not text:
        return ()
    norm, offsets = normalize_text(text)
    hinted = list(dict.fromkeys([r.upper() for r in regions] + list(regions_for_language(language))))
    tried = [r for r in (hinted or list(default_regions)) if r in phonenumbers.SUPPORTED_REGIONS][:_MAX_REGIONS]
    spans = _phones(norm, tried or ["ZZ"])
    spans += _urls_and_emails(norm)
    spans += _keyword_handles(norm)
    spans += _crypto_and_bank(norm)
    contacts = []
    for span in _resolve_overlaps(spans):
        start, end = offsets[span.start], offsets[span.end - 1] + 1
        contacts.append(Contact(span.kind, start, end, text[start:end], span.value, span.platform))
    return tuple(contacts)
