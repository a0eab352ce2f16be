"""The technical specialist's demo data: knowledge-base articles and the status page (`switchboard seed`).

`seed()` is idempotent: articles are keyed on their tenant and slug, status rows on their tenant
and component, so re-running it duplicates nothing. Every row belongs to the `default` tenant.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from specialists import DEMO_TENANT
from specialists.technical.models import KbArticle, ServiceStatus

# --- Knowledge base ----------------------------------------------------------------------------

KB_ARTICLES: tuple[tuple[str, str, str], ...] = (
    (
        "webhook-retries",
        "Webhook delivery and retries",
        """We send a webhook as an HTTPS POST with a JSON body to every endpoint subscribed to the \
event. A delivery counts as successful when your endpoint answers with any 2xx status within 10 \
seconds. Anything else (a 3xx redirect, a 4xx or 5xx status, a connection error or a timeout) is a \
failed attempt.

Failed deliveries are retried with exponential backoff: after 1 minute, 5 minutes, 30 minutes, \
2 hours, 6 hours and then every 12 hours, for up to 3 days (15 attempts in total). After the last \
attempt the event is marked failed and the endpoint is disabled if every delivery to it has failed \
for 3 days. You can see every attempt, with the status code and response time, under Settings > \
Developers > Webhooks > (endpoint) > Deliveries, and resend any event from there.

Because of retries, the same event can reach you more than once. Every event carries a unique \
`id`; store the ids you have processed and ignore repeats. Events are not guaranteed to arrive in \
the order they happened: use the `created_at` timestamp or fetch the current object from the API \
when order matters, for example when `contact.updated` arrives before `contact.created`.

If deliveries show "timeout" while your server looks fast, your endpoint is probably doing the work \
before answering. Acknowledge with 200 straight away and process the event from a queue. To pause \
deliveries during maintenance, disable the endpoint instead of returning errors; events generated \
while it is disabled are kept for 3 days and can be replayed when you enable it again.""",
    ),
    (
        "webhook-signatures",
        "Verifying webhook signatures",
        """Every webhook request includes a `Webhook-Signature` header so you can check that it came \
from us and was not modified. The header looks like `t=1718031234,v1=5257a869e7...` where `t` is \
the Unix timestamp of the attempt and `v1` is a hex-encoded HMAC-SHA256.

To verify: take the raw request body exactly as received (before any JSON parsing or \
re-serialisation), build the string `{t}.{raw_body}`, compute HMAC-SHA256 of it with your \
endpoint's signing secret, and compare the hex digest with `v1` using a constant-time comparison. \
Reject requests whose timestamp is more than 5 minutes old to prevent replays.

The most common reason signatures never match is that the framework has already parsed the body. \
In Express use `express.raw({type: 'application/json'})` on the webhook route; in Django read \
`request.body`; in Flask use `request.get_data()`. Other causes are using the API key instead of \
the endpoint's signing secret (it starts with `whsec_`), or trimming whitespace from the body.

Each endpoint has its own signing secret, shown under Settings > Developers > Webhooks. When you \
roll the secret, the old one keeps signing alongside the new one for 24 hours (the header then \
carries two `v1` values) so you can deploy without dropping events. Our SDKs include a \
`verify_webhook` helper that does all of the above.""",
    ),
    (
        "api-rate-limits",
        "API rate limits and handling 429 responses",
        """The REST API allows 100 requests per second per API key on Pro and 300 on Enterprise, with \
short bursts up to twice that. Starter keys are limited to 25 requests per second. Bulk and export \
endpoints have their own lower limit of 5 concurrent requests per account.

When you exceed a limit, requests are throttled: the API answers `429 Too Many Requests`. Every response carries \
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers, and a 429 also carries \
`Retry-After` with the number of seconds to wait. Honour `Retry-After`, then retry with exponential \
backoff and jitter; do not retry immediately in a tight loop, which keeps you limited for longer.

Limits are counted per key, not per user, so several services sharing one key share one budget. \
If you see 429s while your own traffic looks low, check for another process (a cron job, a test \
suite, a Zapier connection) using the same key; the API key page shows requests per key for the \
last 24 hours.

