//! Approving and rejecting application rows. One transaction per call:
//! the decisions, the accounts, the pickups (`enrolment::open`), the
//! outbox rows of mail 1 and mail 2 and the audit events commit together
//! or not at all, and a row already decided is never decided again, so a
//! re-run after a crash approves nothing twice.

use std::collections::BTreeMap;

use kxca_ca::enrolment::{self, NewEnrolment};
use kxca_ca::store::{Snapshot, Tx};
use kxca_ca::{Holder, Profile, Refusal, RowRefusal};
use rusqlite::params;
use serde::Serialize;

use super::delivery::{self, DeliveryContext, Mails};
use super::policy;
use super::register::{self, Account, AccountState};
use crate::applications::{self, ApplicationRowRecord};
use crate::error::sql;
use crate::forms::RowVerdict;
use crate::intake::IntakePolicy;
use crate::outbox::{self, NewMail, OutboxKind};

/// What approval needs besides the store.
pub struct Context<'a> {
    /// The certificate profile the accounts get (certificate id template, code rules).
    pub profile: &'a Profile,
    /// The intake policy: the shared rules and `[office] multiple_accounts`.
    pub intake: &'a IntakePolicy,
    /// What mail 1 and mail 2 need.
    pub delivery: DeliveryContext<'a>,
}

/// One row's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RowOutcome {
    /// The spreadsheet row number.
    pub row: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The approved account's certificate id.
    pub certificate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The approved account's row id.
    pub account_id: Option<i64>,
    /// Why the row was not approved (English, for the admin's CLI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which account rule refused it (for the console's Japanese words);
    /// `None` for a row rejected by an admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<kxca_ca::RowRefusal>,
}

/// What one approval did.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    /// The application decided on.
    pub application_id: i64,
    /// Rows approved by this call.
    pub approved: Vec<RowOutcome>,
    /// Rows that could not be approved, with the reason.
    pub refused: Vec<RowOutcome>,
    /// Rows decided before (approved or rejected): left as they are.
    pub already_decided: Vec<u32>,
    /// Outbox rows queued (mail 1 and mail 2 per approved row).
    pub mails_queued: usize,
}

