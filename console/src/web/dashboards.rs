//! The dashboards: status (expiring certificates, pickups, outbox, CRL),
//! the outbox with its retry button, the audit log.

use super::*;

pub(super) async fn outbox_page(
    a: Authed,
    State(state): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let f = query.as_deref().map(form).unwrap_or_default();
    let req = page_request(&f);
    match with_ca(&state, move |_, ca| {
        ca.store().read(|s| kxca_provisioner::outbox::page(s, &req))
    })
    .await
    {
        Ok(page) => html(
            StatusCode::OK,
            &Outbox {
                who: a.who(),
                mails: page.items.iter().map(mail_line).collect(),
                pager: pager("/outbox", &[], &page),
            },
        ),
        Err(e) => failure(e),
    }
}

/// A `YYYY-MM-DD` of the date filter as the start of that day in Japan
/// (Unix seconds); `Err` with the Japanese line when it is not a date.
fn jst_day(label: &str, v: &str) -> Result<Option<i64>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || format!("{label}「{v}」は日付(例: 2026-12-07)として読めません。");
    let mut parts = v.splitn(3, '-');
    let mut num = || parts.next().and_then(|p| p.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d)) = (num(), num(), num()) else {
        return Err(bad());
    };
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let date = i32::try_from(y)
        .ok()
        .zip(u8::try_from(d).ok())
        .and_then(|(y, d)| time::Date::from_calendar_date(y, month, d).ok())
        .ok_or_else(bad)?;
    let offset = time::UtcOffset::from_hms(9, 0, 0).map_err(|_| bad())?;
    Ok(Some(date.midnight().assume_offset(offset).unix_timestamp()))
}

pub(super) async fn audit_page(
    a: Authed,
    State(state): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let f = query.as_deref().map(form).unwrap_or_default();
    let action = one(&f, "action").unwrap_or("").trim().to_string();
    let actor = one(&f, "actor").unwrap_or("").trim().to_string();
    let from = one(&f, "from").unwrap_or("").trim().to_string();
    let to = one(&f, "to").unwrap_or("").trim().to_string();
    let (since, until, error) = match (jst_day("開始日", &from), jst_day("終了日", &to)) {
        // The end date is inclusive: events before the next day's start.
        (Ok(s), Ok(u)) => (s, u.map(|u| u + 86_400), None),
        (Err(e), _) | (_, Err(e)) => (None, None, Some(e)),
    };
    let filter = kxca_ca::store::audit::AuditFilter {
        action_prefix: Some(action.clone()),
        actor: Some(actor.clone()),
        from: since,
        until,
    };
    let req = page_request(&f);
    let page = if error.is_some() {
        // A filter that cannot be read shows nothing rather than everything.
        Ok(kxca_ca::store::paging::Page {
            items: Vec::new(),
            newer: None,
            older: None,
        })
    } else {
        with_ca(&state, move |_, ca| {
            ca.store()
                .read(|s| kxca_ca::store::audit::page(s, &filter, &req))
        })
        .await
    };
    let page = match page {
        Ok(p) => p,
        Err(e) => return failure(e),
    };
    let audit = audit_state(&state).await;
    let pager = pager(
        "/audit",
        &[
            ("action", &action),
            ("actor", &actor),
            ("from", &from),
            ("to", &to),
        ],
        &page,
    );
    let events = page
        .items
        .into_iter()
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
            from,
            to,
            error,
            events,
            pager,
            state: audit,
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
    let audit = audit_state(&state).await;
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
            audit,
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