For a one-off migration or import, prefer the bulk endpoints, which accept up to 1,000 records per \
request. Enterprise customers can ask for a temporary limit increase; include the key's prefix, \
the expected peak rate and the time window in the request.""",
    ),
    (
        "rotating-api-keys",
        "Rotating API keys without downtime",
        """API keys are created under Settings > Developers > API keys. Each key is shown in full only \
once, when it is created; afterwards we show its prefix (for example `sk_live_4f9a…`) and when it \
was last used. Keys can be scoped to read-only or to specific resources.

To rotate a key without downtime: create a new key with the same scopes, deploy it to your \
services, watch the "last used" time of the old key until it stops changing, and then revoke the \
old key. Both keys work side by side for as long as you need. Revoking takes effect within a \
minute and cannot be undone.

If a key has been exposed (committed to a repository, pasted in a chat or a ticket), revoke it \
immediately rather than rotating at leisure, and review the audit log under Settings > Security > \
Audit log, which records the key prefix, IP address and endpoint of every write request for 90 \
days.

When someone leaves your team, their personal keys are not revoked automatically with their user \
account on Pro plans. Review the key list and revoke the keys they created. On Enterprise you can \
require that keys belong to a service account rather than a person.""",
    ),
    (
        "sso-saml-setup",
        "Setting up SSO with SAML (Okta, Azure AD, Google Workspace)",
        """Single sign-on with SAML 2.0 is available on Pro and Enterprise. An organisation owner sets \
it up under Settings > Security > Single sign-on. We show the values your identity provider needs: \
the ACS URL, the Entity ID and the attribute mapping (email is required; first name and last name \
are optional).

In your identity provider, create a SAML application with those values, set the Name ID format to \
EmailAddress, and assign the users or groups who should have access. Then paste the IdP metadata \
URL (or upload the metadata XML) back in our settings and click Test connection. The test shows \
the exact assertion we received, which is the quickest way to find mapping mistakes.

"Invalid SAML response" usually means one of three things: the signing certificate in our settings \
no longer matches the IdP's (it was renewed), the clock on the IdP is off by more than 3 minutes, \
or the email in the assertion differs from the user's email here. Certificate renewals: upload the \
new certificate as a secondary certificate before the switch; both are accepted until you remove \
the old one.

When you turn on SSO enforcement, users must sign in through your IdP. Owners can always sign in \
with a password and 2FA so that a broken IdP cannot lock the organisation out. Guests and \
contractors without IdP accounts can be exempted individually from enforcement.""",
    ),
    (
        "two-factor-recovery",
        "Two-factor authentication: setup and recovery",
        """Two-factor authentication (2FA) adds a one-time code from an authenticator app (Google \
Authenticator, 1Password, Authy and similar) or a security key to your sign-in. Turn it on under \
Profile > Security. When you do, we show 10 single-use backup codes: store them somewhere safe.

If codes are rejected as invalid, check the time on your phone first. Codes are time-based, and a \
clock that is off by more than 30 seconds produces wrong codes; set the phone to set time \
automatically. Also make sure you are using the entry for this account if you have several.

If you have lost your phone, sign in with one of your backup codes and then set up 2FA again on \
the new device. If you have neither the authenticator nor backup codes, an organisation owner or \
admin can reset 2FA for you under Settings > Members. If you are the only owner, use "Can't access \
your authenticator?" on the sign-in page to start identity verification; it takes up to 2 \
business days and we will never ask you for a password or a code over email or chat.

Organisation owners can require 2FA for all members under Settings > Security. Members without 2FA \
are asked to set it up at their next sign-in.""",
    ),
    (
        "csv-import-format",
        "CSV import: file format and common errors",
        """You can import contacts, companies and products from a CSV file under Data > Import. Files \
must be UTF-8 encoded, comma-separated, with a header row, and at most 50 MB or 200,000 rows. \
Download the template from the import page to get the exact column names.

The header names must match the template or be mapped in the column-mapping step. "Unexpected \
column" means a header was not recognised: check for trailing spaces, a byte-order mark or a \
different spelling (for example "Phone Number" where the template says "phone"). Columns you do not \
need can be set to "Skip" in the mapping step.

Dates must be in ISO 8601 format (2024-03-31 or 2024-03-31T14:00:00Z). Numbers use a dot as the \
decimal separator and no thousands separator. Files exported from Excel in some locales use \
semicolons and a comma decimal separator: choose "CSV UTF-8 (comma delimited)" when saving, or pick \
the semicolon delimiter on the upload screen.

Rows that fail validation do not stop the import. When it finishes you get a report listing each \
rejected row with its line number and reason, downloadable as a CSV you can fix and upload again. \
Imports match existing records by email (contacts) or domain (companies) and update them rather \
than creating duplicates. Files above 50 MB are refused with 413 Payload Too Large; split them or \
use the bulk API.""",
    ),
    (
        "data-export",
        "Exporting your data",
        """Owners and admins can export all data under Settings > Data > Export. Choose the objects and \
the format (CSV in a ZIP file, or JSON Lines). Exports run in the background; you get an email with \
a download link when the file is ready, and the link is valid for 7 days.

Most exports finish within minutes. Very large accounts (several million records) can take a few \
hours. An export that stays in "Preparing" for more than 24 hours has stalled: cancel it from the \
export page and start it again, and if it stalls twice, send us the export ID shown on the page.

Exported CSV files are UTF-8. If accented characters look garbled (Ã© instead of é) the file was \
opened as another encoding: in Excel use Data > From Text/CSV and choose UTF-8, or open it in \
Google Sheets, which detects the encoding.

For scheduled or incremental exports use the API: list endpoints accept `updated_since` so you can \
fetch only records changed since your last run. The Google Sheets and warehouse integrations \
(BigQuery, Snowflake) sync continuously and need the connecting user to have edit access to the \
destination.""",
    ),
    (
        "custom-domains-dns",
        "Custom domains and DNS setup",
        """You can serve your portal and forms from your own domain, such as help.yourcompany.com, on \
Pro and Enterprise. Add the domain under Settings > Custom domains; we then show a CNAME record to \
create at your DNS provider, pointing your subdomain to `custom.example.com`.

DNS changes usually take effect within an hour but can take up to 48 hours depending on the TTL of \
the old record. Check the record with `dig CNAME help.yourcompany.com` or an online DNS lookup; it \
must return our target exactly. Apex domains (yourcompany.com without a subdomain) cannot have a \
CNAME: use a subdomain, or an ALIAS/ANAME record if your DNS provider supports it.

Once the CNAME resolves, we issue a TLS certificate automatically through Let's Encrypt within 15 \
minutes. A certificate error after the DNS check passes usually means a CAA record on your domain \
does not allow letsencrypt.org, or that a proxy such as Cloudflare is in front of the domain: set \
the record to "DNS only" until the certificate is issued.

The status on the Custom domains page shows which step is pending. If it stays on "Verifying DNS" \
for more than 48 hours with a correct record, send us the domain and the output of the dig command.""",
    ),
    (
        "email-deliverability",
        "Email deliverability: SPF, DKIM and DMARC",
        """Emails you send through the platform (campaigns, notifications to your customers) go out from \
our mail servers. To stop them landing in spam, verify your sending domain under Settings > Email > \
Sending domains. We give you the DNS records to add.

SPF: add `include:mail.example.com` to the existing SPF TXT record of your domain. A domain must have \
only one SPF record; if you already have one, extend it rather than adding a second. DKIM: add the \
two CNAME records we show (`s1._domainkey` and `s2._domainkey`); they let us sign mail for your \
domain. DMARC: we recommend a TXT record at `_dmarc` with at least `p=none` and a reporting address \
so you can see failures before tightening the policy.

Verification runs automatically every hour after you add the records. Until the domain is verified \
we send from a shared address, which is more likely to be filtered. Other causes of spam placement \
are sending to old or purchased lists (high bounce rates hurt your reputation) and messages with \
only an image and no text.

If a specific recipient never receives mail, look them up under Email > Suppressions: addresses \
that bounced or marked a message as spam are suppressed, and you can remove them from the list once \
the issue is fixed. Invitation and password-reset emails are sent from our own domain and are not \
affected by your sending-domain setup.""",
    ),
    (
        "sdk-installation",
        "Installing the SDKs and fixing installation errors",
        """Official SDKs exist for Python (`pip install example-sdk`), JavaScript/TypeScript (`npm \
install @example/sdk`), Ruby, PHP, Java and .NET. There is no official Go SDK yet; the REST API \
and its OpenAPI description work well with generated clients.

Python: the SDK supports Python 3.9 and later. "No matching distribution found" usually means an \
older Python or pip: run `python -m pip install --upgrade pip` first. Use a virtual environment to \
avoid conflicts with system packages.

JavaScript: the SDK works in Node 18+ and in browsers. A peer dependency error with React 18 comes \
from the optional React hooks package, not the core SDK; install `@example/sdk` on its own or use \
`--legacy-peer-deps` until you upgrade the hooks package to 3.x. Never use a secret key in browser \
code; use a publishable key or call the API from your backend.

SSL errors such as CERTIFICATE_VERIFY_FAILED mean the machine does not trust our certificate \
chain, usually because of an outdated CA bundle or a corporate proxy that intercepts TLS. Update \
the `certifi` package (Python) or the system CA store, or point the SDK at your proxy's CA \
certificate. Do not disable certificate verification.""",
    ),
    (
        "api-pagination",
        "Paginating API results",
        """List endpoints return at most 100 items per page (25 by default; set `limit` to change it). \
Responses include `has_more` and `next_cursor`. To get the next page, repeat the same request with \
`cursor=<next_cursor>` and the same filters and sort order; stop when `has_more` is false.

Cursors are opaque and encode the filters of the first request. Changing `limit` is fine between \
pages, but changing filters or `sort` while reusing a cursor returns 400 `cursor_mismatch`. If you \
get the same page again, check that your client actually sends the new cursor and does not cache \
the first URL.

Cursors expire after 24 hours. Records created while you paginate appear on later pages only if \
they sort after your current position, so for a consistent snapshot sort by `created_at` and \
filter with `created_before` set to the time you started.

An empty list on an endpoint where the dashboard shows data usually means the API key belongs to a \
different workspace (test and live keys see separate data) or a filter default applies: for \
example, invoices are filtered to the last 12 months unless you pass `issued_after`.""",
    ),
    (
        "api-timeouts",
        "Timeouts and slow API responses",
        """Most API requests complete in under 300 ms. The API closes any request that runs longer than \
30 seconds and answers `504 Gateway Timeout`; list requests with broad filters on large accounts \
and bulk writes are the usual cases.

To avoid timeouts: narrow list requests with filters such as `updated_since`, use smaller pages, and \
send large writes through the bulk endpoints, which run asynchronously and return a job ID you can \
poll. Set your client timeout to at least 35 seconds so that our 504, with its explanatory body, \
reaches you instead of a client-side timeout.

Retries are safe for GET requests. For POST requests send an `Idempotency-Key` header (any unique \
string, such as a UUID): if the first attempt did go through, the retry returns the original \
response instead of creating a duplicate. Keys are remembered for 24 hours.

Intermittent connection resets or timeouts from one network only, especially at night, often come \
from a NAT gateway or firewall dropping idle keep-alive connections. Lower your client's idle \
connection lifetime below 60 seconds. If timeouts affect all your requests at once, check the status \
page first, then send us the `X-Request-Id` of a few failed requests.""",
    ),
    (
        "mobile-app-crashes",
        "Mobile app crashes: what to try and how to report them",
        """The iOS and Android apps support the two latest major OS versions. Before anything else, \
update the app from the App Store or Google Play: most crash reports we receive are already fixed \
in the current release.

If the app crashes or shows a blank screen: force-quit it and open it again; sign out and sign back \
in; on Android, clear the app's cache under Settings > Apps > (app) > Storage. Reinstalling removes \
offline changes that have not synced yet, so sync first (pull down on the project list) when you \
can.

Crashes are reported to us automatically when "Share crash reports" is on (Profile > Privacy in \
the app). To help us find yours, use Profile > Help > Report a problem right after a crash: it \
attaches the app version, device model, OS version and the last 200 lines of the app log, without \
any of your content. Tell us what you tapped just before it happened and whether it happens every \
time.

Offline changes sync when the app is in the foreground and online. If changes do not sync after \
you reconnect, check Profile > Sync status, which lists any items that failed with the reason; \
items that conflict with a newer change made elsewhere are kept as copies rather than lost.""",
    ),
    (
        "slack-integration",
        "Slack integration: setup and troubleshooting",
        """Connect Slack under Settings > Integrations > Slack. An admin of your Slack workspace may have \
to approve the app. After connecting, choose which events post to which channels; for private \
channels, invite the app to the channel first with `/invite @Example`.

If notifications stop arriving: check that the channel still exists and has not been archived or \
renamed to private, that the app is still a member, and that the user who connected the \
integration is still active in both workspaces. When that user is removed the connection breaks; \
reconnect from an active admin account.

Repeated requests to reauthorise usually mean your Slack workspace has token rotation or an app \
approval policy that revokes tokens; ask your Slack admin to approve the app permanently. The \
integration's page shows the last successful post and the last error Slack returned, such as \
`channel_not_found` or `not_in_channel`.

Messages are posted within a minute of the event. During a webhooks incident on our status page, \
Slack notifications can be delayed too, because they are delivered by the same system.""",
    ),
    (
        "zapier-integration",
        "Zapier integration: triggers, actions and authentication",
        """Our Zapier app offers triggers (New Contact, Updated Contact, New Invoice, New Form Submission) \
and actions (Create or Update Contact, Add Note, Create Task). Connect it by choosing our app in a \
Zap and signing in; Zapier stores an API key scoped to the workspace you pick.

"Authentication expired" or 401 errors mean the key Zapier uses was revoked or rotated. Reconnect \
the account under Zapier > My Apps, then re-test each Zap that uses it. Keys created by Zapier show \
up in your API key list with the name "Zapier"; revoking them breaks your Zaps.

If a trigger is missing from the list, check that you are using the latest version of our Zapier \
app: older Zaps stay on the version they were built with. In the Zap editor, choose "Upgrade" on \
the app step. Instant triggers rely on webhooks, so during a webhooks incident they can be delayed; \
polling triggers check every 1 to 15 minutes depending on your Zapier plan.

Zapier calls count towards your API rate limit like any other client. Zaps that fan out to many \
records can hit 429 responses; Zapier retries them, but a steady stream of 429s means the Zap \
should use a filter or a delay step.""",
    ),
    (
        "dashboard-performance",
        "Dashboard is slow: causes and fixes",
        """Dashboard pages normally load in 1 to 2 seconds. If only some pages are slow, the usual cause is \
the amount of data they show: reports over "All time" on large accounts, lists with many columns, \
or filters on custom fields that are not indexed. Narrow the date range, save a filtered view, or \
mark frequently filtered custom fields as "Filterable" under Settings > Fields.

If every page is slow or shows "Something went wrong", check the status page first. Then try a \
private window: browser extensions (ad blockers, privacy tools) and outdated cached assets cause a \
surprising number of problems. We support the latest two versions of Chrome, Edge, Firefox and \
Safari.

Charts that stay empty while exports contain the data usually mean the analytics cache is \
rebuilding after a large import or a change to custom fields; it catches up within an hour. Being \
logged out every few minutes is almost always a blocked or cleared cookie: allow cookies for our \
domain and check that the computer's clock is correct.

When reporting slowness, tell us the page URL, the time it happened with your time zone, and if \
possible a HAR file from the browser's developer tools (Network tab > Export HAR), which lets us \
see exactly which request was slow.""",
    ),
    (
        "password-reset",
        "Resetting your password",
        """Use "Forgot password?" on the sign-in page and enter your email address. We send a reset link \
that is valid for 60 minutes and can be used once. Requesting a new link invalidates the previous \
one, so always use the most recent email.

"This link has expired" usually means an older link was used, or a corporate email scanner opened \
the link before you did (some security tools click every link in incoming mail). Request a new link \
and open it straight away; if the scanner is the cause, ask your IT team to allow-list our sign-in \
domain.

If the email does not arrive within 5 minutes, check spam and quarantine folders. Microsoft 365 and \
Outlook tenants with strict filtering sometimes hold our mail; ask your IT team to allow mail from \
our domain. Password-reset mail is sent from our own domain, not from your sending domain.

Users in an organisation that enforces SSO do not have a password with us: they sign in through the \
company identity provider, and password resets happen there. Owners keep a password so they can \
always reach the SSO settings.""",
    ),
    (
        "status-page",
        "Is the service down? The status page and incident updates",
        """status.example.com shows whether the service is up and the current state of each \
component: API, dashboard, webhooks, login, \
billing, email and search. A component is "operational", "degraded" (working but slower or with \
some errors) or in "outage" (unavailable for most customers).

During an incident we post an update at least every 30 minutes until it is resolved, and a summary \
with the cause within 5 business days of a major incident. We only give a time for a fix when \
engineering is confident of it; otherwise the update says when the next update is due.

Subscribe to updates by email, SMS, RSS or a Slack channel from the status page, and choose the \
components you care about. For automation, the status page has a JSON endpoint at \
status.example.com/api/v2/summary.json.

If you think we are down, check the status page before anything else: it is hosted separately \
from the product, so it stays up when we do not. If you see problems but the status page shows \
everything operational, the issue may be specific to \
your account or network. Contact support with the time, the affected page or endpoint, and the \
`X-Request-Id` header of a failed API request.""",
    ),
    (
        "error-codes",
        "API error codes reference",
        """Errors are returned with a standard HTTP status and a JSON body: `{"error": {"code": "...", \
"message": "...", "request_id": "..."}}`. Always include the `request_id` when contacting support.

400 `invalid_request`: a parameter is missing or malformed; `message` names it (dates must be ISO \
8601). 401 `unauthorized`: the API key is missing, revoked or from another environment (test keys \
start with `sk_test_`). 403 `forbidden`: the key is valid but lacks the scope, or your plan does not \
include the feature. 404 `not_found`: the object does not exist or belongs to another workspace. \
409 `conflict`: the object changed since you read it or an idempotency key was reused with \
different parameters. 413 `payload_too_large`: bodies are limited to 10 MB. 422 `validation_failed`: \
the body is well formed but a value is not allowed; `details` lists each field.

429 `rate_limited`: see "API rate limits and handling 429 responses". 500 `internal_error`: \
something failed on our side; retry with backoff, and if it persists send us the request ID. 502, \
503 and 504 mean a service was briefly unavailable or a request ran longer than 30 seconds; retry \
with backoff and check the status page.

Bulk endpoints answer 207 Multi-Status when some items succeed and others fail; the body has one \
result per item, in order, with its own status and error. Dashboard error codes of the form E1xxx \
refer to form validation (E1042: a required field is empty or hidden by a condition) and E2xxx to \
permissions.""",
    ),
)

