"""The "Monday-morning surge": a deterministic burst of realistic tickets for the demo and benches.

Tickets are built from templates written independently of the specialists' routing examples, so
routing them measures the router rather than its memory. Real account emails and invoice ids from
the seed are slotted in, so the billing specialist's tools find what the tickets talk about. Each
ticket carries the customer who writes it, as the submitting app authenticated them: the account
it names, or the one billed by the invoice it names (given `owners`); the tools act for that
customer only, so a ticket's refund of its own invoice goes through.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass

TENANTS = ("acme", "globex", "initech")
TECHNICAL_SHARE = 0.55
PRIORITY_SHARES = (("high", 0.15), ("normal", 0.65), ("low", 0.20))

# The simulated provider answers 500 to any prompt containing the marker, so this ticket
# exhausts its retries and is dead-lettered. It reads like an ordinary billing ticket on purpose.
POISON_MARKER = "[[sim:fail]]"
POISON_TEXT = (
    "Hello, our card was charged twice for this month's renewal and we'd like the duplicate "
    f"payment reversed. The billing contact is accounts@example.org. {POISON_MARKER}"
)


@dataclass(frozen=True)
class Ticket:
    text: str
    priority: str
    tenant: str
    # The specialist that should handle it: the ground truth for routing accuracy.
    expected: str
    # Who writes it (the submitting app's authenticated user): an account e-mail.
    customer: str | None = None


TECHNICAL_TEMPLATES: tuple[str, ...] = (
    (
        "Since Saturday night every POST to {endpoint} comes back {status}. Nothing changed in our code. "
        "One request id: {request_id}. Can someone look?"
    ),
    (
        "Morning. Our order webhooks are coming in way late, some of them 15+ minutes after the event. "
        "Is this on your side?"
    ),
    (
        "We rolled our webhook signing secret on Friday and now every delivery fails our verification. "
        "Did the header format change?"
    ),
    (
        "None of my colleagues can sign in through Azure AD since this morning. The error is "
        "'AADSTS50011: The redirect URI does not match'. Our IdP admin is {email}."
    ),
    (
        "The {sdk} raises `ReadTimeout` on list calls once we pass about 5k records. "
        "How do we page through big result sets properly?"
    ),
    (
        "My authenticator app got wiped when I switched phones over the weekend. I'm {email}; how do I "
        "get back into my account?"
    ),
    (
        "Customer import keeps failing at row 2 with 'invalid date'. Our dates look like 03/04/2024. "
        "Which format does it want?"
    ),
    "Is the dashboard having issues? Everything has been crawling for our whole team since about 8am.",
    (
        "Our Zapier zap 'New form submission -> Google Sheets' hasn't run once since Friday. The zap "
        "history is empty."
    ),
    (
        "We need to give a contractor API access for two weeks only. What's the safest way to create a "
        "key and kill it afterwards?"
    ),
    (
        "The Android app freezes on the splash screen after the latest update (Pixel 7, Android 14). "
        "Reinstalling didn't help."
    ),
    "The contacts export finished but the download link opens an 'AccessDenied' XML page.",
    "help.{company}.com shows 'Your connection is not private' since we moved our DNS to Cloudflare.",
    "Mail we send through your platform fails DMARC at Gmail. Which DKIM selector should we publish?",
    (
        "We're getting {status} from the API on maybe 1 in 20 requests since the weekend. Retrying "
        "usually works. Anything known?"
    ),
    "After moving to the {sdk}, `client.contacts.list()` only gives us 25 items. Where did the rest go?",
    (
        "Our #leads Slack channel hasn't had a single alert since Friday even though new leads came in. "
        "The integration page says 'not_in_channel'."
    ),
    "I can't reset my password: the email never shows up. My login is {email}.",
    "People on our team get 'Session expired' every couple of minutes in Safari. Chrome is fine.",
    (
        "What's the right way to back off when you throttle us? Our nightly sync got throttled hard "
        "last night and half the records were skipped."
    ),
    "The reports page says 'Something went wrong (E2031)' for our new admins but works for me.",
    "We want to make SSO mandatory but keep our two freelancers on passwords. Is that possible?",
    "Dashboard search returns nothing for contacts I know exist, e.g. anyone called 'Müller'.",
    "Our staging integration suddenly gets 401 Unauthorized. Did you invalidate test keys over the weekend?",
    (
        "The iOS app dropped my offline notes when it came back online. Happened twice on the train this "
        "morning."
    ),
    "Is there an endpoint to create companies in bulk? One POST per record keeps running into the limit.",
    (
        "Our webhook endpoint got disabled automatically and we don't know why. How do we switch it back "
        "on and replay what we missed?"
    ),
    (
        "Our Sheets connector can't write to the spreadsheet anymore; it claims we lack access, but I'm "
        "the owner."
    ),
    (
        "Our build servers behind the corporate proxy fail to install the {sdk} with "
        "`SSL: CERTIFICATE_VERIFY_FAILED`."
    ),
    (
        "Invitations to our new hires keep bouncing. Is something wrong with your mail servers? One of "
        "them is {email}."
    ),
    "The CSV I downloaded opens in Excel with every accented name mangled.",
    "Passing updated_since to {endpoint} gives 400 invalid_request. What timestamp format do you expect?",
    "Forms on our site fail with E1042 on the last step, but only on phones.",
    "The custom domain page has said 'Verifying DNS' since Thursday. Our CNAME points at custom.example.com.",
    "Codes from 1Password get rejected every single time at sign-in. I've tried about ten.",
    (
        "{endpoint} has been taking 20-25 seconds per call this morning, normally it's instant. "
        "We're close to our client timeout."
    ),
)

BILLING_TEMPLATES: tuple[str, ...] = (
    (
        "I see two identical charges on our card this morning for the monthly plan. The account is "
        "{email}. Can you check?"
    ),
    "Could you tell me what {invoice} is for? Our finance team can't match it to anything.",
    "We cancelled last month but got billed again. Please look into it, account {email}.",
    "Please refund {invoice}; we switched plans by accident the same day.",
    "Our Amex was declined at renewal, but the bank says they never saw an attempt. What now? ({email})",
    "Where do I enter our EU VAT ID so it appears on future invoices?",
    "I need last quarter's invoices for {email} as PDFs, the auditors are asking.",
    "Accounts payable says {invoice} is missing our PO number. Could you reissue it?",
    "We'd like to move from Pro to Enterprise this week. How does billing work mid-cycle?",
    "Our finance department no longer allows company cards. Can we switch to invoicing and pay by wire?",
    (
        "Your system says my renewal payment bounced, but the same card paid for groceries this "
        "morning. Account {email}."
    ),
    "Our team went from 10 to 6 people. How do we drop the extra seats so we stop paying for them?",
    "Does the amount on {invoice} include VAT or is it added on top?",
    "Our trial ends Wednesday. If we don't pick a plan, will anything be charged automatically?",
    "Just noticed a ${amount} charge I can't explain. The email on the account is {email}.",
    "Please change the company address on our invoices to 41 Harbour Street, Leith, Edinburgh EH6 6QN.",
    "We want to move {email} down to the free plan when this cycle ends. What do we lose?",
    "My manager wants to know what 25 Pro seats would cost per year.",
    "Can we be billed in EUR instead? We're based in Lisbon.",
    (
        "We got a notice that the account will be suspended for non-payment. I put in a new card "
        "yesterday; are we OK? {email}"
    ),
    "Someone told me paying yearly is cheaper. By how much, and can we switch now?",
    "Could you send the receipt for {invoice} to our bookkeeper? She never got the email.",
    "We're a registered charity. Is there special pricing we can apply for?",
    (
        "Our bank statement shows you took the money on Friday, yet {invoice} is still listed as unpaid "
        "in the portal."
    ),
    "I don't follow the prorated amount on my latest bill. Can you break it down for me?",
    "Please delete the old Visa ending 4242 from our payment settings.",
    (
        "Before we can release payment for {invoice}, finance needs a W-8BEN or other proof of your tax "
        "residency."
    ),
    "Can billing emails go to our finance team instead of me? I'm {email}.",
    "Who approved the upgrade to Pro on our account? Nobody here remembers doing it. ({email})",
    "We're closing the business. Can we get back the unused months of our annual plan?",
    "Why is this month's bill higher than usual? Nothing changed on our side. {email}",
    "Our card expires at the end of the month. Will the renewal fail, and how do I swap it?",
    "Is sales tax added for customers in New York? The checkout didn't show any.",
    "Please cancel our subscription effective today and confirm there will be no further charges. {email}",
)

_FILLERS: dict[str, tuple[str, ...]] = {
    "endpoint": ("/v1/contacts", "/v1/companies", "/v1/orders", "/v1/contacts/bulk", "/v1/tasks"),
    "status": (
        "500 Internal Server Error",
        "502 Bad Gateway",
        "503 Service Unavailable",
        "504 Gateway Timeout",
    ),
    "sdk": ("Python SDK 4.1", "Node SDK 3.8", "Ruby gem 2.6", "Java SDK 1.12"),
    "company": ("northwind", "brightlane", "copperleaf", "harbourview"),
    "amount": ("29.00", "58.00", "98.00", "147.00", "196.00", "245.00"),
}


def _request_id(rng: random.Random) -> str:
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "req_" + "".join(rng.choice(alphabet) for _ in range(12))


def _fill(
    template: str,
    rng: random.Random,
    emails: list[str],
    invoice_ids: list[str],
    owners: Mapping[str, str] | None,
) -> tuple[str, str]:
    """The ticket's text and its writer: the account it names, else the invoice's customer."""
    values = {key: rng.choice(options) for key, options in _FILLERS.items()}
    values["email"] = rng.choice(emails)
    values["invoice"] = rng.choice(invoice_ids)
    values["request_id"] = _request_id(rng)
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    customer = values["email"]
    if "email" not in fields and "invoice" in fields and owners is not None:
        customer = owners.get(values["invoice"], customer)
    return template.format(**values), customer


def _quota(labels: list[tuple[str, float]], n: int) -> list[str]:
    """Exactly the stated shares of n (largest remainders), so every n gets the intended mix."""
    exact = [(label, share * n) for label, share in labels]
    counts = {label: int(value) for label, value in exact}
    by_remainder = sorted(exact, key=lambda item: item[1] - int(item[1]), reverse=True)
    for label, _value in by_remainder[: n - sum(counts.values())]:
        counts[label] += 1
    return [label for label, _share in labels for _ in range(counts[label])]


def monday_morning(
    n: int = 200,
    *,
    emails: list[str],
    invoice_ids: list[str],
    seed: int = 42,
    owners: Mapping[str, str] | None = None,
    tenant: str | None = None,
) -> list[Ticket]:
    """n tickets, the same ones for the same arguments: ~55% technical, priorities 15/65/20.

    `owners` maps invoice ids to their customers; `tenant`, when given, is every ticket's tenant
    (the one owning those accounts), else each gets one of TENANTS."""
    if n < 0:
        raise ValueError("n must not be negative")
    if not emails or not invoice_ids:
        raise ValueError("the surge needs the seeded account emails and invoice ids; run the seed first")
    rng = random.Random(seed)
    kinds = _quota([("technical", TECHNICAL_SHARE), ("billing", 1 - TECHNICAL_SHARE)], n)
    priorities = _quota(list(PRIORITY_SHARES), n)
    rng.shuffle(kinds)
    rng.shuffle(priorities)
    templates = {"technical": TECHNICAL_TEMPLATES, "billing": BILLING_TEMPLATES}
    tickets = []
    for kind, priority in zip(kinds, priorities, strict=True):
        text, customer = _fill(rng.choice(templates[kind]), rng, emails, invoice_ids, owners)
        drawn = rng.choice(TENANTS)  # drawn either way, so `tenant` does not change the texts
        tickets.append(
            Ticket(text=text, priority=priority, tenant=tenant or drawn, expected=kind, customer=customer)
        )
    return tickets
