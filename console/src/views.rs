//! The pages: askama templates (templates/*.html, HTML-escaped) and the
//! rows they show, already in the admins' words.

use askama::Template;

/// Who is logged in, for the header.
pub struct Who {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    /// Officers see the ceremony page in the menu.
    pub officer: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login {
    pub error: Option<&'static str>,
    pub csrf: String,
    /// Served over TLS: the code may stay empty (client certificate admins).
    pub tls: bool,
}

pub struct AppLine {
    pub id: i64,
    pub sender: String,
    pub received: String,
    pub file_name: String,
    pub valid: i64,
    pub review: i64,
    pub invalid: i64,
    pub status: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
pub struct Inbox {
    pub who: Who,
    pub apps: Vec<AppLine>,
    pub pager: Pager,
}

/// The 前へ/次へ links of a paged list (None: no page that way).
pub struct Pager {
    pub newer: Option<String>,
    pub older: Option<String>,
}

pub struct Cell {
    pub value: String,
    /// "invalid", "review" or "".
    pub class: &'static str,
    pub messages: Vec<String>,
}

pub struct RowView {
    pub row: u32,
    pub status: &'static str,
    pub status_class: &'static str,
    pub cells: Vec<Cell>,
    /// Findings not about one column.
    pub messages: Vec<String>,
    /// What was decided, in words; None while open.
    pub decision: Option<String>,
    pub may_approve: bool,
}

#[derive(Template)]
#[template(path = "application.html")]
pub struct ApplicationPage {
    pub who: Who,
    pub may_act: bool,
    pub id: i64,
    pub sender: String,
    pub received: String,
    pub file_name: String,
    pub columns: Vec<String>,
    pub rows: Vec<RowView>,
    pub open_valid: usize,
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct Confirm {
    pub who: Who,
    pub title: String,
    pub what: Vec<String>,
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub back: String,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub who: Option<Who>,
    pub title: String,
    pub lines: Vec<String>,
    pub back: String,
}

pub struct AccountLine {
    pub certificate_id: String,
    pub office_code: String,
    pub office_name: String,
    pub contact_name: String,
    pub state: &'static str,
    pub serial: String,
}

#[derive(Template)]
#[template(path = "accounts.html")]
pub struct Accounts {
    pub who: Who,
    pub q: String,
    pub searched: bool,
    pub accounts: Vec<AccountLine>,
    pub pager: Pager,
}

pub struct CertLine {
    /// What the public role answers over OCSP, verified, and its CSS class.
    pub ocsp: (String, &'static str),
    pub serial: String,
    pub state: String,
    pub not_before: String,
    pub not_after: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub who: Who,
    pub may_act: bool,
    pub active: bool,
    pub certificate_id: String,
    pub state: &'static str,
    pub office: String,
    pub contact: String,
    pub email1: String,
    pub email2: String,
    pub approved: String,
    pub revoked: Option<String>,
    pub certificates: Vec<CertLine>,
    /// Why the OCSP column is empty (the public role does not answer).
    pub ocsp_note: Option<String>,
    pub pickups: Vec<PickupLine>,
    pub mails: Vec<MailLine>,
    pub reasons: Vec<(&'static str, String)>,
}

pub struct PickupLine {
    pub state: &'static str,
    pub tries: u32,
    pub code_expires: String,
    pub opened: String,
}

pub struct MailLine {
    pub id: i64,
    pub created: String,
    pub kind: &'static str,
    pub to: String,
    pub subject: String,
    pub state: &'static str,
    pub attempts: u32,
    pub error: String,
}

#[derive(Template)]
#[template(path = "outbox.html")]
pub struct Outbox {
    pub who: Who,
    pub mails: Vec<MailLine>,
    pub pager: Pager,
}

pub struct AuditLine {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub serial: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct Audit {
    pub who: Who,
    pub action: String,
    pub actor: String,
    pub from: String,
    pub to: String,
    /// A filter value that could not be read, in words.
    pub error: Option<String>,
    pub events: Vec<AuditLine>,
    pub pager: Pager,
    pub state: AuditState,
}

/// Whether the audit record verifies, as `kxca audit verify` checks it.
#[derive(Clone)]
pub struct AuditState {
    /// 正常 or 異常.
    pub ok: bool,
    pub tree_size: i64,
    pub root: String,
    pub latest_checkpoint: String,
    /// When this verification ran (the result is cached for a short time).
    pub checked_at: String,
    /// Why it is 異常: the first findings, as verify words them.
    pub reasons: Vec<String>,
    /// How many findings in all.
    pub findings: usize,
}

pub struct AuthorityLine {
    pub name: String,
    pub role: &'static str,
    pub state: String,
    pub key: String,
    pub not_before: String,
    pub not_after: String,
    pub crl: String,
}

pub struct CeremonyLine {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub file_sha256: String,
    pub officers: String,
    pub outcome: &'static str,
}

#[derive(Template)]
#[template(path = "ceremonies.html")]
pub struct Ceremonies {
    pub who: Who,
    pub authorities: Vec<AuthorityLine>,
    pub runs: Vec<CeremonyLine>,
    pub pager: Pager,
    pub officers: Vec<String>,
}

pub struct ExpiringLine {
    pub certificate_id: String,
    pub office: String,
    pub contact: String,
    pub serial: String,
    pub not_after: String,
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct Status {
    pub who: Who,
    pub expiring: Vec<ExpiringLine>,
    pub pickups: Vec<(String, PickupLine)>,
    pub may_act: bool,
    pub queued: i64,
    pub failed: Vec<MailLine>,
    pub issuing: String,
    pub crl: String,
    /// The CRL the public role serves, checked.
    pub public_crl: Health,
    /// One OCSP answer from the public role, checked.
    pub public_ocsp: Health,
    pub audit: AuditState,
}

/// A health line of the status page: 正常 or 異常 with its reason.
#[derive(Clone)]
pub struct Health {
    pub ok: bool,
    pub text: String,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage {
    pub who: Who,
    pub min: usize,
    pub error: Option<String>,
    pub done: Option<String>,
}