fn field(fields: &serde_json::Value, name: &str) -> String {
    fields
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn flag(fields: &serde_json::Value, name: &str) -> bool {
    fields.get(name).and_then(|v| v.as_bool()).unwrap_or(false)
}

fn refused(kind: Refusal, message: String) -> kxca_ca::Error {
    kxca_ca::Error::refused(kind, "rows", message)
}

fn unknown_application(id: i64) -> kxca_ca::Error {
    kxca_ca::Error::refused(
        Refusal::UnknownApplication,
        "application",
        format!("no application #{id} (see `kxca applications list`)"),
    )
}

fn decided_rows(tx: &Tx<'_>, application_id: i64) -> Result<Vec<u32>, kxca_ca::Error> {
    let mut stmt = tx
        .prepare("SELECT row FROM application_decisions WHERE application_id = ?1 ORDER BY row")
        .map_err(sql)?;
    let rows = stmt
        .query_map([application_id], |r| r.get(0))
        .map_err(sql)?
        .collect::<Result<Vec<u32>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// What was decided about an application's rows, by row: `approved` (with
/// the account's certificate id) or `rejected` (with the reason).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The spreadsheet row number.
    pub row: u32,
    /// `approved` or `rejected`.
    pub decision: String,
    /// The account an approval created.
    pub certificate_id: Option<String>,
    /// Why a row was rejected.
    pub reason: Option<String>,
    /// Who decided.
    pub actor: String,
    /// When, Unix seconds.
    pub decided_at: i64,
}

/// How far an application's review has gone: its rows an admin can decide
/// (valid or to review) and how many of them are decided. Rows with errors
/// are never approved, so they do not keep an application open.
pub fn progress(conn: &Snapshot<'_>, application_id: i64) -> Result<(i64, i64), kxca_ca::Error> {
    conn.query_row(
        "SELECT COUNT(*), COUNT(d.row) FROM application_rows r
         LEFT JOIN application_decisions d ON d.application_id = r.application_id AND d.row = r.row
         WHERE r.application_id = ?1 AND r.status != 'invalid'",
        [application_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(sql)
}

/// The decisions on application `application_id`, by row.
pub fn decisions(
    conn: &Snapshot<'_>,
    application_id: i64,
) -> Result<Vec<Decision>, kxca_ca::Error> {
    let mut stmt = conn
        .prepare(
            "SELECT d.row, d.decision, a.certificate_id, d.reason, d.actor, d.decided_at
             FROM application_decisions d LEFT JOIN accounts a ON a.id = d.account_id
             WHERE d.application_id = ?1 ORDER BY d.row",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([application_id], |r| {
            Ok(Decision {
                row: r.get(0)?,
                decision: r.get(1)?,
                certificate_id: r.get(2)?,
                reason: r.get(3)?,
                actor: r.get(4)?,
                decided_at: r.get(5)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// The rows `selection` names (all `valid` rows when None), split into
/// those to decide now and those decided before. A named row that does not
/// exist or has errors is an error naming it.
fn select<'r>(
    app: &'r applications::Application,
    selection: Option<&[u32]>,
    decided: &[u32],
    allow_invalid: bool,
) -> Result<(Vec<&'r ApplicationRowRecord>, Vec<u32>), kxca_ca::Error> {
    let mut todo = Vec::new();
    let mut already = Vec::new();
    match selection {
        None => {
            for r in &app.rows {
                if r.status == RowVerdict::Valid {
                    if decided.contains(&r.row) {
                        already.push(r.row);
                    } else {
                        todo.push(r);
                    }
                }
            }
        }
        Some(rows) => {
            for n in rows {
                let r = app.rows.iter().find(|r| r.row == *n).ok_or_else(|| {
                    refused(
                        Refusal::UnknownRow { row: *n },
                        format!(
                            "application #{} has no row {n} (rows: {})",
                            app.id,
                            app.rows
                                .iter()
                                .map(|r| r.row.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                    )
                })?;
                if r.status == RowVerdict::Invalid && !allow_invalid {
                    return Err(refused(Refusal::RowHasErrors { row: *n }, format!(
                        "application #{} row {n} has errors and cannot be approved (see `kxca applications show {}`)",
                        app.id, app.id
                    )));
                }
                if decided.contains(n) {
                    already.push(*n);
                } else if !todo.iter().any(|t: &&ApplicationRowRecord| t.row == *n) {
                    todo.push(r);
                }
            }
        }
    }
    Ok((todo, already))
}

/// Contacts approved earlier in the same call, by office (union, branch,
/// office code): (contact code, 社労士).
type Batch = BTreeMap<(String, String, String), Vec<(String, bool)>>;

/// A row to approve, read from its stored (normalised) fields.
struct Candidate<'r> {
    record: &'r ApplicationRowRecord,
    holder: Holder,
    union_name: String,
    branch_name: String,
    email2: String,
    sharoushi: bool,
    own_row: bool,
}

impl Candidate<'_> {
    fn office(&self) -> (String, String, String) {
        (
            self.holder.union_code.clone(),
            self.holder.branch_code.clone(),
            self.holder.office_code.clone(),
        )
    }
}

/// Approves the rows of application `application_id` named by `rows` (all
/// valid rows when None). With named rows, a row that cannot be approved
/// fails the whole call and nothing changes; with none named, such rows
/// are reported in [`Approval::refused`] and the others approved.
pub fn approve(
    store: &mut kxca_ca::Store,
    application_id: i64,
    rows: Option<&[u32]>,
    ctx: &Context<'_>,
    actor: &str,
    now: i64,
) -> Result<Approval, kxca_ca::Error> {
    store.migrate("accounts", super::migrations())?;
    let out = store.write(|tx| approve_in(tx, application_id, rows, ctx, actor, now))?;
    tracing::info!(
        application_id,
        approved = out.approved.len(),
        not_approved = out.refused.len(),
        already_decided = out.already_decided.len(),
        mails_queued = out.mails_queued,
        %actor,
        "application approved"
    );
    Ok(out)
}

fn approve_in(
    tx: &Tx<'_>,
    application_id: i64,
    rows: Option<&[u32]>,
    ctx: &Context<'_>,
    actor: &str,
    now: i64,
) -> Result<Approval, kxca_ca::Error> {
    let app = applications::get(tx, application_id)?
        .ok_or_else(|| unknown_application(application_id))?;
    let decided = decided_rows(tx, application_id)?;
    let (todo, already_decided) = select(&app, rows, &decided, false)?;
    let mut out = Approval {
        application_id,
        approved: Vec::new(),
        refused: Vec::new(),
        already_decided,
        mails_queued: 0,
    };
    let mut candidates: Vec<Candidate<'_>> = todo
        .into_iter()
        .map(|r| {
            let f = &r.fields;
            Candidate {
                record: r,
                holder: Holder {
                    centre: field(f, "centre"),
                    union_code: field(f, "union_code"),
                    branch_code: field(f, "branch_code"),
                    contract_unit: field(f, "contract_unit"),
                    office_code: field(f, "office_code"),
                    contact_code: field(f, "contact_code"),
                    office_name: field(f, "office_name"),
                    contact_name: field(f, "contact_name"),
                    email: field(f, "email1"),
                }
                .normalized(),
                union_name: field(f, "union_name"),
                branch_name: field(f, "branch_name"),
                email2: field(f, "email2"),
                sharoushi: flag(f, "sharoushi"),
                own_row: flag(f, "own_row"),
            }
        })
        .collect();
    // Office contacts first: a 社労士 row in the same batch may rely on them.
    candidates.sort_by_key(|c| (c.sharoushi, c.record.row));

    // Contacts approved in this call, by office: (contact code, 社労士).
    let mut batch = Batch::new();
    let mut approved: Vec<(Candidate<'_>, String)> = Vec::new();
    for c in candidates {
        match check(tx, &c, &batch, ctx)? {
            Ok(certificate_id) => {
                batch
                    .entry(c.office())
                    .or_default()
                    .push((c.holder.contact_code.clone(), c.sharoushi));
                approved.push((c, certificate_id));
            }
            Err((kind, reason)) => out.refused.push(RowOutcome {
                row: c.record.row,
                certificate_id: None,
                account_id: None,
                reason: Some(reason),
                kind: Some(kind),
            }),
        }
    }
    if rows.is_some() && !out.refused.is_empty() {
        return Err(refused(
            Refusal::RowsNotApproved {
                rows: out
                    .refused
                    .iter()
                    .filter_map(|r| Some((r.row, r.kind?)))
                    .collect(),
            },
            out.refused
                .iter()
                .map(|r| format!("row {}: {}", r.row, r.reason.as_deref().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    for (c, certificate_id) in approved {
        let account = insert_account(tx, &app, &c, &certificate_id, ctx, now)?;
        tx.execute(
            "INSERT INTO application_decisions (application_id, row, decision, account_id, actor, decided_at) VALUES (?1, ?2, 'approved', ?3, ?4, ?5)",
            params![application_id, c.record.row, account.id, actor, now],
        )
        .map_err(sql)?;
        let enrolment = enrolment::open(
            tx,
            &NewEnrolment {
                certificate_id: &account.certificate_id,
                holder: &account.holder(),
                profile: &account.profile,
                supersedes: None,
                key_algorithm: None,
            },
            actor,
            now,
        )?;
        out.mails_queued +=
            delivery::queue(tx, &account, enrolment, Mails::Both, &ctx.delivery, now)?;
        tx.audit(
            now,
            actor,
            kxca_ca::AuditAction::AccountApprove,
            None,
            serde_json::json!({
                "application_id": application_id,
                "row": c.record.row,
                "account_id": account.id,
                "certificate_id": account.certificate_id,
                "enrolment_id": enrolment.0,
            }),
        )?;
        out.approved.push(RowOutcome {
            row: c.record.row,
            certificate_id: Some(account.certificate_id.clone()),
            account_id: Some(account.id),
            reason: None,
            kind: None,
        });
    }
    out.approved.sort_by_key(|r| r.row);
    out.refused.sort_by_key(|r| r.row);
    Ok(out)
}

/// The register's rules for one row, against the accounts in the store
/// and the rows approved before it in this call: Ok(certificate id), or
/// Err(why not).
fn check(
    tx: &Tx<'_>,
    c: &Candidate<'_>,
    batch: &Batch,
    ctx: &Context<'_>,
) -> Result<Result<String, (RowRefusal, String)>, kxca_ca::Error> {
    let h = &c.holder;
    if let Err(e) = h.check(ctx.profile, &ctx.intake.rules) {
        return Ok(Err((
            RowRefusal::InvalidHolder,
            format!("the row does not make a valid certificate holder: {e}"),
        )));
    }
    let certificate_id = match ctx.profile.certificate_id.render(|n| h.code(n).to_string()) {
        Ok(id) => id,
        Err(e) => {
            return Ok(Err((
                RowRefusal::CertificateId,
                format!("certificate id: {e}"),
            )))
        }
    };
    if let Some(a) = register::by_certificate_id(tx, &certificate_id)? {
        return Ok(Err((RowRefusal::AccountExists, format!(
            "an account for this contact already exists (certificate id {}, state {}); use `kxca accounts reset` for a new certificate",
            a.certificate_id,
            a.state.as_str()
        ))));
    }
    let existing = register::of_office(tx, &h.union_code, &h.branch_code, &h.office_code)?;
    if let Some(a) = existing.iter().find(|a| a.contact_code == h.contact_code) {
        return Ok(Err((
            RowRefusal::ContactHasAccount,
            format!(
                "contact {} of office {} already has an account ({})",
                h.contact_code, h.office_code, a.certificate_id
            ),
        )));
    }
    let in_batch = batch.get(&c.office()).cloned().unwrap_or_default();
    if !c.own_row {
        let others = existing.len() + in_batch.len();
        if others > 0
            && !ctx
                .intake
                .allows_multiple_accounts(&h.union_code, &h.branch_code, &h.office_code)
        {
            let holders: Vec<String> = existing
                .iter()
                .map(|a| a.certificate_id.clone())
                .chain(
                    in_batch
                        .iter()
                        .map(|(code, _)| format!("contact {code} in this application")),
                )
                .collect();
            return Ok(Err((RowRefusal::OfficeHasAccount, format!(
                "office {} already has an account ({}) and is not listed in [office] multiple_accounts of {}",
                h.office_code,
                holders.join(", "),
                ctx.intake.rules.path.display()
            ))));
        }
        if c.sharoushi
            && !existing
                .iter()
                .any(|a| !a.sharoushi && a.state == AccountState::Active)
            && !in_batch.iter().any(|(_, s)| !s)
        {
            return Ok(Err((RowRefusal::SharoushiNeedsOffice, format!(
                "a 社労士 account needs the office's own contact first: office {} has no active office-contact account and none is approved with this row",
                h.office_code
            ))));
        }
    }
    Ok(Ok(certificate_id))
}

fn insert_account(
    tx: &Tx<'_>,
    app: &applications::Application,
    c: &Candidate<'_>,
    certificate_id: &str,
    ctx: &Context<'_>,
    now: i64,
) -> Result<Account, kxca_ca::Error> {
    let h = &c.holder;
    tx.execute(
        "INSERT INTO accounts (certificate_id, profile, centre, union_code, union_name, branch_code, branch_name, contract_unit, office_code, office_name, contact_code, contact_name, email1, email2, sharoushi, applicant_email, state, application_id, application_row, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 'active', ?17, ?18, ?19, ?19)",
        params![
            certificate_id,
            ctx.profile.name,
            h.centre,
            h.union_code,
            c.union_name,
            h.branch_code,
            c.branch_name,
            h.contract_unit,
            h.office_code,
            h.office_name,
            h.contact_code,
            h.contact_name,
            h.email,
            kxca_ca::rules::email_text(&c.email2),
            c.sharoushi,
            app.sender,
            app.id,
            c.record.row,
            now
        ],
    )
    .map_err(sql)?;
    let id = tx.last_insert_rowid();
    register::by_id(tx, id)?.ok_or_else(|| kxca_ca::Error::Database {
        path: Default::default(),
        message: format!("account #{id} vanished after its insert"),
    })
}

/// Rejects rows of an application with a reason; the applicant is told in
/// Japanese (one mail answering the signup mail) in the same transaction.
pub fn reject(
    store: &mut kxca_ca::Store,
    application_id: i64,
    rows: &[u32],
    reason: &str,
    setup: &super::Setup,
    actor: &str,
    now: i64,
) -> Result<Approval, kxca_ca::Error> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(kxca_ca::Error::refused(
            Refusal::ReasonMissing,
            "reason",
            "is required: the applicant is told why",
        ));
    }
    if rows.is_empty() {
        return Err(refused(
            Refusal::NoRowsNamed,
            "name the rows to reject (--rows R,...)".to_string(),
        ));
    }
    store.migrate("accounts", super::migrations())?;
    let out = store.write(|tx| {
        let app = applications::get(tx, application_id)?
            .ok_or_else(|| unknown_application(application_id))?;
        let decided = decided_rows(tx, application_id)?;
        let (todo, already_decided) = select(&app, Some(rows), &decided, true)?;
        let mut out = Approval {
            application_id,
            approved: Vec::new(),
            refused: Vec::new(),
            already_decided,
            mails_queued: 0,
        };
        if todo.is_empty() {
            return Ok(out);
        }
        for r in &todo {
            tx.execute(
                "INSERT INTO application_decisions (application_id, row, decision, reason, actor, decided_at) VALUES (?1, ?2, 'rejected', ?3, ?4, ?5)",
                params![application_id, r.row, reason, actor, now],
            )
            .map_err(sql)?;
            out.refused.push(RowOutcome {
                row: r.row,
                certificate_id: None,
                account_id: None,
                reason: Some(reason.to_string()),
                kind: None,
            });
        }
        let row_list: Vec<String> = todo.iter().map(|r| r.row.to_string()).collect();
        if let Some(to) = &app.sender {
            let text = setup.templates.get(policy::ROW_REJECTED)?.render(&[
                ("union_name", &setup.union_name),
                ("file_name", &app.file_name),
                ("rows", &row_list.join("、")),
                ("reason", reason),
            ])?;
            outbox::enqueue(
                tx,
                &NewMail {
                    idempotency_key: format!(
                        "application-rejected:{application_id}:{}",
                        row_list.join(",")
                    ),
                    kind: OutboxKind::ApplicationRejected,
                    to: to.clone(),
                    subject: text.subject,
                    body: text.body,
                    in_reply_to: Some(app.message_id.clone()),
                    references: vec![app.message_id.clone()],
                    attachments: Vec::new(),
                },
                &setup.message_id_domain,
                now,
            )?;
            out.mails_queued += 1;
        }
        tx.audit(now,
            actor,
            kxca_ca::AuditAction::ApplicationReject,
            None,
            serde_json::json!({ "application_id": application_id, "rows": row_list, "reason": reason }),
        )?;
        Ok(out)
    })?;
    tracing::info!(
        application_id,
        rejected = out.refused.len(),
        already_decided = out.already_decided.len(),
        %actor,
        "application rows rejected"
    );
    Ok(out)
}