# --- Status page -------------------------------------------------------------------------------

SERVICE_STATUS: tuple[tuple[str, str, str], ...] = (
    ("api", "operational", ""),
    ("dashboard", "operational", ""),
    (
        "webhooks",
        "degraded",
        (
            "Webhook deliveries are delayed by up to 20 minutes for some customers in the US region. "
            "No events have been lost; delayed events are being delivered in order. We are working on "
            "the backlog and will post the next update within 30 minutes."
        ),
    ),
    ("login", "operational", ""),
    ("billing", "operational", ""),
    ("email", "operational", ""),
    ("search", "operational", ""),
)

# --- Seeding -----------------------------------------------------------------------------------


def _seed_kb(session: Session) -> None:
    rows = [
        {"tenant": DEMO_TENANT, "slug": slug, "title": title, "body": body}
        for slug, title, body in KB_ARTICLES
    ]
    stmt = insert(KbArticle).values(rows)
    # Edited article text reaches an existing database; an unchanged article is not rewritten.
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant", "slug"],
        set_={"title": stmt.excluded.title, "body": stmt.excluded.body},
        where=(KbArticle.title != stmt.excluded.title) | (KbArticle.body != stmt.excluded.body),
    )
    session.execute(stmt)


def _seed_status(session: Session) -> None:
    rows = [{"tenant": DEMO_TENANT, "component": c, "status": s, "message": m} for c, s, m in SERVICE_STATUS]
    # Do nothing on conflict: an operator who resolved the incident during a demo keeps that state.
    session.execute(
        insert(ServiceStatus).values(rows).on_conflict_do_nothing(index_elements=["tenant", "component"])
    )


def seed(session: Session) -> dict[str, int]:
    """Insert the articles and status rows that are missing; the row count of each table."""
    _seed_kb(session)
    _seed_status(session)
    session.flush()
    return {
        "kb_articles": int(session.scalar(select(func.count()).select_from(KbArticle)) or 0),
        "service_status": int(session.scalar(select(func.count()).select_from(ServiceStatus)) or 0),
    }
