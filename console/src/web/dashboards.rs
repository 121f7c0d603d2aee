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
            use kxca_provisioner::outbox::{self, OutboxState};
            let queued = outbox::count(s, OutboxState::Queued)?;
            let mails = outbox::in_state(s, OutboxState::Failed, 50)?;
            let issuing = kxca_ca::store::authorities::active(s, kxca_ca::AuthorityRole::Issuing)?;
            let crl = kxca_ca::store::crls::latest(s, issuing.id)?;
            // The newest certificate of the issuing CA: what the OCSP probe asks about.
            let newest = kxca_ca::store::certificates::list(s, 50)?
                .into_iter()
                .find(|c| {
                    c.authority_id == issuing.id && c.state == kxca_ca::CertificateState::Issued
                });
            Ok((
                now,
                expiring,
                pickups,
                (queued, mails),
                issuing,
                crl,
                newest,
            ))
        })
    })
    .await;
    let (now, expiring, pickups, (queued, mails), issuing_ca, crl, newest) = match got {
        Ok(x) => x,
        Err(e) => return failure(e),
    };
    let audit = audit_state(&state).await;
    let failed: Vec<MailLine> = mails.iter().map(mail_line).collect();
    let crl_number = crl.as_ref().map(|c| c.number);
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
    let (public_crl, public_ocsp) = public_health(&state, &issuing_ca, crl_number, newest).await;
    let issuing = issuing_ca.name;
    html(
        StatusCode::OK,
        &Status {
            public_crl,
            public_ocsp,
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

/// The public role's CRL and one OCSP answer, each checked as a relying
/// party would: (正常|異常 with the reason, CSS class) for each.
async fn public_health(
    state: &Shared,
    issuing: &kxca_ca::Authority,
    store_crl: Option<i64>,
    newest: Option<kxca_ca::CertificateRecord>,
) -> (Health, Health) {
    let Some(public) = state.public.clone() else {
        let none = Health {
            ok: false,
            text: "異常: 公開側の問い合わせ先が設定されていません([console] public_url)"
                .to_string(),
        };
        return (none.clone(), none);
    };
    let now = now();
    let crl_answer = public.crl(issuing, now).await;
    // A public role that did not answer is not asked again: the page
    // waits for one timeout, not two.
    let unreachable = match &crl_answer {
        Err(e @ crate::public::Failure::Unreachable(_)) => Some(Health {
            ok: false,
            text: format!("異常: {}", live::failure_ja(e)),
        }),
        _ => None,
    };
    let crl = match crl_answer {
        Ok(facts) => match store_crl {
            Some(latest) if facts.number < latest => Health {
                ok: false,
                text: format!(
                    "異常: 公開側のCRL(番号 {})が最新(番号 {latest})ではありません。kxca serve が新しいCRLを読み込めていません",
                    facts.number
                ),
            },
            _ => Health {
                ok: true,
                text: format!(
                    "正常: 番号 {}、発行 {}、次回更新 {}(署名を確認済み)",
                    facts.number,
                    jst(facts.this_update),
                    jst(facts.next_update)
                ),
            },
        },
        Err(e) => {
            tracing::warn!(public = %public.url(), error = %e, "public CRL check failed");
            Health {
                ok: false,
                text: format!("異常: {}", live::failure_ja(&e)),
            }
        }
    };
    // A probe for a certificate the store knows; without one, serial 1
    // (never issued: random serials are 16 bytes), answered "unknown".
    let (serial, expect) = match &newest {
        Some(c) => (
            hex::decode(&c.serial).unwrap_or_default(),
            Some(c.revocation.is_some()),
        ),
        None => (vec![1], None),
    };
    if let Some(down) = unreachable {
        return (crl, down);
    }
    let ocsp = match public.ocsp(issuing, &serial, now).await {
        Ok(answer) => {
            let revoked = matches!(answer.status, kxca_ca::ocsp::Status::Revoked { .. });
            let (words, _) = live::status_ja(&answer.status);
            match expect {
                Some(want) if want != revoked => Health {
                    ok: false,
                    text: format!(
                        "異常: シリアル番号 {} について公開側は「{words}」と答えましたが、台帳では{}です(反映の遅れ。続く場合は kxca daemon を確認してください)",
                        newest.as_ref().map(|c| c.serial.as_str()).unwrap_or("-"),
                        if want { "失効" } else { "有効" }
                    ),
                },
                _ => Health {
                    ok: true,
                    text: format!(
                        "正常: 署名を確認済み、次回更新 {}(シリアル番号 {}: {words})",
                        answer.next_update.map(jst).unwrap_or_else(|| "-".to_string()),
                        newest
                            .as_ref()
                            .map(|c| c.serial.clone())
                            .unwrap_or_else(|| "01(テスト用)".to_string()),
                    ),
                },
            }
        }
        Err(e) => {
            tracing::warn!(public = %public.url(), error = %e, "public OCSP check failed");
            Health {
                ok: false,
                text: format!("異常: {}", live::failure_ja(&e)),
            }
        }
    };
    (crl, ocsp)
}
