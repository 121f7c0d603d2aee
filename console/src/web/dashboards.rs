//! The dashboards: status (expiring certificates, pickups, outbox, CRL),
//! the outbox with its retry button, the audit log.

use super::*;

pub(super) async fn outbox_page(a: Authed, State(state): State<Shared>) -> Response {
    match with_ca(&state, |_, ca| {
        ca.store().read(|s| kxca_provisioner::outbox::list(s, 200))
    })
    .await
    {
        Ok(mails) => html(
            StatusCode::OK,
            &Outbox {
                who: a.who(),
                mails: mails.iter().map(mail_line).collect(),
            },
        ),
        Err(e) => failure(e),
    }
}

pub(super) async fn audit_page(
    a: Authed,
    State(state): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let f = query.as_deref().map(form).unwrap_or_default();
    let action = one(&f, "action").unwrap_or("").trim().to_string();
    let actor = one(&f, "actor").unwrap_or("").trim().to_string();
    let events = match with_ca(&state, |_, ca| {
        ca.store().read(|s| kxca_ca::store::audit::list(s, 1000))
    })
    .await
    {
        Ok(e) => e,
        Err(e) => return failure(e),
    };
    // Oldest first from the store: the admins read the newest first.
    let events = events
        .into_iter()
        .rev()
        .filter(|e| e.action.starts_with(&action) && (actor.is_empty() || e.actor == actor))
        .take(300)
        .map(|e| AuditLine {
            id: e.id,
            at: jst(e.at),
            actor: e.actor,
            action: e.action,
            serial: e.serial.unwrap_or_default(),
            detail: e.detail.to_string(),
        })
        .collect();
    html(
        StatusCode::OK,
        &Audit {
            who: a.who(),
            action,
            actor,
            events,
        },
    )
}

pub(super) async fn status_page(a: Authed, State(state): State<Shared>) -> Response {
    use kxca_ca::enrolment::{EnrolmentState, Filter};
    let got = with_ca(&state, |_, ca| {
        let now = ca.clock().now();
        ca.store().read(|s| {
            let expiring = accounts::register::expiring(s, now + 30 * 86_400)?;
            let mut pickups = Vec::new();
            for st in [EnrolmentState::Locked, EnrolmentState::Waiting] {
                let filter = Filter {
                    state: Some(st),
                    certificate_id: None,
                    limit: Some(200),
                };
                pickups.extend(kxca_ca::enrolment::list(s, &filter, now)?);
            }
            let mails = kxca_provisioner::outbox::list(s, 5000)?;
            let issuing = kxca_ca::store::authorities::active(s, kxca_ca::AuthorityRole::Issuing)?;
            let crl = kxca_ca::store::crls::latest(s, issuing.id)?;
            Ok((now, expiring, pickups, mails, issuing.name, crl))
        })
    })
    .await;
    let (now, expiring, pickups, mails, issuing, crl) = match got {
        Ok(x) => x,
        Err(e) => return failure(e),
    };
    use kxca_provisioner::outbox::OutboxState as S;
    let queued = mails.iter().filter(|m| m.state == S::Queued).count();
    let failed: Vec<MailLine> = mails
        .iter()
        .filter(|m| m.state == S::Failed)
        .take(50)
        .map(mail_line)
        .collect();
    let crl = match crl {
        Some(c) if c.next_update > now => format!(
            "正常: 番号 {}、発行 {}、次回更新 {}",
            c.number,
            jst(c.this_update),
            jst(c.next_update)
        ),
        Some(c) => format!(
            "異常: 次回更新 {} を過ぎています(kxca daemon を確認してください)",
            jst(c.next_update)
        ),
        None => "異常: CRLがまだ発行されていません".to_string(),
    };
    html(
        StatusCode::OK,
        &Status {
            may_act: a.admin.role.may_act(),
            who: a.who(),
            expiring: expiring
                .into_iter()
                .map(|(acc, end)| ExpiringLine {
                    certificate_id: acc.certificate_id,
                    office: format!("{} {}", acc.office_code, acc.office_name),
                    contact: acc.contact_name,
                    serial: acc.current_serial.unwrap_or_default(),
                    not_after: jst(end),
                })
                .collect(),
            pickups: pickups
                .iter()
                .map(|e| (e.certificate_id.clone(), pickup_line(e)))
                .collect(),
            queued,
            failed,
            issuing,
            crl,
        },
    )
}

pub(super) async fn outbox_retry(
    State(state): State<Shared>,
    Path(id): Path<i64>,
    Posted { a, .. }: Posted,
) -> Response {
    if let Some(r) = a.read_only() {
        return r;
    }
    let actor = a.actor();
    match with_ca(&state, move |_, ca| {
        let now = ca.clock().now();
        kxca_provisioner::outbox::retry(ca.store_mut(), id, &actor, now)
    })
    .await
    {
        Ok(true) => message(
            StatusCode::OK,
            Some(a.who()),
            "再送信を予約しました",
            vec![format!(
                "メール {id} を送信待ちに戻しました。kxca daemon が次の送信処理で送ります。"
            )],
            "/status",
        ),
        Ok(false) => message(
            StatusCode::CONFLICT,
            Some(a.who()),
            "再送信できません",
            vec![format!(
                "メール {id} は送信失敗の状態ではありません(送信済み・送信待ちなど)。"
            )],
            "/status",
        ),
        Err(e) => failure(e),
    }
}
