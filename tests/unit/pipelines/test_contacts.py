"""Contact details in text: real numbers from libphonenumber's metadata, many scripts, spans that
point at the original characters, and ordinary text that must stay clean."""

from __future__ import annotations

import phonenumbers
import pytest

from understanding.pipelines.contacts import ContactKind, find_contacts, normalize_text, regions_for_language

# Regions with their language: national-format numbers are read with the language's hint.
REGIONS = [("US", "en"), ("GB", "en"), ("DE", "de"), ("FR", "fr"), ("BR", "pt"), ("JP", "ja"), ("KR", "ko"),
           ("IN", "hi"), ("RU", "ru"), ("EG", "ar"), ("TR", "tr"), ("ID", "id"), ("MX", "es"), ("IT", "it")]  # fmt: skip


def kinds(text: str, **hints: object) -> list[tuple[str, str]]:
    return [(c.kind.value, c.value) for c in find_contacts(text, **hints)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("region", "language"), REGIONS)
def test_example_mobile_numbers_in_national_and_international_format(region: str, language: str) -> None:
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert number is not None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    for written in (national, international):
        text = f"hey, text me on {written} tonight"
        found = find_contacts(text, language=language)
        assert [(c.kind, c.value) for c in found] == [(ContactKind.PHONE, e164)], (written, found)
        assert found[0].text == written and text[found[0].start : found[0].end] == written
    # An international number needs no hint at all.
    assert kinds(f"call {international}", default_regions=()) == [("phone", e164)]


def test_obfuscated_digits_full_width_arabic_indic_and_spaced_out() -> None:
    found = find_contacts("電話は０９０－１２３４－５６７８です", language="ja")
    assert [(c.value, c.text) for c in found] == [("+819012345678", "０９０－１２３４－５６７８")]
    found = find_contacts("كلمني على ٠١٠١٢٣٤٥٦٧٨ واتساب", language="ar", regions=["EG"])
    assert [(c.value, c.text) for c in found] == [("+201012345678", "٠١٠١٢٣٤٥٦٧٨")]
    assert kinds("내 번호 0 1 0 - 1 2 3 4 - 5 6 7 8 연락해", language="ko") == [("phone", "+821012345678")]
    found = find_contacts("मेरा नंबर ९८७६५४३२१० है", language="hi")
    assert [c.value for c in found] == ["+919876543210"]


def test_emails_urls_and_their_obfuscations() -> None:
    text = "mail John.Doe (at) gmail (dot) com or jane＠example．org, see https://example.com/x."
    found = find_contacts(text)
    assert [(c.kind.value, c.value) for c in found] == [
        ("email", "john.doe@gmail.com"),
        ("email", "jane@example.org"),
        ("url", "https://example.com/x"),
    ]
    assert [text[c.start : c.end] for c in found] == ["John.Doe (at) gmail (dot) com", "jane＠example．org",
                                                      "https://example.com/x"]  # fmt: skip


def test_social_handles_in_several_languages() -> None:
    text = ("ig: jenny_22 | snap @jen.x | my snapchat is jenny | line id: abc123 | 카톡 아이디 kim99 | "
            "微信：wx_lily88 | телеграм: @masha_m | t.me/bobby | wa.me/491701234567")  # fmt: skip
    assert kinds(text) == [
        ("handle", "instagram:jenny_22"), ("handle", "snapchat:jen.x"), ("handle", "snapchat:jenny"),
        ("handle", "line:abc123"), ("handle", "kakao:kim99"), ("handle", "wechat:wx_lily88"),
        ("handle", "telegram:masha_m"), ("handle", "telegram:bobby"), ("phone", "+491701234567"),
    ]  # fmt: skip
    assert find_contacts(text)[-1].platform == "whatsapp"


def test_payment_requests() -> None:
    text = ("send $50 to my cashapp $JennyLove or venmo @jenny-w, paypal.me/jennyw, buy 2 steam gift cards, "
            "btc 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2 or bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq, "
            "IBAN DE89 3704 0044 0532 0130 00")  # fmt: skip
    assert kinds(text) == [
        ("payment", "cashapp:jennylove"), ("payment", "venmo:jenny-w"), ("payment", "paypal:jennyw"),
        ("payment", "gift_card:steam"), ("payment", "bitcoin:1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
        ("payment", "bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"), ("payment", "iban:DE89370400440532013000"),
    ]  # fmt: skip


def test_checksums_reject_lookalikes() -> None:
    # One character changed: the Base58Check, Bech32 and IBAN checksums fail.
    assert kinds("btc 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3 bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr") == []
    assert kinds("IBAN DE89 3704 0044 0532 0130 01") == []


@pytest.mark.parametrize(
    "text",
    [
        "Meet me at home at 10:30 on 2024-01-15, the line up was long.",
        "I paid 120 dollars 3 times, order 55-17 and the score was 3-1.",
        "Oh snap, that was fun! Line 3 of the poem is my favourite.",
        "The year 1999 had 365 days; version 2.4.6 is out.",
        "She said hi @ the party and left at 11 pm.",
    ],
)
def test_ordinary_text_has_no_contacts(text: str) -> None:
    assert find_contacts(text, language="en") == ()


def test_spans_survive_normalisation_that_changes_length() -> None:
    norm, offsets = normalize_text("ﬁx ①②③")  # a ligature (2 chars) and circled digits
    assert norm == "fix 123" and offsets[:3] == [0, 0, 1]
    text = "ﬁrst ＩＧ： ｊｅｎｎｙ＿２２ ok"
    (found,) = find_contacts(text)
    assert found.value == "instagram:jenny_22" and text[found.start : found.end] == "ＩＧ： ｊｅｎｎｙ＿２２"


def test_language_hints() -> None:
    assert regions_for_language("pt-BR") == ("BR", "PT")
    assert regions_for_language("xx") == ()
    # A German national mobile number is only read as German with a German hint.
    assert kinds("ruf an: 0151 23456789", language="de") == [("phone", "+4915123456789")]
    assert kinds("ruf an: 0151 23456789", default_regions=()) == []


@pytest.mark.parametrize(
    "text",
    [
        "Perl passes arguments in @_ and you can't go home again, unless you set $HOME.",  # code, not contacts
        "Install the signal handler, then run config.sh and read notes.md.",
        "Room number 5000 of the hotel; the string was 2883 bytes long.",  # phone words, short numbers
        "wa-diddie wa-diddie, sang the band.",
    ],
)
def test_code_and_prose_lookalikes_are_not_contacts(text: str) -> None:
    assert find_contacts(text, language="en") == ()


def test_country_domains_that_look_like_file_extensions() -> None:
    assert kinds("kup na allegro.pl albo sklep.com.py") == [
        ("url", "http://allegro.pl"),
        ("url", "http://sklep.com.py"),
    ]


def test_a_possible_number_counts_after_a_phone_word() -> None:
    # Uruguayan mobiles are written with a leading 0; without it libphonenumber's VALID leniency
    # refuses the number, but after "call me at" it is a phone number all the same.
    assert kinds("Please call me at 9846 2888 tomorrow", regions=["UY"]) == [("phone", "+59898462888")]
    assert kinds("The 9846 2888 votes were counted", regions=["UY"]) == []
